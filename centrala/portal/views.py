"""The portal's pages: thin handlers that check the session and the form, call one service, and render.

Every page is rendered on the server and works without JavaScript. Every POST carries a CSRF token bound to
the browser's session (or, before sign-in, to its CSRF cookie) and must come from our own origin.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from centrala.core.forms import comes_from_our_pages
from centrala.core.ids import PathId
from centrala.core.queue import PendingJob, enqueue_now, get_redis
from centrala.core.settings import Settings
from centrala.portal import auth, cases, i18n
from centrala.tickets.api import SessionDep, SettingsDep
from centrala.tickets.attachments import attachment_response
from centrala.tickets.csat import answer_survey, get_open_survey
from centrala.tickets.customer import (
    MAX_FILE_BYTES,
    MAX_FILES,
    UploadedFile,
    add_customer_reply,
    close_by_customer,
    open_customer_case,
    reopen_by_customer,
)
from centrala.tickets.models import CaseType, Contact, TicketStatus
from centrala.tickets.tickets import is_past_reopen_window

log = logging.getLogger(__name__)

router = APIRouter(prefix="/portal", include_in_schema=False)

_ENV = Environment(
    loader=PackageLoader("centrala.portal", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Images in stored e-mail HTML point at the agents' API; customers fetch them through their own scope.
_API_ATTACHMENT_URL = re.compile(r'(["\'])/api/v1/attachments/(\d+)\1')
STATIC_CSS = resources.files("centrala.portal").joinpath("static/portal.css")

TicketNumber = Annotated[str, Path(max_length=32)]
CsrfField = Annotated[str, Form(max_length=128)]


def get_portal_redis() -> redis.Redis:
    """The Redis client for rate limits and the sign-in job (a dependency, so tests can swap it)."""
    return get_redis()


@dataclass
class Page:
    """Everything a portal request knows about its browser: who is signed in, the language, the CSRF token."""

    request: Request
    settings: Settings
    contact: Contact | None
    language: str
    session_secret: str | None
    csrf_cookie: str
    new_csrf_cookie: bool
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def viewer(self) -> cases.Viewer:
        if self.contact is None:
            raise AuthenticationError("sign in to the portal")
        return cases.Viewer.of(self.contact)

    @property
    def csrf(self) -> str:
        binding = self.session_secret if self.contact is not None and self.session_secret else self.csrf_cookie
        return auth.csrf_token(settings=self.settings, binding=binding)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        translations = i18n.translations(self.language)
        html = _ENV.get_template(template).render(
            _=translations.gettext,
            ngettext=translations.ngettext,
            lang=self.language,
            languages=i18n.LANGUAGE_NAMES,
            fmt=i18n.Formatter(self.language, self.settings.portal_timezone),
            csrf=self.csrf,
            contact=self.contact,
            path=self.request.url.path,
            team=self.settings.mail_from_name,
            **context,
        )
        return self.finish(HTMLResponse(html, status_code=status_code))

    def redirect(self, url: str) -> RedirectResponse:
        return self.finish(RedirectResponse(url, status_code=303))

    def finish(self, response: Response) -> Response:
        if self.new_csrf_cookie:
            set_cookie(response, auth.CSRF_COOKIE, self.csrf_cookie, max_age=None)
        for name, value in self.cookies.items():
            set_cookie(response, name, value, max_age=self.settings.portal_session_hours * 3600)
        return response


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    """A ``__Host-`` cookie: Secure, host-only, Path=/ (RFC 6265bis §4.1.3.2), HttpOnly, SameSite=Lax."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def get_page(request: Request, session: SessionDep, settings: SettingsDep) -> Page:
    """The request's browser state (a dependency of every portal page)."""
    session_secret = request.cookies.get(auth.SESSION_COOKIE)
    contact = auth.get_session_contact(session=session, secret=session_secret, now=clock.now())
    csrf_cookie = request.cookies.get(auth.CSRF_COOKIE, "")
    new_cookie = not re.fullmatch(r"[A-Za-z0-9_-]{40,60}", csrf_cookie)
    if new_cookie:
        csrf_cookie = secrets.token_urlsafe(auth.TOKEN_BYTES)
    language = i18n.choose_language(
        contact_language=contact.language if contact is not None else None,
        cookie=request.cookies.get(auth.LANGUAGE_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )
    return Page(request, settings, contact, language, session_secret, csrf_cookie, new_cookie)


PageDep = Annotated[Page, Depends(get_page)]


def check_post(page: Page, token: str) -> None:
    """Refuse a POST from another site: the Origin (else Sec-Fetch-Site) must be ours and the token valid.

    Raises:
        PermissionDeniedError: a cross-site request or a missing or wrong token.
    """
    if not comes_from_our_pages(page.request, page.settings.public_origin):
        raise PermissionDeniedError("the form was sent from another site")
    bindings = [page.csrf_cookie if not page.new_csrf_cookie else ""]
    if page.contact is not None and page.session_secret:
        bindings.append(page.session_secret)
    if not auth.csrf_token_matches(settings=page.settings, token=token, bindings=bindings):
        raise PermissionDeniedError("the form has expired; please go back, reload the page and try again")


def client_key(request: Request) -> str:
    """The client address the per-client rate limit counts (the peer: put the proxy's real-IP module first)."""
    return request.client.host if request.client else "unknown"


# --- Static ---------------------------------------------------------------------------------------------------


@router.get("/static/portal.css")
def stylesheet() -> Response:
    """The portal's one stylesheet."""
    return Response(
        STATIC_CSS.read_bytes(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


# --- Sign-in ----------------------------------------------------------------------------------------------


@router.get("")
def sign_in_form(page: PageDep, next: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """The sign-in page (signed in: the list of cases)."""
    if page.contact is not None:
        return page.redirect(auth.safe_next_path(next) or "/portal/tickets")
    return page.render("sign_in.html", next=auth.safe_next_path(next))


@router.post("/sign-in")
def request_sign_in(
    page: PageDep,
    client: Annotated[redis.Redis, Depends(get_portal_redis)],
    csrf: CsrfField,
    email: Annotated[str, Form(max_length=320)],
    next: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Send a sign-in link if the address is a customer's; the answer is the same either way.

    The lookup and the mail happen in a worker, so this request does the same work, in the same time, for
    an address we know and one we don't. Over the per-address limit nothing is sent, silently; over the
    per-client limit the answer says to wait (it reveals nothing about any address).
    """
    check_post(page, csrf)
    settings = page.settings
    window = settings.portal_rate_window_seconds
    if not auth.allow_attempt(
        client=client, key=f"client:{client_key(page.request)}", limit=settings.portal_sign_in_per_client,
        window_seconds=window, namespace=settings.queue_name,
    ):
        return page.render("error.html", status_code=429, kind="rate")
    address = auth.normalise_sign_in_address(email)
    if address is None:
        return page.render("sign_in.html", status_code=422, next=auth.safe_next_path(next), invalid=True, email=email)
    if auth.allow_attempt(
        client=client, key=f"address:{address}", limit=settings.portal_sign_in_per_address, window_seconds=window,
        namespace=settings.queue_name,
    ):
        enqueue_now([PendingJob(auth.SIGN_IN_JOB, (address, auth.safe_next_path(next)))], connection=client)
    else:
        log.info("sign-in requests for one address over the limit")
    return page.render("sign_in_sent.html")


@router.get("/sign-in/{secret}")
def confirm_sign_in(page: PageDep, session: SessionDep, secret: Annotated[str, Path(max_length=100)]) -> Response:
    """The page a sign-in link opens: a button that signs in. Opening it uses nothing up (mail scanners)."""
    usable = auth.find_usable_link(session=session, secret=secret, now=clock.now()) is not None
    return page.render("confirm.html", usable=usable, secret=secret, status_code=200 if usable else 410)


@router.post("/sign-in/{secret}")
def sign_in(
    page: PageDep, session: SessionDep, csrf: CsrfField, secret: Annotated[str, Path(max_length=100)]
) -> Response:
    """Use the link up and start a new session (the browser's old one, if any, is revoked)."""
    check_post(page, csrf)
    now = clock.now()
    token = auth.consume_sign_in_link(session=session, secret=secret, now=now)
    if token is None:
        session.rollback()
        return page.render("confirm.html", usable=False, secret=secret, status_code=410)
    signed_in = auth.start_session(
        session=session, contact_id=token.contact_id, now=now, settings=page.settings, replaces=page.session_secret
    )
    session.commit()
    page.cookies[auth.SESSION_COOKIE] = signed_in.secret
    return page.redirect(token.next_path or "/portal/tickets")


@router.post("/sign-out")
def sign_out(page: PageDep, session: SessionDep, csrf: CsrfField) -> Response:
    """Revoke the session and forget the cookie."""
    check_post(page, csrf)
    if page.session_secret:
        auth.end_session(session=session, secret=page.session_secret, now=clock.now())
        session.commit()
    response = page.redirect("/portal")
    response.delete_cookie(auth.SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@router.post("/language")
def switch_language(
    page: PageDep,
    session: SessionDep,
    csrf: CsrfField,
    language: Annotated[str, Form(max_length=8)],
    next: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Switch the portal's language; a signed-in customer's e-mail follows it too."""
    check_post(page, csrf)
    chosen = i18n.supported(language)
    if chosen is None:
        raise InvalidInputError("unsupported language")
    if page.contact is not None:
        page.contact.language = chosen
        session.commit()
    page.cookies[auth.LANGUAGE_COOKIE] = chosen
    return page.redirect(auth.safe_next_path(next) or "/portal")


# --- Cases ------------------------------------------------------------------------------------------------


@router.get("/tickets")
def list_cases(page: PageDep, session: SessionDep, p: Annotated[int, Query(ge=1, le=cases.MAX_PAGE)] = 1) -> Response:
    """The customer's cases, most recently updated first."""
    viewer = page.viewer
    listing = cases.list_cases(session=session, viewer=viewer, page=p)
    to_rate = cases.list_surveys_to_answer(session=session, viewer=viewer)
    return page.render("cases.html", listing=listing, to_rate=to_rate)


@router.get("/tickets/new")
def new_case_form(page: PageDep) -> Response:
    """The form to open a new case."""
    page.viewer
    return page.render("new_case.html", case_types=list(CaseType), submission=secrets.token_urlsafe(18), form={})


@router.post("/tickets")
def create_case(
    page: PageDep,
    session: SessionDep,
    csrf: CsrfField,
    subject: Annotated[str, Form(max_length=1000)],
    message: Annotated[str, Form(max_length=100_000)],
    case_type: Annotated[CaseType, Form()],
    submission: Annotated[str | None, Form(max_length=64)] = None,
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Open a new case and show it."""
    check_post(page, csrf)
    viewer_contact = _signed_in(page)
    try:
        ticket = open_customer_case(
            session=session, contact=viewer_contact, subject=subject, text=message, case_type=case_type,
            files=_read_files(files), now=clock.now(), settings=page.settings,
            blobs=BlobStore(page.settings.blob_dir), submission_key=submission,
        )
    except InvalidInputError as error:
        session.rollback()
        return page.render(
            "new_case.html", status_code=422, case_types=list(CaseType), submission=submission, error=str(error),
            form={"subject": subject, "message": message, "case_type": case_type},
        )
    session.commit()
    return page.redirect(f"/portal/tickets/{ticket.number}")


@router.get("/tickets/{number}")
def show_case(page: PageDep, session: SessionDep, number: TicketNumber) -> Response:
    """One case with its whole conversation."""
    return _render_case(page, session, number)


@router.get("/tickets/{number}/rating")
def show_rating(page: PageDep, session: SessionDep, number: TicketNumber) -> Response:
    """The case with its rating form first: where the survey e-mail leads."""
    return _render_case(page, session, number, rating_first=True)


@router.post("/tickets/{number}/replies")
def reply(
    page: PageDep,
    session: SessionDep,
    csrf: CsrfField,
    number: TicketNumber,
    message: Annotated[str, Form(max_length=100_000)],
    submission: Annotated[str | None, Form(max_length=64)] = None,
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Add the customer's reply (and files) to the case."""
    check_post(page, csrf)
    contact = _signed_in(page)
    ticket = cases.get_case_or_raise(session=session, viewer=page.viewer, number=number)
    try:
        add_customer_reply(
            session=session, ticket=ticket, contact=contact, text=message, files=_read_files(files),
            now=clock.now(), settings=page.settings, blobs=BlobStore(page.settings.blob_dir),
            submission_key=submission,
        )
    except InvalidInputError as error:
        session.rollback()
        return _render_case(page, session, number, status_code=422, error=str(error), draft=message)
    session.commit()
    return page.redirect(f"/portal/tickets/{ticket.number}#latest")


@router.post("/tickets/{number}/close")
def close_case(page: PageDep, session: SessionDep, csrf: CsrfField, number: TicketNumber) -> Response:
    """The customer closes the case."""
    check_post(page, csrf)
    ticket = cases.get_case_or_raise(session=session, viewer=page.viewer, number=number)
    close_by_customer(session=session, ticket=ticket, now=clock.now(), settings=page.settings)
    session.commit()
    return page.redirect(f"/portal/tickets/{ticket.number}")


@router.post("/tickets/{number}/reopen")
def reopen_case(page: PageDep, session: SessionDep, csrf: CsrfField, number: TicketNumber) -> Response:
    """The customer reopens a resolved or closed case."""
    check_post(page, csrf)
    ticket = cases.get_case_or_raise(session=session, viewer=page.viewer, number=number)
    reopen_by_customer(session=session, ticket=ticket, now=clock.now(), settings=page.settings)
    session.commit()
    return page.redirect(f"/portal/tickets/{ticket.number}")


@router.post("/tickets/{number}/rating")
def rate_case(
    page: PageDep,
    session: SessionDep,
    csrf: CsrfField,
    number: TicketNumber,
    rating: Annotated[int, Form(ge=1, le=5)],
    comment: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    """Record the customer's rating of the case's latest resolution."""
    check_post(page, csrf)
    contact = _signed_in(page)
    ticket = cases.get_case_or_raise(session=session, viewer=page.viewer, number=number)
    answer_survey(session=session, ticket=ticket, contact=contact, rating=rating, comment=comment, now=clock.now())
    session.commit()
    return page.redirect(f"/portal/tickets/{ticket.number}?rated=1")


@router.get("/attachments/{attachment_id}")
def download(
    page: PageDep, session: SessionDep, attachment_id: PathId
) -> Response:
    """A file of a message the customer may read, always as a download."""
    attachment = cases.get_attachment_or_raise(session=session, viewer=page.viewer, attachment_id=attachment_id)
    response = attachment_response(attachment, BlobStore(page.settings.blob_dir))
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _signed_in(page: Page) -> Contact:
    page.viewer
    assert page.contact is not None
    return page.contact


def _render_case(
    page: Page, session: Session, number: str, *, status_code: int = 200, rating_first: bool = False, **extra: Any
) -> Response:
    ticket = cases.get_case_or_raise(session=session, viewer=page.viewer, number=number)
    messages = cases.list_case_messages(session=session, ticket=ticket)
    survey = get_open_survey(session=session, ticket=ticket)
    answered = [s for s in ticket.csat_surveys if s.answered_at is not None]
    past_window = is_past_reopen_window(
        ticket=ticket, now=clock.now(), reopen_within=timedelta(days=page.settings.reopen_within_days)
    )
    return page.render(
        "case.html",
        status_code=status_code,
        ticket=ticket,
        messages=[(message, _message_html(message.html)) for message in messages],
        answer_by=cases.answer_due_by(session=session, ticket_ids=[ticket.id]).get(ticket.id),
        survey=survey,
        last_rating=answered[-1] if answered else None,
        rating_first=rating_first,
        can_reply=not past_window,
        can_close=ticket.status is not TicketStatus.CLOSED,
        can_reopen=ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED) and not past_window,
        submission=secrets.token_urlsafe(18),
        max_files=MAX_FILES,
        max_file_mb=MAX_FILE_BYTES // (1024 * 1024),
        **extra,
    )


def _message_html(html: str | None) -> Markup | None:
    """Stored e-mail HTML (sanitised when it was received) with inline images served through the portal."""
    if not html:
        return None
    return Markup(_API_ATTACHMENT_URL.sub(lambda m: f"{m[1]}/portal/attachments/{m[2]}{m[1]}", html))


def _read_files(files: list[UploadFile] | None) -> list[UploadedFile]:
    """The uploaded files, the empty part a browser sends when no file was chosen left out.

    Raises:
        InvalidInputError: too many files or one larger than the limit (read no further than the limit).
    """
    chosen = [item for item in files or [] if item.filename]
    if len(chosen) > MAX_FILES:
        raise InvalidInputError(f"at most {MAX_FILES} files may be attached")
    read = []
    for item in chosen:
        data = item.file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidInputError(f"a file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        read.append(UploadedFile(item.filename or "", item.content_type or "application/octet-stream", data))
    return read


# --- Errors and headers ---------------------------------------------------------------------------------------


def error_response(request: Request, settings: Settings, status_code: int, message: str) -> Response:
    """An error on a portal path as a page: sign-in for 401, else a short page in the browser's language."""
    if status_code == 401:
        target = request.url.path if request.method == "GET" else "/portal"
        return RedirectResponse(f"/portal?next={target}" if auth.safe_next_path(target) else "/portal", 303)
    language = i18n.choose_language(
        contact_language=None,
        cookie=request.cookies.get(auth.LANGUAGE_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )
    translations = i18n.translations(language)
    kind = {404: "missing", 403: "forbidden", 409: "conflict", 422: "invalid"}.get(status_code, "other")
    html = _ENV.get_template("error.html").render(
        _=translations.gettext, lang=language, languages=i18n.LANGUAGE_NAMES, contact=None, csrf="",
        path="/portal", kind=kind, message=message, team=settings.mail_from_name,
    )
    return HTMLResponse(html, status_code=status_code)


class SecurityHeaders:
    """ASGI middleware adding the portal's security headers to every response under ``/portal``.

    The CSP allows no script at all and only our stylesheet; images only from us (remote images in e-mail
    would tell the sender when and where the customer read it). HSTS only when the public URL is https.
    """

    def __init__(self, app: Any, *, hsts: bool) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; "
             b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self.headers = headers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/portal"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                existing = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in self.headers if name not in existing]
                if b"cache-control" not in existing:
                    added.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)
