"""HTTP adapter of the support catalogue.

Categories, response templates, announcements, support settings, paid requests.

Commands go through ``SupportCatalog`` (``api/deps.py``)
and answer ``{"id", "version", "position"}``; a command that changes nothing
writes nothing and answers the current version with position 0. Changes of a
category, a template or an announcement accept ``?expected_version=`` (409
``version_conflict`` when it moved on). Lists come from the
``catalog_directory`` read model, accept ``?min_position=``, paginate with
``limit``/``offset`` and give the total in ``X-Total-Count``.

Rights:

* ``POST/PATCH/DELETE /categories``: ``tickets.categories``; ``GET /categories``:
  any authenticated principal (clients pick a category);
* ``POST/PATCH/DELETE /templates``: ``tickets.templates``; ``GET /templates``:
  staff with ``tickets.templates`` or ``tickets.reply`` (who pick one to answer);
* ``POST/DELETE /announcements``: ``tickets.announcements``; ``GET /announcements``:
  any authenticated principal, clients see only those active now;
* ``GET /support/settings``: any authenticated principal; ``PUT``: ``tickets.settings``;
* ``POST /clients/{id}/paid-requests``: ``finance.payments`` (paid requests are
  sold, so crediting them is a payment matter, not a support setting);
  ``GET``: the client themself (another client's: 404), staff with
  ``tickets.view`` or ``finance.payments``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Row

from services.tickets.api.deps import SupportCatalogDep
from services.tickets.domain.catalog import (
    AnnouncementDraft,
    CategoryDraft,
    CategoryPatch,
    PaidCredit,
    SettingsPatch,
    TemplateDraft,
    TemplatePatch,
    check_id,
)
from services.tickets.domain.catalog_events import LocalizedText, RatingMode, UnknownSenders
from services.tickets.projections.catalog import (
    announcements,
    categories,
    paid_balances,
    paid_history,
    templates,
    text_from_json,
)
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.domain.events import utcnow
from shared.http.api import ApiError, CaughtUp, ExpectedVersion, ReadDB, require
from shared.http.reads import Limit, Offset, not_found, one_or_404, page

router = APIRouter(tags=["support catalogue"])

CATEGORIES = "tickets.categories"
TEMPLATES = "tickets.templates"
ANNOUNCEMENTS = "tickets.announcements"
SETTINGS = "tickets.settings"
PAYMENTS = "finance.payments"


def require_any(*rights: str) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """Dependency: a staff member with at least one of ``rights`` (401/403 otherwise)."""
    authenticated = require(None)
    named = " or ".join(repr(r) for r in rights)

    async def authorised(request: Request) -> Principal:
        principal = await authenticated(request)
        if principal.kind != "staff" or not any(principal.access.has(r) for r in rights):
            raise ApiError(403, "forbidden", f"the right {named} is required")
        return principal

    return authorised


Anyone = Annotated[Principal, Depends(require(None))]
CategoryChanger = Annotated[Principal, Depends(require(CATEGORIES))]
TemplateChanger = Annotated[Principal, Depends(require(TEMPLATES))]
TemplateReader = Annotated[Principal, Depends(require_any(TEMPLATES, "tickets.reply"))]
Announcer = Annotated[Principal, Depends(require(ANNOUNCEMENTS))]
SettingsChanger = Annotated[Principal, Depends(require(SETTINGS))]
Cashier = Annotated[Principal, Depends(require(PAYMENTS))]


# ---------------------------------------------------------------- answers


class CategoryOut(BaseModel):
    id: str
    topic: LocalizedText
    department_id: str
    project_id: str | None
    paid: bool
    warning: str
    sort: int
    version: int


class TemplateOut(BaseModel):
    id: str
    name: str
    subject: str
    body: str
    version: int


class AnnouncementOut(BaseModel):
    id: str
    text: LocalizedText | str
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    blocking: bool
    active: bool
    version: int


class SettingsOut(BaseModel):
    transfer_notices_shown: int
    close_after_days: int | None
    rate_after_days: int | None
    rating_mode: RatingMode
    unknown_senders: UnknownSenders
    version: int


class PaidEntry(BaseModel):
    kind: Literal["credited", "taken", "returned"]
    amount: int
    balance: int
    ticket_id: str | None
    comment: str
    at: datetime
    actor_id: str
    impersonator_id: str | None
    version: int


class PaidRequestsOut(BaseModel):
    client_id: str
    balance: int
    version: int
    history: list[PaidEntry]  # newest first


# ---------------------------------------------------------------- categories


def _category(row: Row[Any]) -> CategoryOut:
    return CategoryOut(
        id=row.category_id,
        topic=LocalizedText(en=row.topic_en, ru=row.topic_ru),
        department_id=row.department_id,
        project_id=row.project_id,
        paid=row.paid,
        warning=row.warning,
        sort=row.sort,
        version=row.version,
    )


@router.post("/categories", status_code=201)
async def create_category(
    body: CategoryDraft, app: SupportCatalogDep, principal: CategoryChanger
) -> CommandAnswer:
    """A category: topic ``{"en","ru"}``, department, project (null: every project),
    ``paid``, the ``warning`` shown to the client, ``sort``."""
    return await app.create_category(principal.actor, body)


@router.get("/categories")
async def list_categories(
    response: Response,
    db: ReadDB,
    _: Anyone,
    __: CaughtUp,
    department_id: Annotated[str | None, Query(max_length=64)] = None,
    project_id: Annotated[
        str | None,
        Query(max_length=64, description="shown for this project: its own and those for all"),
    ] = None,
    paid: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CategoryOut]:
    """Categories by ``sort``, then topic; the total is in ``X-Total-Count``."""
    query = select(categories)
    if department_id is not None:
        query = query.where(categories.c.department_id == department_id)
    if project_id is not None:
        query = query.where(
            or_(categories.c.project_id == project_id, categories.c.project_id.is_(None))
        )
    if paid is not None:
        query = query.where(categories.c.paid.is_(paid))
    order = (
        categories.c.sort,
        categories.c.topic_en,
        categories.c.category_id,
    )
    async with db.engine.connect() as conn:
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
    return [_category(row) for row in rows]


@router.get("/categories/{category_id}")
async def get_category(category_id: str, db: ReadDB, _: Anyone, __: CaughtUp) -> CategoryOut:
    async with db.engine.connect() as conn:
        row = await one_or_404(
            conn,
            select(categories).where(categories.c.category_id == category_id),
            f"category {category_id}",
        )
    return _category(row)


@router.patch("/categories/{category_id}")
async def change_category(
    category_id: str,
    body: CategoryPatch,
    app: SupportCatalogDep,
    principal: CategoryChanger,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """Change the fields given (``project_id: null``: every project)."""
    return await app.change_category(principal.actor, category_id, body, expected_version)


@router.delete("/categories/{category_id}")
async def delete_category(
    category_id: str,
    app: SupportCatalogDep,
    principal: CategoryChanger,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """New tickets can no longer name it; tickets opened in it keep its id."""
    return await app.delete_category(principal.actor, category_id, expected_version)


# ---------------------------------------------------------------- templates


def _template(row: Row[Any]) -> TemplateOut:
    return TemplateOut(
        id=row.template_id, name=row.name, subject=row.subject, body=row.body, version=row.version
    )


@router.post("/templates", status_code=201)
async def create_template(
    body: TemplateDraft, app: SupportCatalogDep, principal: TemplateChanger
) -> CommandAnswer:
    """A response template; ``subject`` and ``body`` may use ``%client_person%``,
    ``%admin_name%``, ``%ticket_id%``, ``%ticket_subject%``, ``%department%``."""
    return await app.create_template(principal.actor, body)


@router.get("/templates")
async def list_templates(
    response: Response,
    db: ReadDB,
    _: TemplateReader,
    __: CaughtUp,
    name: Annotated[str | None, Query(max_length=200, description="part of the name")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[TemplateOut]:
    """Templates by name; the total is in ``X-Total-Count``."""
    query = select(templates)
    if name:
        query = query.where(func.lower(templates.c.name).contains(name.lower(), autoescape=True))
    order = (
        func.lower(templates.c.name),
        templates.c.template_id,
    )
    async with db.engine.connect() as conn:
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
    return [_template(row) for row in rows]


@router.get("/templates/{template_id}")
async def get_template(
    template_id: str, db: ReadDB, _: TemplateReader, __: CaughtUp
) -> TemplateOut:
    async with db.engine.connect() as conn:
        row = await one_or_404(
            conn,
            select(templates).where(templates.c.template_id == template_id),
            f"template {template_id}",
        )
    return _template(row)


@router.patch("/templates/{template_id}")
async def change_template(
    template_id: str,
    body: TemplatePatch,
    app: SupportCatalogDep,
    principal: TemplateChanger,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    return await app.change_template(principal.actor, template_id, body, expected_version)


@router.delete("/templates/{template_id}")
async def delete_template(
    template_id: str,
    app: SupportCatalogDep,
    principal: TemplateChanger,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    return await app.delete_template(principal.actor, template_id, expected_version)


# ---------------------------------------------------------------- announcements


def _announcement(row: Row[Any], now: datetime) -> AnnouncementOut:
    return AnnouncementOut(
        id=row.announcement_id,
        text=text_from_json(row.text),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        ended_at=row.ended_at,
        blocking=row.blocking,
        active=row.starts_at <= now < row.active_until,
        version=row.version,
    )


def _active_now(now: datetime) -> Any:
    return and_(announcements.c.starts_at <= now, announcements.c.active_until > now)


@router.post("/announcements", status_code=201)
async def publish_announcement(
    body: AnnouncementDraft, app: SupportCatalogDep, principal: Announcer
) -> CommandAnswer:
    """``{"text", "starts_at", "ends_at", "blocking"}``: ``text`` a string or ``{"en","ru"}``;
    times with a time zone, ``starts_at`` defaults to now. While a blocking one is
    active, opening a ticket answers 409 ``blocked_by_announcement``."""
    return await app.publish_announcement(principal.actor, body)


@router.get("/announcements")
async def list_announcements(
    response: Response,
    db: ReadDB,
    principal: Anyone,
    _: CaughtUp,
    active: Annotated[
        bool | None,
        Query(description="true: active now; false: not active now (staff only)"),
    ] = None,
    blocking: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AnnouncementOut]:
    """Announcements, the latest start first; clients see only those active now."""
    now = utcnow()
    query = select(announcements)
    if principal.kind == "client" or active:
        query = query.where(_active_now(now))
    elif active is False:
        query = query.where(~_active_now(now))
    if blocking is not None:
        query = query.where(announcements.c.blocking.is_(blocking))
    order = (
        announcements.c.starts_at.desc(),
        announcements.c.announcement_id,
    )
    async with db.engine.connect() as conn:
        rows = await page(conn, query, response, order_by=order, limit=limit, offset=offset)
    return [_announcement(row, now) for row in rows]


@router.get("/announcements/{announcement_id}")
async def get_announcement(
    announcement_id: str, db: ReadDB, principal: Anyone, _: CaughtUp
) -> AnnouncementOut:
    """One announcement; a client gets a 404 for one that is not active now."""
    now = utcnow()
    async with db.engine.connect() as conn:
        row = await one_or_404(
            conn,
            select(announcements).where(announcements.c.announcement_id == announcement_id),
            f"announcement {announcement_id}",
        )
    found = _announcement(row, now)
    if principal.kind == "client" and not found.active:
        raise not_found(f"announcement {announcement_id}")
    return found


@router.delete("/announcements/{announcement_id}")
async def end_announcement(
    announcement_id: str,
    app: SupportCatalogDep,
    principal: Announcer,
    expected_version: ExpectedVersion = None,
) -> CommandAnswer:
    """End it now (its row stays, with ``ended_at``); ending one that is over changes nothing."""
    return await app.end_announcement(principal.actor, announcement_id, expected_version)


# ---------------------------------------------------------------- settings


@router.get("/support/settings")
async def get_settings(app: SupportCatalogDep, _: Anyone, __: CaughtUp) -> SettingsOut:
    """The support settings as they are now (read from their stream: always current)."""
    current = await app.current_settings()
    return SettingsOut(
        transfer_notices_shown=current.transfer_notices_shown,
        close_after_days=current.close_after_days,
        rate_after_days=current.rate_after_days,
        rating_mode=current.rating_mode,
        unknown_senders=current.unknown_senders,
        version=current.version,
    )


@router.put("/support/settings")
async def put_settings(
    body: SettingsPatch, app: SupportCatalogDep, principal: SettingsChanger
) -> CommandAnswer:
    """Set the fields given (the others keep their values); answers ``id`` ``support-settings``.

    ``transfer_notices_shown`` 0-100, ``close_after_days`` null (never) or 1-365,
    ``rate_after_days`` null (never) or 0-365, ``rating_mode`` message or ticket,
    ``unknown_senders`` open (mail from an unknown address opens a ticket from a
    contact) or reject (it is answered with a notice instead).
    """
    return await app.change_settings(principal.actor, body)


# ---------------------------------------------------------------- paid requests


@router.post("/clients/{client_id}/paid-requests")
async def credit_paid_requests(
    client_id: str, body: PaidCredit, app: SupportCatalogDep, principal: Cashier
) -> CommandAnswer:
    """Credit ``amount`` (1-100000) paid requests with an optional ``comment``.

    Client ids are not checked against the clients context (this service does
    not follow it for this): any id of 1-64 characters is accepted.
    """
    return await app.credit_paid_requests(principal.actor, client_id, body.amount, body.comment)


@router.get("/clients/{client_id}/paid-requests")
async def get_paid_requests(
    client_id: str,
    response: Response,
    db: ReadDB,
    principal: Anyone,
    _: CaughtUp,
    limit: Limit = 100,
    offset: Offset = 0,
) -> PaidRequestsOut:
    """The balance and its history, newest first (the history's size in ``X-Total-Count``)."""
    if principal.kind == "client":
        if principal.id != client_id:
            raise not_found(f"client {client_id}")
    elif not (principal.access.has("tickets.view") or principal.access.has(PAYMENTS)):
        raise ApiError(403, "forbidden", f"the right 'tickets.view' or {PAYMENTS!r} is required")
    check_id(client_id, "client_id")
    async with db.engine.connect() as conn:
        balance = (
            await conn.execute(select(paid_balances).where(paid_balances.c.client_id == client_id))
        ).first()
        entries = select(paid_history).where(paid_history.c.client_id == client_id)
        order = (paid_history.c.version.desc(),)
        rows = await page(conn, entries, response, order_by=order, limit=limit, offset=offset)
        history = [
            PaidEntry(
                kind=row.kind,
                amount=row.amount,
                balance=row.balance,
                ticket_id=row.ticket_id,
                comment=row.comment,
                at=row.occurred_at,
                actor_id=row.actor_id,
                impersonator_id=row.impersonator_id,
                version=row.version,
            )
            for row in rows
        ]
    return PaidRequestsOut(
        client_id=client_id,
        balance=balance.balance if balance else 0,
        version=balance.version if balance else 0,
        history=history,
    )
