"""``GET``/``PUT /subscriptions/{staff_id}``: one's own without a right, anyone's with
``notifier.subscriptions``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.notifier.api.deps import NotifierDep
from services.notifier.domain.events import Channel, Language, StaffNotice
from services.notifier.projections import subscriptions
from shared.access.control import Principal
from shared.application.commands import CommandAnswer
from shared.http.api import ApiError, CaughtUp, require

router = APIRouter(tags=["notifier"])


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language = "en"
    notices: dict[StaffNotice, Annotated[list[Channel], Field(max_length=2)]] = {}


class SubscriptionOut(BaseModel):
    staff_id: str
    language: Language
    notices: dict[StaffNotice, list[Channel]]
    version: int


def _may_manage(principal: Principal, staff_id: str) -> None:
    """One's own subscription needs no right; someone else's needs ``notifier.subscriptions``."""
    if principal.kind != "staff":
        raise ApiError(403, "forbidden", "subscriptions are for staff")
    if principal.id != staff_id and not principal.access.has("notifier.subscriptions"):
        raise ApiError(403, "forbidden", "the right notifier.subscriptions is required")


@router.get("/subscriptions/{staff_id}")
async def get_subscription(
    staff_id: Annotated[str, Field(max_length=64)],
    request: Request,
    _: CaughtUp,
    principal: Annotated[Principal, Depends(require())],
) -> SubscriptionOut:
    """Which notices the staff member gets, by channel (nothing until they subscribe)."""
    _may_manage(principal, staff_id)
    async with request.app.state.runtime.db.reading() as conn:
        row = (
            await conn.execute(select(subscriptions).where(subscriptions.c.staff_id == staff_id))
        ).first()
    if row is None:
        return SubscriptionOut(staff_id=staff_id, language="en", notices={}, version=0)
    return SubscriptionOut(
        staff_id=staff_id,
        language=row.language,
        notices=orjson.loads(row.notices),
        version=row.version,
    )


@router.put("/subscriptions/{staff_id}")
async def put_subscription(
    staff_id: Annotated[str, Field(max_length=64)],
    body: SubscriptionIn,
    app: NotifierDep,
    principal: Annotated[Principal, Depends(require())],
) -> CommandAnswer:
    """Replace the subscription: ``{"language", "notices": {notice: ["email", "sms"]}}``."""
    _may_manage(principal, staff_id)
    if len(staff_id) > 64:
        raise ApiError(422, "invalid_input", "staff_id: at most 64 characters", field="staff_id")
    return await app.change_subscription(
        staff_id, body.language, {k: list(v) for k, v in body.notices.items()}, principal.actor
    )
