"""The rights catalogue: data, names, expansion of sections, the API shape."""

from __future__ import annotations

import dataclasses
import re

import orjson
import pytest

from shared.domain import rights

EXPECTED = {
    "staff": {"view", "create", "edit", "delete", "rights"},
    "departments": {"view", "create", "edit", "delete", "rights", "schedules"},
    "clients": {
        "view", "create", "edit", "delete", "message", "impersonate", "groups", "notes", "penalty",
        "projects", "companies", "password",
    },
    "tickets": {
        "view", "reply", "internal_note", "assign", "transfer", "close", "reopen",
        "all_departments", "categories", "templates", "announcements", "settings",
    },
    "finance": {"payments", "expenses", "invoices"},
    "reports": {"view", "tickets", "finance"},
    "settings": {"view", "edit"},
    "notifier": {"view", "subscriptions", "deliveries", "timers"},
}  # fmt: skip


def test_every_required_section_and_function_is_in_the_catalogue() -> None:
    found = {s.name: {f.name for f in s.functions} for s in rights.CATALOGUE}
    for section, functions in EXPECTED.items():
        assert functions <= found[section], section


def test_all_rights_are_every_section_and_every_section_dot_function() -> None:
    expected = {s.name for s in rights.CATALOGUE} | {
        f"{s.name}.{f.name}" for s in rights.CATALOGUE for f in s.functions
    }
    assert expected == rights.ALL_RIGHTS
    assert {
        "clients",
        "clients.create",
        "tickets.transfer",
        "finance.invoices",
    } <= rights.ALL_RIGHTS


def test_names_are_unique_and_snake_case() -> None:
    sections = [s.name for s in rights.CATALOGUE]
    assert len(sections) == len(set(sections))
    for section in rights.CATALOGUE:
        names = [f.name for f in section.functions]
        assert len(names) == len(set(names)), section.name
        for name in [section.name, *names]:
            assert re.fullmatch(r"[a-z][a-z_]*", name), name
        assert all(f.section == section.name for f in section.functions)


def test_every_title_is_given_in_english_and_russian() -> None:
    for section in rights.CATALOGUE:
        for title in [section.title, *(f.title for f in section.functions)]:
            assert title.en.strip() and title.ru.strip()
            assert re.search("[а-яё]", title.ru.lower()), title.ru


def test_the_catalogue_is_immutable() -> None:
    section = rights.CATALOGUE[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        section.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        section.functions[0].title.en = "other"  # type: ignore[misc]
    assert isinstance(rights.CATALOGUE, tuple) and isinstance(section.functions, tuple)


@pytest.mark.parametrize(
    ("right", "known"),
    [
        ("clients", True),
        ("clients.create", True),
        ("tickets.all_departments", True),
        ("notifier.timers", True),
        ("clients.nope", False),
        ("nope", False),
        ("nope.view", False),
        ("", False),
        ("clients.", False),
        (".create", False),
        ("Clients", False),
        ("clients.create.extra", False),
    ],
)
def test_is_known(right: str, known: bool) -> None:
    assert rights.is_known(right) is known


def test_a_section_right_implies_all_its_functions_but_the_separate_grants() -> None:
    expanded = rights.expand(["clients"])
    assert expanded == {"clients"} | {f"clients.{f}" for f in EXPECTED["clients"] - {"password"}}
    assert "clients.create" in expanded and "tickets.view" not in expanded
    assert "tickets.all_departments" not in rights.expand(["tickets"])
    assert rights.expand(["tickets.all_departments"]) == {"tickets.all_departments"}


def test_a_function_right_implies_only_itself() -> None:
    assert rights.expand(["clients.create"]) == {"clients.create"}
    assert "clients" not in rights.expand(["clients.create", "clients.view"])


def test_expand_unions_and_drops_names_outside_the_catalogue() -> None:
    expanded = rights.expand(["finance", "tickets.reply", "tickets.reply", "gone.right", "gone"])
    assert expanded == {
        "finance", "finance.payments", "finance.expenses", "finance.invoices", "tickets.reply",
    }  # fmt: skip
    assert rights.expand([]) == frozenset()
    assert rights.expand(rights.ALL_RIGHTS) == rights.ALL_RIGHTS
    every_section = rights.expand(s.name for s in rights.CATALOGUE)
    assert every_section == rights.ALL_RIGHTS - rights.SEPARATE_GRANTS


def test_section_helpers() -> None:
    assert rights.is_section("clients") and not rights.is_section("clients.view")
    assert rights.is_function("clients.view") and not rights.is_function("clients")
    assert rights.section_of("clients.view") == "clients" == rights.section_of("clients")


def test_catalogue_as_json_is_plain_json_in_catalogue_order() -> None:
    served = rights.catalogue_as_json()
    assert orjson.loads(orjson.dumps(served)) == served
    assert [s["section"] for s in served] == [s.name for s in rights.CATALOGUE]
    clients = next(s for s in served if s["section"] == "clients")
    assert clients["right"] == "clients"
    assert clients["title"] == {"en": "Clients", "ru": "Клиенты"}
    create = next(f for f in clients["functions"] if f["function"] == "create")
    assert create["right"] == "clients.create"
    assert set(create["title"]) == {"en", "ru"}
    served_rights = {s["right"] for s in served} | {
        f["right"] for s in served for f in s["functions"]
    }
    assert served_rights == rights.ALL_RIGHTS
