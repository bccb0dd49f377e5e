"""Read models fed from a service's own event store.

* ``runner`` – ``Projection``, its runner and group: rows and checkpoint in one transaction;
* ``replay`` – rebuilding every read model of a service in one pass, with progress;
* ``builtin`` – the read model every service runs (event counts by type).
"""

from shared.projections.builtin import (
    EventTypeCounts,
)
from shared.projections.replay import (
    REBUILD_PAGE,
    READ_COST,
    drop,
    build_indexes,
    apply_page,
    rebuild_all,
    service_read_models,
    RebuildJob,
    JobResult,
    plan,
    LogToRebuild,
    plan_all,
    rebuild_job,
    rebuild_logs,
    prepare_split,
    finish_split,
    collect_rarely,
    RebuildProcesses,
    rebuild_in_processes,
)
from shared.projections.runner import (
    Projection,
    checkpoint_name,
    partition_checkpoint_name,
    unfinished_rebuild_name,
    split_rebuild_rows,
    clear_read_model,
    Progress,
    ProjectionRunner,
    ProjectionGroup,
)

__all__ = [
    "EventTypeCounts",
    "JobResult",
    "LogToRebuild",
    "Progress",
    "Projection",
    "ProjectionGroup",
    "ProjectionRunner",
    "READ_COST",
    "REBUILD_PAGE",
    "RebuildJob",
    "RebuildProcesses",
    "apply_page",
    "build_indexes",
    "checkpoint_name",
    "clear_read_model",
    "collect_rarely",
    "drop",
    "finish_split",
    "partition_checkpoint_name",
    "plan",
    "plan_all",
    "prepare_split",
    "rebuild_all",
    "rebuild_in_processes",
    "rebuild_job",
    "rebuild_logs",
    "service_read_models",
    "split_rebuild_rows",
    "unfinished_rebuild_name",
]
