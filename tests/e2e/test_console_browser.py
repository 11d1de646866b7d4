"""The agent console in a real browser (Playwright driving Debian's Chromium) against ``centrala up``: sign in,
see a new e-mail ticket in the work list, answer it, and see the caller's card pop up while a (signed) Twilio
call rings. Screenshots go to ``var/test-artifacts/console/``."""

from __future__ import annotations

import json
import os
import signal
import smtplib
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.support.mails import make_mail
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until
from tests.telephony import forms

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"
TWILIO_TOKEN = "console-e2e-twilio-token"
AGENT = "hotline@localhost"
PASSWORD = "a long console password"


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    env = service_env(
        tmp_path / "var",
        http_port=http_port,
        smtp_port=smtp_port,
        embedded=embedded,
        CENTRALA_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        CENTRALA_TWILIO_BACKEND="fake",
        CENTRALA_PHONE_LINES=json.dumps([{"number": forms.OUR_NUMBER, "queue": "Hotline", "language": "cs"}]),
    )
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200, timeout=60,
                   what="/healthz")
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", AGENT, "--role", "admin", "--name", "Alena"], env).strip()
        run(["agents", "set-password", "--email", AGENT, "--password", PASSWORD], env)
        yield {"base_url": base_url, "smtp_port": smtp_port, "token": token}
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-4000:])


def test_an_agent_answers_a_mail_and_sees_a_ringing_callers_card(service, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base_url = service["base_url"]
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
    me = api.get("/api/v1/agents/me/phone").json()
    api.put(f"/api/v1/agents/{me['id']}/queues", json={"queues": ["Hotline"]}).raise_for_status()
    api.put("/api/v1/agents/me/availability", json={"availability": "available"}).raise_for_status()
    api.post("/api/v1/contacts", json={"name": "Jana Nováková", "emails": ["jana@example.cz"],
                                       "phones": ["+420 601 123 456"]}).raise_for_status()
    with smtplib.SMTP("127.0.0.1", service["smtp_port"], timeout=10) as smtp:
        smtp.sendmail("jana@example.cz", ["support@localhost"], make_mail(message_id="<console-e2e@example.cz>"))
    [ticket] = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=20, what="the ticket")

    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{base_url}/console")
    page.fill("input[name=email]", AGENT)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/console")
    assert page.locator("text=Nefunguje mi přihlášení").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "work-lists.png"), full_page=True)

    page.click(f"a:has-text('{ticket['number']}')")
    page.wait_for_url(f"{base_url}/console/tickets/{ticket['number']}")
    page.fill("form[action$='/reply'] textarea", "Dobrý den, heslo jsme vám obnovili.")
    page.click("form[action$='/reply'] button")
    page.wait_for_selector("text=Reply queued")
    assert page.locator("text=Dobrý den, heslo jsme vám obnovili.").count() == 1
    page.screenshot(path=str(ARTIFACTS / "ticket.png"), full_page=True)

    # A new mail arrives while the agent looks at the ticket: it is announced without a reload.
    with smtplib.SMTP("127.0.0.1", service["smtp_port"], timeout=10) as smtp:
        smtp.sendmail("petr@example.cz", ["support@localhost"],
                      make_mail(sender="Petr Malý <petr@example.cz>", subject="Objednávka nedorazila",
                                message_id="<console-e2e-2@example.cz>"))
    news = page.wait_for_selector("#live-news li", timeout=20_000)
    assert "new ticket: Objednávka nedorazila" in news.inner_text()

    # A call rings this agent: the caller's card appears without reloading the page.
    form = forms.voice_request()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{base_url}/twilio/voice", form)
    answer = httpx.post(f"{base_url}/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})
    assert f"agent-{me['id']}" in answer.text
    pop = page.wait_for_selector("#screen-pop:not([hidden])", timeout=20_000)
    card = pop.inner_text()
    assert "+420 601 123 456" in card and "Jana Nováková" in card and ticket["number"] in card
    page.screenshot(path=str(ARTIFACTS / "screen-pop.png"), full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e], errors
