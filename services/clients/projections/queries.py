"""The client filter of the contract, as SQL on the ``client_directory`` read model.

One filter serves the client list (``GET /clients``) and a message sent to
"everyone matching a filter" (``POST /clients/messages``), so both always mean
the same clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select, and_, exists, select

from services.clients.projections import client_group_links, client_products, clients

ClientSort = Literal[
    "registered_at", "-registered_at", "login", "-login", "id", "-id", "country", "-country"
]

_SORT_COLUMNS = {
    "registered_at": clients.c.registered_at,
    "login": clients.c.login,
    "id": clients.c.client_id,
    "country": clients.c.country,
}


class ClientFilter(BaseModel):
    """Which clients: every given criterion must hold (an empty filter: all clients)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: list[str] | None = Field(default=None, max_length=1000)
    name: str | None = Field(default=None, max_length=200)  # login, e-mail, company, contact
    project_id: str | None = None
    language: str | None = None
    country: str | None = None
    customer_status: Literal["company", "sole_proprietor", "individual"] | None = None
    registered_from: datetime | None = None
    registered_to: datetime | None = None
    group_id: str | None = None
    product: str | None = None  # an active product of that name
    services_suspended: bool | None = None


def client_query(f: ClientFilter) -> Select[tuple[object, ...]]:
    """Clients matching ``f``; erased clients never match."""
    conditions: list[ColumnElement[bool]] = [clients.c.erased.is_(False)]
    if f.id:
        conditions.append(clients.c.client_id.in_(f.id))
    if f.name:
        pattern = "%" + f.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(clients.c.search.like(pattern + "%", escape="\\"))
    if f.project_id:
        conditions.append(clients.c.project_id == f.project_id)
    if f.language:
        conditions.append(clients.c.language == f.language.lower())
    if f.country:
        conditions.append(clients.c.country == f.country.upper())
    if f.customer_status:
        conditions.append(clients.c.customer_status == f.customer_status)
    if f.registered_from:
        conditions.append(clients.c.registered_at >= f.registered_from)
    if f.registered_to:
        conditions.append(clients.c.registered_at <= f.registered_to)
    if f.group_id:
        conditions.append(
            exists().where(
                and_(
                    client_group_links.c.client_id == clients.c.client_id,
                    client_group_links.c.group_id == f.group_id,
                )
            )
        )
    if f.product:
        conditions.append(
            exists().where(
                and_(
                    client_products.c.client_id == clients.c.client_id,
                    client_products.c.product == f.product.lower(),
                )
            )
        )
    if f.services_suspended is not None:
        conditions.append(clients.c.services_suspended.is_(f.services_suspended))
    return select(clients).where(and_(*conditions))


def ordered(query: Select[tuple[object, ...]], sort: ClientSort) -> Select[tuple[object, ...]]:
    column = _SORT_COLUMNS[sort.lstrip("-")]
    key = column.desc() if sort.startswith("-") else column.asc()
    return query.order_by(key, clients.c.client_id)  # the id makes pages stable
