"""Read models fed from a service's own event store.

* ``runner`` – ``Projection``, its runner and group: rows and checkpoint in one transaction;
* ``replay`` – rebuilding every read model of a service in one pass, with progress;
* ``builtin`` – the read model every service runs (event counts by type).
"""

from shared.projections.builtin import (
    EventTypeCounts,
)
from shared.projections.replay import (
    READ_COST,
    REBUILD_PAGE,
    JobResult,
    LogToRebuild,
    RebuildJob,
    RebuildProcesses,
    apply_page,
    build_indexes,
    collect_rarely,
    drop,
    finish_split,
    plan,
    plan_all,
    prepare_split,
    rebuild_all,
    rebuild_in_processes,
    rebuild_job,
    rebuild_logs,
    service_read_models,
)
from shared.projections.runner import (
    Progress,
    Projection,
    ProjectionGroup,
    ProjectionRunner,
    clear_read_model,
    split_rebuild_rows,
)

__all__ = [
    "READ_COST",
    "REBUILD_PAGE",
    "EventTypeCounts",
    "JobResult",
    "LogToRebuild",
    "Progress",
    "Projection",
    "ProjectionGroup",
    "ProjectionRunner",
    "RebuildJob",
    "RebuildProcesses",
    "apply_page",
    "build_indexes",
    "clear_read_model",
    "collect_rarely",
    "drop",
    "finish_split",
    "plan",
    "plan_all",
    "prepare_split",
    "rebuild_all",
    "rebuild_in_processes",
    "rebuild_job",
    "rebuild_logs",
    "service_read_models",
    "split_rebuild_rows",
]
