"""Texts of the mail we generate, per language, as ``string.Template`` files shipped with the package.

A deployment may override them per mailbox: ``<template_dir>/<mailbox>/acknowledgement.<language>.txt``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

LANGUAGES = ("en", "cs", "pl", "uk")
DEFAULT_LANGUAGE = "en"
_MAILBOX_DIRECTORY = re.compile(r"[a-z0-9._+-]+@[a-z0-9.-]+")


def language_for(tag: str | None) -> str:
    """One of LANGUAGES for a language tag (``cs``, ``cs-CZ``, ``PL``); English when we have none for it."""
    primary = (tag or "").strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def render_acknowledgement(
    *,
    language: str | None,
    mailbox: str,
    ticket_number: str,
    portal_url: str,
    team: str,
    template_dir: Path | None = None,
) -> str:
    """The body of the acknowledgement of a new ticket, in the contact's language (English by default)."""
    text = _load("acknowledgement", language_for(language), mailbox, template_dir)
    # safe_substitute: a typo in a custom template shows in the text instead of stopping every acknowledgement.
    return (
        Template(text).safe_substitute(number=ticket_number, portal_url=portal_url, team=team).strip() + "\n"
    )


def render_sign_in(*, language: str | None, mailbox: str, link: str, team: str, template_dir: Path | None = None) -> str:
    """The body of the portal's sign-in e-mail carrying the one-time ``link``."""
    text = _load("sign_in", language_for(language), mailbox, template_dir)
    return Template(text).safe_substitute(link=link, team=team).strip() + "\n"


def render_survey(
    *, language: str | None, mailbox: str, ticket_number: str, link: str, team: str, template_dir: Path | None = None
) -> str:
    """The body of the request to rate a resolved ticket, with the link to the portal's rating form."""
    text = _load("survey", language_for(language), mailbox, template_dir)
    return Template(text).safe_substitute(number=ticket_number, link=link, team=team).strip() + "\n"


def render_portal_link(*, language: str | None, mailbox: str, link: str, template_dir: Path | None = None) -> str:
    """The closing lines of a reply to a customer: where to follow the case in the portal."""
    text = _load("portal_link", language_for(language), mailbox, template_dir)
    return Template(text).safe_substitute(link=link).strip() + "\n"


def _load(name: str, language: str, mailbox: str, template_dir: Path | None) -> str:
    # A mailbox's own text in the language wins; else the shipped one in the same language.
    if template_dir is not None and _MAILBOX_DIRECTORY.fullmatch(mailbox.lower()):
        path = template_dir / mailbox.lower() / f"{name}.{language}.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return resources.files(__name__).joinpath(f"{name}.{language}.txt").read_text(encoding="utf-8")
