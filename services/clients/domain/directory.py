"""Client groups and projects (providers): small named things clients belong to."""

from __future__ import annotations

from services.clients.domain.events import (
    ClientGroupCreated,
    ClientGroupDeleted,
    ClientGroupRenamed,
    ProjectChanged,
    ProjectCreated,
    ProjectDeleted,
)
from shared.domain.aggregate import Aggregate, DomainError, NotFound
from shared.domain.events import DomainEvent

MAX_NAME = 100
MAX_DESCRIPTION = 2000


def group_stream(group_id: str) -> str:
    return f"client-group-{group_id}"


def project_stream(project_id: str) -> str:
    return f"project-{project_id}"


def _name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise DomainError("name", "required")
    if len(clean) > MAX_NAME:
        raise DomainError("name", f"at most {MAX_NAME} characters")
    return clean


class ClientGroup(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = ""
        self.deleted = False

    @staticmethod
    def create(group_id: str, name: str) -> list[DomainEvent]:
        return [ClientGroupCreated(group_id=group_id, name=_name(name))]

    def rename(self, name: str) -> list[DomainEvent]:
        self._must_exist()
        clean = _name(name)
        return [] if clean == self.name else [ClientGroupRenamed(group_id=self.id, name=clean)]

    def delete(self) -> list[DomainEvent]:
        self._must_exist()
        return [ClientGroupDeleted(group_id=self.id)]

    def _must_exist(self) -> None:
        if not self.id or self.deleted:
            raise NotFound("client group")

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ClientGroupCreated | ClientGroupRenamed):
            self.id, self.name = event.group_id, event.name
        elif isinstance(event, ClientGroupDeleted):
            self.deleted = True


class Project(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = ""
        self.description = ""
        self.deleted = False

    @staticmethod
    def create(project_id: str, name: str, description: str = "") -> list[DomainEvent]:
        return [
            ProjectCreated(
                project_id=project_id, name=_name(name), description=_description(description)
            )
        ]

    def change(self, name: str | None, description: str | None) -> list[DomainEvent]:
        self._must_exist()
        new_name = None if name is None else _name(name)
        new_description = None if description is None else _description(description)
        if new_name == self.name:
            new_name = None
        if new_description == self.description:
            new_description = None
        if new_name is None and new_description is None:
            return []
        return [ProjectChanged(project_id=self.id, name=new_name, description=new_description)]

    def delete(self) -> list[DomainEvent]:
        self._must_exist()
        return [ProjectDeleted(project_id=self.id)]

    def _must_exist(self) -> None:
        if not self.id or self.deleted:
            raise NotFound("project")

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ProjectCreated):
            self.id, self.name, self.description = event.project_id, event.name, event.description
        elif isinstance(event, ProjectChanged):
            self.name = event.name if event.name is not None else self.name
            if event.description is not None:
                self.description = event.description
        elif isinstance(event, ProjectDeleted):
            self.deleted = True


def _description(text: str) -> str:
    clean = text.strip()
    if len(clean) > MAX_DESCRIPTION:
        raise DomainError("description", f"at most {MAX_DESCRIPTION} characters")
    return clean
