"""The portal in a real browser (Playwright driving Debian's Chromium) against ``centrala up``: sign-in through
the link read from the outbox, the list, a case, a reply with a file, a new case, a rating and the language
switch, with a screenshot of each main page in ``var/test-artifacts/portal/``."""

from __future__ import annotations

import os
import re
import signal
import smtplib
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest

from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "portal"
LINK = re.compile(r"https?://\S+/portal/sign-in/[A-Za-z0-9_-]+")
CUSTOMER = "jana@example.cz"


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    """``centrala up`` on the run's database, its public URL its own address."""
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    var_dir = tmp_path / "var"
    env = service_env(var_dir, http_port=http_port, smtp_port=smtp_port, embedded=embedded)
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200, timeout=60,
                   what="/healthz")
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", "portal-e2e@localhost", "--role", "admin"], env).strip()
        yield {"base_url": base_url, "smtp_port": smtp_port, "token": token, "outbox": var_dir / "outbox"}
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-5000:])


def _sign_in_link(outbox: Path, seen: set[str]) -> str | None:
    for path in sorted((outbox / "new").glob("*")) if (outbox / "new").is_dir() else []:
        if path.name in seen:
            continue
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        body = message.get_body(("plain",))
        found = LINK.search(body.get_content()) if body is not None else None
        if found:
            seen.add(path.name)
            return found.group(0)
    return None


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_customer_signs_in_reads_replies_opens_rates_and_switches_language(service, browser, tmp_path):
    api = httpx.Client(base_url=service["base_url"], headers={"Authorization": f"Bearer {service['token']}"})
    with smtplib.SMTP("127.0.0.1", service["smtp_port"], timeout=10) as smtp:
        smtp.sendmail(CUSTOMER, ["support@localhost"], make_mail(message_id="<portal-e2e-1@example.cz>"))
    [ticket] = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=10, what="the ticket")
    contact_id = ticket["contact"]["id"]

    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    page = context.new_page()
    base = service["base_url"]

    # Sign in: the same neutral answer, then the link from the outbox; opening it only shows a button.
    page.goto(f"{base}/portal")
    _shot(page, "01-sign-in")
    page.fill("#email", CUSTOMER.upper())
    page.click("button[type=submit].primary")
    page.wait_for_selector("text=Check your e-mail")
    seen: set[str] = set()
    link = wait_until(lambda: _sign_in_link(service["outbox"], seen), timeout=20, what="the sign-in mail")
    assert link.startswith(f"{base}/portal/sign-in/")
    page.goto(link)
    _shot(page, "02-confirm")
    page.goto(link)  # opened twice (a scanner, a preview): still usable
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/portal/tickets")
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    session_cookie = cookies["__Host-centrala_session"]
    assert session_cookie["secure"] and session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"
    assert ticket["number"] in page.content()
    _shot(page, "03-cases")

    # The case with its thread; a reply with a file.
    page.click(f"text={ticket['number']}")
    page.wait_for_url(f"{base}/portal/tickets/{ticket['number']}")
    _shot(page, "04-case")
    upload = tmp_path / "receipt.txt"
    upload.write_text("order 42\n")
    page.fill("#reply textarea[name=message]", "Here is the receipt you asked for.")
    page.set_input_files("#reply input[type=file]", str(upload))
    page.click("#reply button[type=submit]")
    page.wait_for_selector("text=Here is the receipt you asked for.")
    assert page.locator("a[download]", has_text="receipt.txt").count() == 1
    detail = api.get(f"/api/v1/tickets/{ticket['id']}").json()
    portal_reply = detail["interactions"][-1]
    assert (portal_reply["channel"], portal_reply["direction"]) == ("portal", "inbound")

    # A new case.
    page.goto(f"{base}/portal/tickets/new")
    page.select_option("#case_type", "complaint")
    page.fill("#subject", "Damaged parcel")
    page.fill("#message", "The box arrived crushed.")
    _shot(page, "05-new-case")
    page.click("main button[type=submit]")
    page.wait_for_selector("text=Damaged parcel")
    assert "Complaint" in page.content()

    # The agent resolves the first case: the customer is asked to rate it, once.
    resolved = api.post(f"/api/v1/tickets/{ticket['id']}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    page.goto(f"{base}/portal/tickets")
    page.click(f"a[href='/portal/tickets/{ticket['number']}/rating']")
    page.check("input[name=rating][value='5']")
    page.fill("#comment", "Fast and kind.")
    _shot(page, "06-rating")
    page.click("#rating button[type=submit]")
    page.wait_for_selector("text=5 of 5")
    csat = api.get(f"/api/v1/tickets/{ticket['id']}").json()["csat"]
    assert [(s["rating"], s["comment"]) for s in csat] == [(5, "Fast and kind.")]

    # Language switch: the page and the contact's language follow.
    page.click("button[value=cs]")
    page.wait_for_selector("text=Moje požadavky")
    _shot(page, "07-cases-cs")
    assert api.get(f"/api/v1/contacts/{contact_id}").json()["language"] == "cs"

    # Sign-out revokes the session: the cases are gone behind the sign-in page.
    page.click("header button[type=submit]")
    page.goto(f"{base}/portal/tickets")
    assert "/portal?next=" in page.url
    context.close()
