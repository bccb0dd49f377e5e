"""The rights catalogue (DESIGN §6): sections and their functions, as data.

A right is named ``section`` or ``section.function`` (``clients``,
``clients.create``). Granting a section grants every function in it
(``expand``) except the *separate grants* (``SEPARATE_GRANTS``): functions
that widen what the others reach, so that turning a section on must not give
them by the way (``tickets.all_departments``: every department's tickets,
where the section alone gives one's own departments'). A separate grant is
given by its own name only (or by full access). The section name itself stays
in the effective set, so a check may ask either for the section or for one
function. ``GET /rights/catalogue`` serves ``catalogue_as_json()``.

The functions that manage rights (``FULL_ACCESS_ONLY``: ``staff.rights``,
``departments.rights``) are separate grants too, and more: they are held and
used by full-access staff only (issue 17). Nobody grants them, individually or
through a department; a staff member without full access never holds them,
even where an older grant or department right still lists one
(``usable``: every effective set a copy computes goes through it). Whoever
should manage rights is given full access instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Title:
    """A title in every language the back office speaks."""

    en: str
    ru: str

    def as_json(self) -> dict[str, str]:
        return {"en": self.en, "ru": self.ru}


@dataclass(frozen=True, slots=True)
class Function:
    """One function of a section; its right is ``section.function``."""

    section: str
    name: str
    title: Title

    @property
    def right(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass(frozen=True, slots=True)
class Section:
    """A section of the back office; its right implies all of its functions."""

    name: str
    title: Title
    functions: tuple[Function, ...]

    @property
    def right(self) -> str:
        return self.name

    @property
    def rights(self) -> frozenset[str]:
        """What the section right gives: itself and each function but the separate grants."""
        return frozenset(
            {self.name, *(f.right for f in self.functions if f.right not in SEPARATE_GRANTS)}
        )

    @property
    def all_rights(self) -> frozenset[str]:
        """The section right and every function of it, separate grants included."""
        return frozenset({self.name, *(f.right for f in self.functions)})


# The functions that manage rights: held and used by full-access staff only (see the
# module docstring). Whoever holds one can hand on anything, so it is full access.
FULL_ACCESS_ONLY: frozenset[str] = frozenset({"staff.rights", "departments.rights"})

# Functions a section right does not imply (see the module docstring).
SEPARATE_GRANTS: frozenset[str] = (
    frozenset({"tickets.all_departments", "clients.password"}) | FULL_ACCESS_ONLY
)


def _section(name: str, title: Title, *functions: tuple[str, str, str]) -> Section:
    return Section(
        name=name,
        title=title,
        functions=tuple(Function(name, fn, Title(en, ru)) for fn, en, ru in functions),
    )


CATALOGUE: tuple[Section, ...] = (
    _section(
        "staff",
        Title("Staff", "Сотрудники"),
        ("view", "View staff", "Просмотр сотрудников"),
        ("create", "Add staff", "Добавление сотрудников"),
        ("edit", "Edit staff", "Изменение сотрудников"),
        ("delete", "Disable staff", "Отключение сотрудников"),
        ("rights", "Manage staff rights", "Управление правами сотрудников"),
    ),
    _section(
        "departments",
        Title("Departments", "Отделы"),
        ("view", "View departments", "Просмотр отделов"),
        ("create", "Create departments", "Создание отделов"),
        ("edit", "Edit departments", "Изменение отделов"),
        ("delete", "Delete departments", "Удаление отделов"),
        ("rights", "Manage department rights", "Управление правами отделов"),
        ("schedules", "Manage work schedules", "Управление графиками работы"),
    ),
    _section(
        "clients",
        Title("Clients", "Клиенты"),
        ("view", "View clients", "Просмотр клиентов"),
        ("create", "Register clients", "Регистрация клиентов"),
        ("edit", "Edit clients", "Изменение клиентов"),
        ("delete", "Delete clients", "Удаление клиентов"),
        ("message", "Message clients", "Сообщения клиентам"),
        ("impersonate", "Log in as a client", "Вход от имени клиента"),
        ("groups", "Manage client groups", "Управление группами клиентов"),
        ("notes", "Client notes", "Заметки о клиентах"),
        ("penalty", "Penalty points", "Штрафные баллы"),
        ("projects", "Manage projects (providers)", "Управление проектами (провайдерами)"),
        ("companies", "Companies, contacts and equipment", "Компании, контакты и оборудование"),
        # Staff do not type clients' passwords under clients.edit: setting one is its
        # own right, each use recorded (ClientPasswordReset names the staff member).
        ("password", "Set a client's password", "Установка пароля клиента"),
    ),
    _section(
        "tickets",
        Title("Support center", "Центр поддержки"),
        ("view", "View tickets", "Просмотр запросов"),
        ("reply", "Reply to tickets", "Ответы на запросы"),
        ("internal_note", "Internal notes", "Внутренние заметки"),
        ("assign", "Assign tickets", "Назначение запросов"),
        ("transfer", "Transfer tickets", "Передача запросов"),
        ("close", "Close tickets", "Закрытие запросов"),
        ("reopen", "Reopen tickets", "Повторное открытие запросов"),
        ("all_departments", "Tickets of all departments", "Запросы всех отделов"),
        ("categories", "Ticket categories", "Категории запросов"),
        ("templates", "Response templates", "Шаблоны ответов"),
        ("announcements", "Announcements", "Объявления"),
        ("settings", "Support settings", "Настройки поддержки"),
    ),
    _section(
        "finance",
        Title("Finance", "Финансы"),
        ("payments", "Payments", "Платежи"),
        ("expenses", "Expenses", "Расходы"),
        ("invoices", "Invoices", "Счета"),
    ),
    _section(
        "reports",
        Title("Reports", "Отчёты"),
        ("view", "View reports", "Просмотр отчётов"),
        ("tickets", "Support reports", "Отчёты поддержки"),
        ("finance", "Financial reports", "Финансовые отчёты"),
    ),
    _section(
        "settings",
        Title("Settings", "Настройки"),
        ("view", "View settings", "Просмотр настроек"),
        ("edit", "Change settings", "Изменение настроек"),
    ),
    _section(
        "notifier",
        Title("Notifications", "Уведомления"),
        ("view", "View notifications", "Просмотр уведомлений"),
        ("subscriptions", "Manage subscriptions", "Управление подписками"),
        ("deliveries", "Delivery log", "Журнал отправки"),
        ("timers", "Deadlines and timers", "Сроки и таймеры"),
    ),
)

SECTIONS: dict[str, Section] = {s.name: s for s in CATALOGUE}
FUNCTIONS: dict[str, Function] = {f.right: f for s in CATALOGUE for f in s.functions}
ALL_RIGHTS: frozenset[str] = frozenset(SECTIONS) | frozenset(FUNCTIONS)


def is_known(right: str) -> bool:
    """Whether ``right`` names a section or a function of the catalogue."""
    return right in ALL_RIGHTS


def is_section(right: str) -> bool:
    return right in SECTIONS


def is_function(right: str) -> bool:
    return right in FUNCTIONS


def section_of(right: str) -> str:
    """The section a right belongs to (a section belongs to itself)."""
    return right.split(".", 1)[0]


def expand(rights: Iterable[str]) -> frozenset[str]:
    """The effective rights: each section brings all its functions.

    Names outside the catalogue are dropped, so a right that has left the
    catalogue (an old event) grants nothing rather than something unchecked.
    """
    effective: set[str] = set()
    for right in rights:
        section = SECTIONS.get(right)
        if section is not None:
            effective |= section.rights
        elif right in FUNCTIONS:
            effective.add(right)
    return frozenset(effective)


def usable(rights: Iterable[str], full_access: bool) -> frozenset[str]:
    """The rights a principal may use: without full access, never ``FULL_ACCESS_ONLY``.

    An older grant (an individual ``RightGranted``, a department's right) may
    still name one; it is left out here rather than trusted, wherever an
    effective set is made.
    """
    if full_access:
        return frozenset(rights)
    return frozenset(rights) - FULL_ACCESS_ONLY


def catalogue_as_json() -> list[dict[str, Any]]:
    """The catalogue for ``GET /rights/catalogue``, in catalogue order."""
    return [
        {
            "section": s.name,
            "right": s.right,
            "title": s.title.as_json(),
            "functions": [
                {
                    "function": f.name,
                    "right": f.right,
                    "title": f.title.as_json(),
                    "separate": f.right in SEPARATE_GRANTS,
                    "full_access_only": f.right in FULL_ACCESS_ONLY,
                }
                for f in s.functions
            ],
        }
        for s in CATALOGUE
    ]
