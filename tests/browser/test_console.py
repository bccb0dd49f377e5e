"""The console's main journeys in a real browser (Debian's Chromium driven by Playwright),
over the real services as processes, PostgreSQL and the broker.

* a client opens a request on a phone-sized screen and sees the expected response time;
* staff of that department see it appear in their queue without reloading, and reply
  with a template (its macros filled by the tickets service);
* the client sees the reply and rates it; staff see the rating;
* staff of another department do not see it (not in the queue, 404 by address);
* admin creates a department and a member with rights, and the member's pages change
  (the functions that manage rights are never offered: full access only);
* impersonation ("log in as this client") shows the portal with a banner, and the way back;
* a blocking announcement says why a request cannot be opened;
* forms without the session's CSRF token are refused, and the session cookie is
  HttpOnly and SameSite;
* who could see a request at a moment, and why;
* a forgotten password reset from the mailed link (once), and a changed password;
* staff set up a second factor (the URI and secret once, recovery codes once) and
  log in with a code.

The run writes screenshots of the main pages to ``docs/screenshots/``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.browser.stack import Person, Stack, World, eventually, login, make_world, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
LIVE_TIMEOUT = 20_000  # ms: a ticket travels store -> read model -> SSE -> console -> page


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running(kafka_bootstrap, tmp_path_factory.mktemp("console")) as started:
        yield started


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    return await make_world(stack)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert _installed(CHROMIUM), (
        "install Debian's chromium (apt-get install chromium); .ci/run does"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )  # fmt: skip
        try:
            yield launched
        finally:
            await launched.close()


def _installed(path: Path) -> bool:
    return path.exists()


async def context(browser: Browser, *, phone: bool = False) -> BrowserContext:
    made = await browser.new_context(
        viewport=PHONE if phone else DESKTOP, is_mobile=phone, locale="en-US"
    )
    made.set_default_timeout(15_000)
    return made


async def sign_in(page: Page, stack: Stack, person: Person) -> None:
    await page.goto(f"{stack.console}/login")
    await page.fill("input[name=login]", person.login)
    await page.fill("input[name=password]", person.password)
    await page.click("form[action='/login'] button[type=submit]")
    await expect(page).not_to_have_url(re.compile(r"/login"))


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def admin(stack: Stack) -> Person:
    from tests.browser.stack import ADMIN_PASSWORD

    return Person("", "admin", ADMIN_PASSWORD)


async def test_a_request_goes_from_the_client_to_staff_and_back(
    stack: Stack, world: World, browser: Browser
) -> None:
    staff_context = await context(browser)
    client_context = await context(browser, phone=True)
    other_context = await context(browser)
    try:
        staff = await staff_context.new_page()
        await sign_in(staff, stack, world.hosting_staff)
        await expect(staff).to_have_url(re.compile(r"/queue$"))
        await staff.evaluate("window.sameDocument = true")  # gone if the page reloads

        # The client, on a phone: the departments offered, with the expected response time.
        client = await client_context.new_page()
        await sign_in(client, stack, world.client)
        await client.goto(f"{stack.console}/my/requests/new")
        hosting = client.locator("label.department", has_text=world.hosting_name)
        await expect(hosting).to_contain_text("Servers and sites")
        await expect(hosting.locator(".expected")).to_contain_text("Expected response by")
        await shot(client, "client-new-request-phone")
        subject = f"Site down {uuid.uuid4().hex[:6]}"
        await hosting.locator("input[name=department_id]").check()
        await client.fill("input[name=subject]", subject)
        await client.fill("textarea[name=body]", "example.com answers 502")
        await client.click("form[action='/my/requests/new'] button[type=submit]")
        await expect(client.locator("h1")).to_have_text(subject)
        ticket_id = client.url.split("/my/requests/")[1].split("?")[0]
        token = await login(stack, world.client.login, world.client.password)
        opened = (await stack.call("GET", "tickets", f"/tickets/{ticket_id}", token)).json()
        due = datetime.fromisoformat(opened["due_at"].replace("Z", "+00:00"))
        await expect(client.locator("#expected-response")).to_have_text(
            due.strftime("%Y-%m-%d %H:%M UTC")
        )

        # Staff of the department: it appears in the open queue page, no reload.
        row = staff.locator("#queue tbody tr", has_text=subject)
        await expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
        assert await staff.evaluate("window.sameDocument === true"), "the queue page reloaded"
        await expect(staff.locator("#counts [data-status=open]")).not_to_have_text("0")
        await expect(row).to_contain_text(world.hosting_name)
        await shot(staff, "staff-queue")
        # The counts per status follow the filters: the department's open requests.
        await staff.goto(f"{stack.console}/queue?department_id={world.hosting}&status=open")
        await expect(staff.locator("#queue tbody tr", has_text=subject)).to_be_visible()
        open_count = int(await staff.locator("#counts [data-status=open]").inner_text())
        assert open_count == int(await staff.locator("#total").inner_text()) >= 1
        await staff.locator("#counts a", has_text="answered").click()
        await expect(staff.locator("#queue")).not_to_contain_text(subject)
        await staff.goto(f"{stack.console}/queue")

        # Staff of another department: not in their queue, and 404 by its address.
        other = await other_context.new_page()
        await sign_in(other, stack, world.network_staff)
        await expect(other.locator("#queue")).to_be_visible()
        await expect(other.locator("#queue")).not_to_contain_text(subject)
        answer = await other.goto(f"{stack.console}/tickets/{ticket_id}")
        assert answer is not None and answer.status == 404
        await expect(other.locator("h1")).to_have_text("Not found")

        # Reply with a template: the service fills %client_person% in.
        await row.locator("a").click()
        await expect(staff.locator("h1")).to_have_text(subject)
        await staff.select_option("select[name=template_id]", label=world.template_name)
        reply = f"Dear {world.client_person}, we are on it."
        await expect(staff.locator("textarea[name=body]")).to_have_value(reply)
        await shot(staff, "staff-ticket")
        await staff.locator("#reply").get_by_role("button", name="Reply", exact=True).click()
        await expect(staff.locator(".entry.from-staff")).to_contain_text(reply)

        # The client sees the reply and rates it; staff see the rating.
        await client.reload()
        answered = client.locator(".entry.from-staff", has_text=reply)
        await expect(answered).to_be_visible()
        await expect(client.locator("#status")).to_have_text("answered")
        await answered.locator("input[name=score][value='5']").check()
        await answered.locator("button[type=submit]").click()
        await expect(client.locator(".entry-rated .score-given")).to_have_text("5/5")
        await shot(client, "client-request-phone")
        await staff.reload()
        await expect(staff.locator(".entry-rated")).to_contain_text("5/5")
    finally:
        for made in (staff_context, client_context, other_context):
            await made.close()


async def test_a_reply_on_a_ticket_changed_meanwhile_says_someone_answered(
    stack: Stack, world: World, browser: Browser
) -> None:
    client_token = await login(stack, world.client.login, world.client.password)
    body = {"department_id": world.hosting, "subject": "Mail bounces", "body": "Since noon"}
    opened = await stack.call("POST", "tickets", "/tickets", client_token, json=body)
    assert opened.status_code == 201, opened.text
    ticket, position = opened.json()["id"], opened.json()["position"]
    first_context = await context(browser)
    second_context = await context(browser)
    client_context = await context(browser)
    try:
        first, second = await first_context.new_page(), await second_context.new_page()
        await sign_in(first, stack, world.hosting_staff)
        await sign_in(second, stack, admin(stack))
        for page in (first, second):
            await page.goto(f"{stack.console}/tickets/{ticket}?after={position}")
            await expect(page.locator("h1")).to_have_text("Mail bounces")
        # Both read version 1; the first answers.
        await first.fill("#reply textarea[name=body]", "Looking at the MX records")
        await first.locator("#reply").get_by_role("button", name="Reply", exact=True).click()
        await expect(first.locator(".entry.from-staff")).to_contain_text("MX records")
        # The second answers on what it read: nothing sent, what changed shown, text kept.
        await second.fill("#reply textarea[name=body]", "Restarting postfix")
        await second.locator("#reply").get_by_role("button", name="Reply", exact=True).click()
        collision = second.locator("#collision")
        await expect(collision).to_contain_text("Someone answered meanwhile")
        await expect(collision).to_contain_text("Looking at the MX records")
        await expect(second.locator("#reply textarea[name=body]")).to_have_value(
            "Restarting postfix"
        )
        await expect(second.locator(".entry.from-staff")).to_have_count(1)
        await shot(second, "staff-collision")
        # Now on the current version: an internal note, which the client never sees.
        await second.fill("#reply textarea[name=body]", "VIP customer, call them")
        await second.check("#reply input[name=internal]")
        await second.locator("#reply").get_by_role("button", name="Reply", exact=True).click()
        await expect(second.locator(".entry.internal")).to_contain_text("VIP customer")
        after = second.url.split("after=")[1]
        client = await client_context.new_page()
        await sign_in(client, stack, world.client)
        await client.goto(f"{stack.console}/my/requests/{ticket}?after={after}")
        await expect(client.locator(".entry.from-staff")).to_contain_text("MX records")
        await expect(client.locator("main")).not_to_contain_text("VIP customer")
        # Assigned to a member of the department, by login.
        await second.select_option(
            ".actions select[name=staff_id]", label=world.hosting_staff.login
        )
        await second.get_by_role("button", name="Assign", exact=True).click()
        await expect(second.locator("#assignee")).to_have_text(world.hosting_staff.login)
    finally:
        for made in (first_context, second_context, client_context):
            await made.close()


async def test_admin_makes_a_department_and_a_member_whose_pages_change(
    stack: Stack, world: World, browser: Browser
) -> None:
    admin_context = await context(browser)
    member_context = await context(browser)
    try:
        page = await admin_context.new_page()
        await sign_in(page, stack, admin(stack))
        # A department, with the section "clients" turned on.
        await page.goto(f"{stack.console}/departments")
        name = f"Billing {uuid.uuid4().hex[:6]}"
        form = page.locator("#new-department")
        await form.locator("input[name='name.en']").fill(name)
        await form.locator("input[name='name.ru']").fill(f"Биллинг {name[-6:]}")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("h1")).to_have_text(name)
        department_id = page.url.split("/departments/")[1].split("?")[0]
        clients_row = page.locator("#department-rights tr[data-right='clients']")
        await clients_row.locator("button").click()
        await expect(clients_row.locator("button")).to_have_text("Turn off")
        await shot(page, "admin-department-rights")
        # The functions that manage rights are full-access staff's alone: never offered.
        locked = page.locator("#department-rights tr[data-right='departments.rights']")
        await expect(locked).to_contain_text("full access only")
        await expect(locked.locator("button")).to_have_count(0)

        # A member of it.
        member = Person("", f"mila-{uuid.uuid4().hex[:6]}", "mila-password-2026")
        await page.goto(f"{stack.console}/staff")
        form = page.locator("#new-staff")
        await form.locator("input[name=login]").fill(member.login)
        await form.locator("input[name=password]").fill(member.password)
        await form.locator("input[name='full_name.en']").fill("Mila")
        await form.locator(f"input[name=departments][value='{department_id}']").check()
        # Identity learns the department from its topic: until then it answers that it does
        # not know it (the form comes back with the error, the department still ticked).
        for _ in range(60):
            async with page.expect_navigation():
                await page.locator("#new-staff button[type=submit]").click()
            if "/staff/" in page.url:
                break
            await expect(page.locator(".error")).to_contain_text("department")
            await page.locator("#new-staff input[name=password]").fill(member.password)
            await page.wait_for_timeout(250)
        member_id = page.url.split("/staff/")[1].split("?")[0]

        # The member's pages: clients (from the department), no queue yet.
        mine = await member_context.new_page()
        await sign_in(mine, stack, member)
        nav = mine.locator("header nav")
        await reload_until(mine, nav.get_by_role("link", name="Clients"))
        await expect(nav.get_by_role("link", name="Active requests")).to_have_count(0)

        # An individual grant: the queue appears for the member; the editor shows sources.
        await page.goto(f"{stack.console}/staff/{member_id}")
        await reload_until(page, page.locator("#staff-rights tr[data-right='clients.view']"))
        inherited = page.locator("#staff-rights tr[data-right='clients.view']")
        await expect(inherited).to_contain_text(name)
        await expect(inherited.get_by_role("button", name="Revoke")).to_have_count(0)
        await expect(page.locator("#grant option[value='staff.view']")).to_have_count(1)
        await expect(page.locator("#grant option[value='staff.rights']")).to_have_count(0)
        await expect(page.locator("#grant option[value='departments.rights']")).to_have_count(0)
        await page.select_option("#grant select[name=right]", value="tickets.view")
        await page.click("#grant button[type=submit]")
        granted = page.locator("#staff-rights tr[data-right='tickets.view']")
        await expect(granted).to_contain_text("granted individually")
        await expect(granted.get_by_role("button", name="Revoke")).to_be_visible()
        await shot(page, "admin-rights-editor")
        await reload_until(mine, nav.get_by_role("link", name="Active requests"))
        await mine.goto(f"{stack.console}/queue")
        await expect(mine.locator("h1")).to_have_text("Active requests")
    finally:
        await admin_context.close()
        await member_context.close()


async def reload_until(page: Page, locator: object, timeout: float = 30) -> None:
    """Reload until ``locator`` is there: rights travel through the topics first."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while await locator.count() == 0:  # type: ignore[attr-defined]
        assert datetime.now(UTC) < deadline, f"never appeared: {locator}"
        await page.wait_for_timeout(250)
        await page.reload()


async def test_impersonation_shows_the_portal_with_a_banner_and_a_way_back(
    stack: Stack, world: World, browser: Browser
) -> None:
    made = await context(browser)
    try:
        page = await made.new_page()
        await sign_in(page, stack, admin(stack))
        await page.goto(f"{stack.console}/clients?name={world.client.login}")
        await page.locator("#clients a", has_text=world.client.login).click()
        await expect(page.locator("h1")).to_have_text(world.client.login)
        card_url = page.url
        await page.click("#log-in-as")
        banner = page.locator("#impersonation")
        await expect(banner).to_contain_text("You are logged in as client")
        await expect(banner).to_contain_text(world.client.login)
        await expect(page.locator("h1")).to_have_text("My requests")
        await shot(page, "impersonation")
        await banner.get_by_role("button", name="Return to my session").click()
        await expect(page).to_have_url(card_url.split("?")[0])
        await expect(page.locator("#impersonation")).to_have_count(0)
        await expect(page.locator("header .who")).to_have_text("admin")
    finally:
        await made.close()


async def test_a_blocking_announcement_says_why_no_request_can_be_opened(
    stack: Stack, world: World, browser: Browser
) -> None:
    admin_context = await context(browser)
    client_context = await context(browser, phone=True)
    text = f"Data centre move tonight {uuid.uuid4().hex[:4]}"
    try:
        page = await admin_context.new_page()
        await sign_in(page, stack, admin(stack))
        await page.goto(f"{stack.console}/announcements")
        form = page.locator("#new-announcement")
        await form.locator("textarea[name='text.en']").fill(text)
        ends = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        await form.locator("input[name=ends_at]").fill(ends)
        await form.locator("input[name=blocking]").check()
        await form.locator("button[type=submit]").click()
        listed = page.locator("#announcement-list tr", has_text=text)
        await expect(listed).to_contain_text("active")

        client = await client_context.new_page()
        await sign_in(client, stack, world.client)
        await client.goto(f"{stack.console}/my/requests/new")
        await expect(client.locator(".banner.blocking")).to_have_text(text)
        await expect(client.locator("#blocked")).to_contain_text(
            "New requests cannot be opened now"
        )
        await expect(client.locator("#blocked")).to_contain_text(text)
        await expect(client.locator("input[name=subject]")).to_have_count(0)
        await shot(client, "client-blocked-phone")

        # Ended: the form is back.
        await listed.get_by_role("button", name="End now").click()
        await expect(page.locator("#announcement-list tr", has_text=text)).not_to_contain_text(
            "active"
        )
        await client.reload()
        await expect(client.locator("input[name=subject]")).to_be_visible()
    finally:
        await admin_context.close()
        await client_context.close()


async def test_forms_need_the_sessions_csrf_token_and_the_cookie_is_http_only(
    stack: Stack, world: World, browser: Browser
) -> None:
    made = await context(browser)
    try:
        page = await made.new_page()
        answer = await page.goto(f"{stack.console}/login")
        assert answer is not None
        headers = await answer.all_headers()
        assert headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in headers["content-security-policy"]
        await shot(page, "login")
        cookie = next(c for c in await made.cookies() if c["name"] == "console_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert world.client.password not in cookie["value"]
        # The same login posted without the form's token: refused, nobody signed in.
        async with httpx.AsyncClient(
            base_url=stack.console, trust_env=False, cookies={"console_session": cookie["value"]}
        ) as http:
            refused = await http.post(
                "/login", data={"login": world.client.login, "password": world.client.password}
            )
            assert refused.status_code == 403, refused.text
            home = await http.get("/")
            assert home.status_code == 303 and home.headers["location"] == "/login"
        await sign_in(page, stack, world.client)
        await expect(page.locator("header .who")).to_have_text(world.client.login)
        # Russian, remembered.
        await page.goto(f"{stack.console}/my/requests?lang=ru")
        await expect(page.locator("h1")).to_have_text("Мои запросы")
        await page.goto(f"{stack.console}/my/requests/new")
        await expect(page.locator("h1")).to_have_text("Новый запрос")
    finally:
        await made.close()


async def test_the_console_answers_health_and_ready(stack: Stack) -> None:
    answer = await eventually(
        lambda: stack.http.get(f"{stack.console}/ready"),
        lambda r: r.status_code == 200,
        "console ready",
    )
    assert answer.json()["ready"] is True
    metrics = await stack.http.get(f"{stack.console}/metrics")
    assert metrics.status_code == 200


async def test_reports_deliveries_timers_and_my_notifications(
    stack: Stack, world: World, browser: Browser
) -> None:
    client_token = await login(stack, world.client.login, world.client.password)
    staff_token = await login(stack, world.hosting_staff.login, world.hosting_staff.password)
    body = {"department_id": world.hosting, "subject": "Invoice copy", "body": "Please resend"}
    answered = (await stack.call("POST", "tickets", "/tickets", client_token, json=body)).json()
    reply = await stack.call(
        "POST", "tickets", f"/tickets/{answered['id']}/messages", staff_token,
        json={"body": "Sent again"},
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    rated = await stack.call(
        "POST", "tickets", f"/tickets/{answered['id']}/rate", client_token,
        json={"score": 4, "message_id": reply.json()["message_id"]},
    )  # fmt: skip
    assert rated.status_code == 200, rated.text
    body = {"department_id": world.hosting, "subject": "Still waiting", "body": "No answer yet"}
    waiting = (await stack.call("POST", "tickets", "/tickets", client_token, json=body)).json()

    made = await context(browser)
    try:
        page = await made.new_page()
        await sign_in(page, stack, admin(stack))
        # Reports: answered per month and ratings, drawn as bars with their numbers.
        await page.goto(f"{stack.console}/reports")
        await reload_until(
            page,
            page.locator("#ratings .bar-row", has_text="4 ★").filter(
                has_not_text=re.compile(r"★\s*0$")
            ),
        )
        await expect(page.locator("#answered .bar-row")).not_to_have_count(0)
        await expect(page.locator("#rating-average")).not_to_have_text("—")
        await shot(page, "staff-reports")
        # The client was told of the reply by e-mail: the delivery is listed, sent.
        await page.goto(f"{stack.console}/deliveries?to={world.client.login}@example.com")
        await reload_until(page, page.locator("#delivery-list tbody tr", has_text="sent"))
        # The open ticket's response-time warning is a pending timer.
        await page.goto(f"{stack.console}/timers")
        timer = page.locator(f"#timer-list tr:has(a[href='/tickets/{waiting['id']}'])")
        await reload_until(page, timer)
        await expect(timer.first).to_contain_text("response_time")
        # My own notifications.
        await page.goto(f"{stack.console}/subscriptions")
        box = page.locator("#subscriptions input[name='notices.new_ticket'][value=email]")
        await box.check()
        await page.locator("#subscriptions button[type=submit]").click()
        await expect(page.locator(".flash")).to_have_text("Saved.")
        await page.reload()
        await expect(box).to_be_checked()
    finally:
        await made.close()


async def test_the_client_card_schedules_categories_and_support_settings(
    stack: Stack, world: World, browser: Browser
) -> None:
    made = await context(browser)
    client_context = await context(browser, phone=True)
    try:
        page = await made.new_page()
        await sign_in(page, stack, admin(stack))
        # The card, edited on the version shown; a second tab's edit on the old version
        # is refused and says so.
        await page.goto(f"{stack.console}/clients/{world.client.id}")
        stale = await made.new_page()
        await stale.goto(page.url)
        await page.locator("summary", has_text="Edit").click()
        await page.select_option("#edit-client select[name=characteristic]", "good")
        await page.locator("#edit-client button[type=submit]").click()
        await expect(page.locator(".flash")).to_have_text("Saved.")
        await expect(page.locator("dl.card")).to_contain_text("good")
        await stale.locator("summary", has_text="Edit").click()
        await stale.select_option("#edit-client select[name=characteristic]", "conflict")
        await stale.locator("#edit-client button[type=submit]").click()
        await expect(stale.locator("#card-problem")).to_contain_text("changed this card meanwhile")
        await expect(stale.locator("dl.card")).to_contain_text("good")
        # An abuse notice: its deadline listed, the penalty points on the card.
        await page.locator("summary", has_text="Write to the client").click()
        form = page.locator("#message-client")
        await form.locator("input[name=subject]").fill("Abuse report")
        await form.locator("textarea[name=text]").fill("Spam from your server")
        deadline = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        await form.locator("input[name='violation.deadline']").fill(deadline)
        await form.locator("input[name='violation.penalty_points']").fill("5")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#client-messages")).to_contain_text("Abuse report")
        await reload_until(page, page.locator("dl.card dd", has_text=re.compile(r"^5$")))
        await shot(page, "staff-client-card")

        # A working schedule.
        await page.goto(f"{stack.console}/schedules")
        office = f"Office {uuid.uuid4().hex[:4]}"
        await page.fill("#new-schedule input[name=name]", office)
        await page.fill("#new-schedule input[name=timezone]", "Europe/Berlin")
        await page.locator("#new-schedule button[type=submit]").click()
        await expect(page.locator("#schedule-list tr", has_text=office)).to_contain_text(
            "mon 09:00–18:00"
        )
        # Support settings and a category whose warning the client sees.
        await page.goto(f"{stack.console}/support/settings")
        await page.fill("#settings input[name=close_after_days]", "7")
        await page.locator("#settings button[type=submit]").click()
        await expect(page.locator(".flash")).to_have_text("Saved.")
        await expect(page.locator("#settings input[name=close_after_days]")).to_have_value("7")
        topic = f"Migration {uuid.uuid4().hex[:4]}"
        await page.fill("#new-category input[name='topic.en']", topic)
        await page.select_option("#new-category select[name=department_id]", world.hosting)
        await page.fill("#new-category input[name=warning]", "Takes a business day")
        await page.locator("#new-category button[type=submit]").click()
        await expect(page.locator("#category-list tr", has_text=topic)).to_be_visible()
        client = await client_context.new_page()
        await sign_in(client, stack, world.client)
        # The abuse notice is a thread in the client's requests, with its text.
        await client.goto(f"{stack.console}/my/requests")
        await reload_until(client, client.locator("#my-requests a", has_text="Abuse report"))
        await client.locator("#my-requests a", has_text="Abuse report").first.click()
        await expect(client.locator("#message")).to_contain_text("Spam from your server")
        await client.goto(f"{stack.console}/my/requests/new")
        await expect(client.locator("select[name=category_id]")).to_contain_text(
            f"{topic} — Takes a business day"
        )
    finally:
        await made.close()
        await client_context.close()


async def test_search_finds_requests_and_clients_only_where_the_user_may_look(
    stack: Stack, world: World, browser: Browser
) -> None:
    word = f"walrus{uuid.uuid4().hex[:6]}"
    client_token = await login(stack, world.client.login, world.client.password)
    body = {"department_id": world.hosting, "subject": f"Backup {word}", "body": "Restore?"}
    opened = await stack.call("POST", "tickets", "/tickets", client_token, json=body)
    assert opened.status_code == 201, opened.text
    staff_context, other_context = await context(browser), await context(browser)
    try:
        page = await staff_context.new_page()
        await sign_in(page, stack, world.hosting_staff)
        await page.fill("header input[name=q]", word)
        await page.press("header input[name=q]", "Enter")
        await reload_until(page, page.locator("#found-tickets a", has_text=word))
        await page.fill("main input[name=q]", world.client.login)
        await page.locator("main form[role=search] button").click()
        await expect(page.locator("#found-clients")).to_contain_text(world.client.login)
        await shot(page, "staff-search")
        # Another department's staff: the same words find nothing (it is already indexed).
        other = await other_context.new_page()
        await sign_in(other, stack, world.network_staff)
        await other.goto(f"{stack.console}/search?q={word}")
        await expect(other.locator("main")).to_contain_text("Nothing here.")
        await expect(other.locator("#found-tickets")).to_have_count(0)
    finally:
        await staff_context.close()
        await other_context.close()


async def test_a_company_its_tree_and_its_manager_who_sees_the_members_requests(
    stack: Stack, world: World, browser: Browser
) -> None:
    # A colleague of the client, with a request of their own.
    colleague = Person("", f"colleague-{uuid.uuid4().hex[:6]}", "Colleague-pass-2026")
    body = {
        "login": colleague.login, "password": colleague.password,
        "email": f"{colleague.login}@example.com", "country": "DE",
        "customer_status": "individual", "project_id": world.project,
    }  # fmt: skip
    created = await stack.call("POST", "clients", "/clients", json=body)
    assert created.status_code == 201, created.text
    colleague.id = created.json()["id"]
    token = await login(stack, colleague.login, colleague.password)
    subject = f"Colleague's request {uuid.uuid4().hex[:4]}"
    opened = await eventually(
        lambda: stack.call(
            "POST", "tickets", "/tickets", token,
            json={"department_id": world.hosting, "subject": subject, "body": "Hello"},
        ),
        lambda r: r.status_code != 422,
        "tickets knows the colleague",
    )  # fmt: skip
    assert opened.status_code == 201, opened.text

    made = await context(browser)
    client_context = await context(browser, phone=True)
    try:
        page = await made.new_page()
        await sign_in(page, stack, admin(stack))
        await page.goto(f"{stack.console}/companies")
        name = f"ACME {uuid.uuid4().hex[:4]}"
        await page.fill("#new-company input[name=name]", name)
        await page.locator("#new-company button[type=submit]").click()
        await expect(page.locator("h1")).to_have_text(name)
        await page.fill("#add-member input[name=client_id]", world.client.id)
        await page.check("#add-member input[name=manager]")
        await page.locator("#add-member button[type=submit]").click()
        await expect(page.locator("#members")).to_contain_text("client manager")
        await page.fill("#add-member input[name=client_id]", colleague.id)
        await page.locator("#add-member button[type=submit]").click()
        await expect(page.locator("#members li")).to_have_count(2)
        # A contact without e-mail needs a messenger: the service says so.
        await page.fill("#add-contact input[name=name]", "Night shift")
        await page.locator("#add-contact button[type=submit]").click()
        await expect(page.locator(".error")).to_be_visible()
        await page.fill("#add-contact input[name=name]", "Night shift")
        await page.fill("#add-contact input[name=messenger]", "telegram")
        await page.fill("#add-contact input[name=messenger_id]", "acme_ops")
        await page.locator("#add-contact button[type=submit]").click()
        await expect(page.locator("#contacts")).to_contain_text("telegram: acme_ops")
        # The equipment tree: a server inside a rack.
        await page.fill("#add-equipment input[name=name]", "Rack 1")
        await page.locator("#add-equipment button[type=submit]").click()
        await page.fill("#add-equipment input[name=name]", "Server A")
        await page.select_option("#add-equipment select[name=parent_id]", label="Rack 1")
        await page.locator("#add-equipment button[type=submit]").click()
        await expect(page.locator("#equipment > ul > li > ul > li")).to_contain_text("Server A")
        await shot(page, "staff-company")

        # The client manager sees the colleague's request among theirs.
        client = await client_context.new_page()
        await sign_in(client, stack, world.client)
        await client.goto(f"{stack.console}/my/requests")
        await reload_until(client, client.locator("#my-requests a", has_text=subject))
    finally:
        await made.close()
        await client_context.close()


async def test_who_could_see_a_request_at_a_moment_and_why(
    stack: Stack, world: World, browser: Browser
) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    client_token = await login(stack, world.client.login, world.client.password)
    body = {"department_id": world.hosting, "subject": "Who sees me", "body": "Curious"}
    opened = await stack.call("POST", "tickets", "/tickets", client_token, json=body)
    assert opened.status_code == 201, opened.text
    ticket, position = opened.json()["id"], opened.json()["position"]
    made = await context(browser)
    try:
        page = await made.new_page()
        await sign_in(page, stack, world.hosting_staff)
        await page.goto(f"{stack.console}/tickets/{ticket}?after={position}")
        await expect(page.locator("h1")).to_have_text("Who sees me")
        moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        await page.fill("#viewers input[name=at]", moment)
        await page.locator("#viewers button[type=submit]").click()
        await expect(page).to_have_url(re.compile(r"/viewers\?at="))
        member = page.locator(f"#viewers-staff tr[data-staff-id='{world.hosting_staff.id}']")
        await reload_until(page, member)  # access facts travel through identity's topic
        await expect(member).to_contain_text("member of the request's department")
        await expect(member).to_contain_text(world.hosting_name)
        await expect(page.locator("#viewers-staff")).not_to_contain_text(world.network_staff.login)
        await expect(page.locator("#viewers-clients")).to_contain_text("the request's client")
        await shot(page, "staff-ticket-viewers")
        # Before the request was opened, nobody could see it.
        await page.fill("#viewers-form input[name=at]", before.strftime("%Y-%m-%dT%H:%M:%S"))
        await page.locator("#viewers-form button[type=submit]").click()
        await expect(page.locator("#viewers-none")).to_be_visible()
    finally:
        await made.close()


async def _mailed_reset_link(stack: Stack, address: str, timeout: float = 60) -> str:
    """The reset link in the mail the notifier sent to ``address`` (the SMTP sink's files)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while True:
        for path in sorted(stack.mail.glob("*.eml")) if stack.mail.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address not in str(message.get("To", "")):
                continue
            part = message.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else ""
            found = re.search(r"https?://\S+/reset\?token=[\w.-]+", str(text))
            if found:
                return found.group(0)
        assert datetime.now(UTC) < deadline, f"no reset mail to {address}:\n{stack.log_tail()}"
        await asyncio.sleep(0.25)


async def test_a_forgotten_password_is_reset_from_the_mailed_link(
    stack: Stack, world: World, browser: Browser
) -> None:
    person = Person("", f"forgetful-{uuid.uuid4().hex[:6]}", "Forgetful-pass-2026")
    address = f"{person.login}@example.com"
    body = {
        "login": person.login, "password": person.password, "email": address,
        "country": "DE", "customer_status": "individual", "project_id": world.project,
    }  # fmt: skip
    created = await stack.call("POST", "clients", "/clients", json=body)
    assert created.status_code == 201, created.text
    await login(stack, person.login, person.password)  # identity knows the login
    made = await context(browser)
    try:
        page = await made.new_page()
        await page.goto(f"{stack.console}/login")
        await page.get_by_role("link", name="Forgot your password?").click()
        await page.fill("input[name=login]", person.login)
        await page.locator("form[action='/forgot'] button[type=submit]").click()
        await expect(page.locator(".flash")).to_contain_text("a message with a link")
        link = await _mailed_reset_link(stack, address)
        assert link.startswith(f"{stack.console}/reset?token="), link
        await page.goto(link)
        await expect(page.locator("input[name=token]")).to_have_value(link.split("token=")[1])
        await page.fill("input[name=new_password]", "Remembered-pass-2026")
        await page.locator("form[action='/reset'] button[type=submit]").click()
        await expect(page).to_have_url(re.compile(r"/login$"))
        await expect(page.locator(".flash")).to_contain_text("Your password is changed")
        # The link works once.
        await page.goto(link)
        await page.fill("input[name=new_password]", "Another-pass-2026")
        await page.locator("form[action='/reset'] button[type=submit]").click()
        await expect(page.locator(".error")).to_be_visible()
        # The new password logs in; then the client changes it again themselves.
        await sign_in(page, stack, Person(person.id, person.login, "Remembered-pass-2026"))
        await page.goto(f"{stack.console}/password")
        await page.fill("input[name=current_password]", "Remembered-pass-2026")
        await page.fill("input[name=new_password]", "Changed-pass-2026")
        await page.locator("form[action='/password'] button[type=submit]").click()
        await expect(page.locator(".flash")).to_contain_text("Your password is changed.")
        await login(stack, person.login, "Changed-pass-2026")
    finally:
        await made.close()


async def test_staff_set_up_a_second_factor_and_log_in_with_a_code(
    stack: Stack, world: World, browser: Browser
) -> None:
    person = Person("", f"careful-{uuid.uuid4().hex[:6]}", "Careful-pass-2026")
    body = {
        "login": person.login, "password": person.password,
        "full_name": {"en": "Careful", "ru": "Осторожный"}, "departments": [world.hosting],
    }  # fmt: skip
    created = await stack.call("POST", "identity", "/staff", json=body)
    assert created.status_code == 201, created.text
    token = await login(stack, person.login, person.password)
    await eventually(  # tickets knows the member, who lacks tickets.view
        lambda: stack.call("GET", "tickets", "/tickets", headers=token),
        lambda r: r.status_code == 403,
        "tickets refuses the member the queue",
    )
    made = await context(browser)
    try:
        page = await made.new_page()
        await sign_in(page, stack, person)
        # Without tickets.view the queue refuses; the refusal still shows who is
        # signed in and their account links (the page's calls race "me").
        await expect(page.locator("h1")).to_have_text("You may not do this")
        await expect(page.locator("header .who")).to_have_text(person.login)
        await page.get_by_role("link", name="Two-factor authentication").click()
        await page.locator("#second-factor-start button[type=submit]").click()
        uri = await page.locator("#otpauth-uri").inner_text()
        secret = await page.locator("#otp-secret").inner_text()
        assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri, uri
        totp = pyotp.TOTP(secret)
        await page.fill("#second-factor-confirm input[name=code]", totp.now())
        await page.locator("#second-factor-confirm button[type=submit]").click()
        codes = page.locator("#recovery-codes li")
        await expect(codes.first).to_be_visible()
        assert await codes.count() >= 1
        # The page showed them once: opening it again shows none.
        await page.goto(f"{stack.console}/2fa")
        await expect(page.locator("#recovery-codes")).to_have_count(0)
        await page.locator("header form[action='/logout'] button").click()

        # Logging in now needs the code: the form asks for it and keeps the login.
        await page.goto(f"{stack.console}/login")
        await page.fill("input[name=login]", person.login)
        await page.fill("input[name=password]", person.password)
        await page.click("form[action='/login'] button[type=submit]")
        await expect(page.locator("input[name=otp]")).to_be_visible()
        await expect(page.locator("input[name=login]")).to_have_value(person.login)
        await page.fill("input[name=password]", person.password)
        # A code of the next step: the one used to confirm is spent (same step).
        later = totp.at(datetime.now(UTC) + timedelta(seconds=30))
        await page.fill("input[name=otp]", later)
        await page.click("form[action='/login'] button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/queue$"))
    finally:
        await made.close()
