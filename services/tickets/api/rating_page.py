"""The page behind a mailed rating link (``shared.access.rating_links``): rate without logging in.

``GET /rate/{token}`` shows five buttons; ``POST /rate/{token}`` (form field
``score``) records the rating once. A forged or expired link is a 404 page, a
used one a 409 page; the page loads nothing from elsewhere and is never framed.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from services.tickets.api.deps import TicketsDep
from shared.access import TokenError, rating_links
from shared.domain import Conflict, DomainError, NotFound

router = APIRouter(tags=["ratings"])

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=HEADERS,
    )


def _link(request: Request, token: str) -> rating_links.RatingLink | None:
    try:
        # Signed by the notifier's own key: verified with its public half.
        return rating_links.verify(request.app.state.runtime.callers, token)
    except TokenError:
        return None


@router.get("/rate/{token}", response_class=HTMLResponse)
async def rating_page(token: str, request: Request) -> HTMLResponse:
    if _link(request, token) is None:
        return _page("This link is not valid", "<p>It may have expired.</p>", 404)
    buttons = "".join(
        f"<button name='score' value='{n}' style='font-size:2em'>{n}</button> " for n in range(1, 6)
    )
    return _page(
        "How did we do?",
        f"<form method='post' action='/rate/{html.escape(token)}'>"
        f"<p>1 = poor, 5 = excellent</p>{buttons}</form>",
    )


@router.post("/rate/{token}", response_class=HTMLResponse)
async def rate_by_link(
    token: str, request: Request, app: TicketsDep, score: Annotated[int, Form(ge=1, le=5)]
) -> HTMLResponse:
    link = _link(request, token)
    if link is None:
        return _page("This link is not valid", "<p>It may have expired.</p>", 404)
    try:
        await app.rate_by_link(link, score)
    except Conflict as refused:
        if refused.code == "link_used":
            return _page("Already rated", "<p>This link was used already. Thank you!</p>", 409)
        raise
    except (NotFound, DomainError):
        return _page("This link is not valid", "<p>There is nothing to rate here.</p>", 404)
    return _page("Thank you!", f"<p>You rated us {score} of 5.</p>")
