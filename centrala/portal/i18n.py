"""The portal's languages: Babel catalogues for en, cs, pl and uk, the choice of language per request, and
dates and numbers formatted the way each locale writes them."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import UnknownLocaleError
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LANGUAGES = ("en", "cs", "pl", "uk")
DEFAULT_LANGUAGE = "en"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
# Each language named in itself, for the switcher.
LANGUAGE_NAMES = {"en": "English", "cs": "Čeština", "pl": "Polski", "uk": "Українська"}


def supported(tag: str | None) -> str | None:
    """One of LANGUAGES for a tag such as ``cs``, ``cs-CZ`` or ``PL``; None when we have none for it."""
    primary = (tag or "").strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The first supported language of an Accept-Language header by quality (RFC 9110 §12.5.4)."""
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = supported(tag)
        if language is not None and quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else None


def choose_language(*, contact_language: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The contact's language when signed in, else the one chosen in the switcher, else the browser's."""
    return (
        supported(contact_language)
        or supported(cookie)
        or from_accept_language(accept_language)
        or DEFAULT_LANGUAGE
    )


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (English: the messages themselves)."""
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [language], domain="messages")


class Formatter:
    """Dates and numbers in one locale and time zone, for the templates."""

    def __init__(self, language: str, timezone: str) -> None:
        try:
            self.locale = Locale.parse(language)
        except (UnknownLocaleError, ValueError):
            self.locale = Locale.parse(DEFAULT_LANGUAGE)
        self.timezone = ZoneInfo(timezone)

    def datetime(self, value: datetime | None, format: str = "medium") -> str:
        """``value`` in the portal's time zone, written as the locale writes dates and times."""
        if value is None:
            return ""
        return babel_format_datetime(value, format=format, tzinfo=self.timezone, locale=self.locale)

    def number(self, value: float) -> str:
        return format_decimal(value, locale=self.locale)

    def size(self, size: int) -> str:
        """A file size in kB or MB with the locale's decimal separator."""
        if size < 1024 * 1024:
            return f"{format_decimal(max(1, round(size / 1024)), locale=self.locale)} kB"
        return f"{format_decimal(round(size / (1024 * 1024), 1), locale=self.locale)} MB"
