"""Configuration of our Twilio phone numbers: which queue each one rings, in which language, when it is open."""

from __future__ import annotations

import re

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LANGUAGES = ("en", "cs", "pl", "uk")
_MENU_KEY = re.compile(r"[0-9*#]")


class MenuOption(BaseModel):
    """One key of a line's menu: what is read out, and the queue it leads to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=100)
    queue: str = Field(min_length=1, max_length=100)


class PhoneLine(BaseModel):
    """One of our numbers, as ``CENTRALA_PHONE_LINES='[{"number": "+420222333444", "queue": "Support",
    "language": "cs"}]'``.

    ``calendar`` names a business calendar (the SLA calendars): outside its hours callers go straight to
    voicemail; without one the line is always open. ``menu`` maps a key to a label and a queue; with a menu
    the caller chooses the queue, and ``queue`` is used when they press nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: str
    queue: str | None = Field(default=None, max_length=100)
    language: str = "en"
    greeting: str | None = Field(default=None, max_length=1000)
    calendar: str | None = Field(default=None, max_length=100)
    dial_timeout_seconds: int = Field(default=20, ge=5, le=600)
    voicemail_max_seconds: int = Field(default=120, ge=10, le=3600)
    menu: dict[str, MenuOption] = Field(default_factory=dict)

    @field_validator("number")
    @classmethod
    def _check_number(cls, value: str) -> str:
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValueError(f"{value!r} is not a phone number in E.164 form (+420222333444)") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"{value!r} is not a valid phone number")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"a line speaks one of {', '.join(LANGUAGES)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _check_menu(self) -> PhoneLine:
        for key in self.menu:
            if not _MENU_KEY.fullmatch(key):
                raise ValueError(f"menu key {key!r} is not one of 0-9, * or #")
        return self

    def queue_for_digits(self, digits: str | None) -> str | None:
        """The queue the caller chose with ``digits`` (the line's own queue for no or an unknown key)."""
        option = self.menu.get(digits or "")
        return option.queue if option is not None else self.queue
