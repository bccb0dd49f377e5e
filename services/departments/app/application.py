"""What the departments service's composition root builds: its application objects, typed.

``service.py`` makes one at start (``ServiceSpec.compose``); routers reach its
parts through ``api/deps.py``. Nothing else holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.departments.app.handlers import Departments


@dataclass(frozen=True)
class DepartmentsApplication:
    departments: Departments
