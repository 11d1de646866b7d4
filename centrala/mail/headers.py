"""Raw header fields of one header section, looked up by name.

``Message.get`` and a scan of ``Message.raw_items()`` walk every field and lower-case its name on each lookup;
parsing and classifying one message asked some thirty times, over sections of twenty-five fields and more.
``RawHeaders`` reads a section once and answers the same values from a dict.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Any

# RFC 5322 §2.2.3: unfolding removes the CRLF (or, as received, the LF) before folding whitespace.
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    """``value`` with its folding line breaks removed; the whitespace after them stays."""
    return _FOLD.sub("", value)


def first_value(message: Message, name: str) -> str:
    """The first raw value of ``name`` in ``message``, as ``RawHeaders.first``, for a single lookup."""
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            return unfold(str(value)).strip()
    return ""


class RawHeaders:
    """The fields of one header section by lower-cased name, in order, as the parser stored them.

    A snapshot: fields set on the message afterwards are not seen.
    """

    def __init__(self, message: Message) -> None:
        self._policy = message.policy
        self._fields: dict[str, list[tuple[str, Any]]] = {}
        for field in message.raw_items():
            key = field[0].lower()
            if key in self._fields:
                self._fields[key].append(field)
            else:
                self._fields[key] = [field]

    def values(self, name: str) -> list[str]:
        """Every raw value of ``name``, unfolded; never through the header registry."""
        return [unfold(str(value)) for _, value in self._fields.get(name.lower(), ())]

    def first(self, name: str) -> str:
        """The first raw value of ``name``, unfolded and stripped; "" when absent."""
        fields = self._fields.get(name.lower())
        return unfold(str(fields[0][1])).strip() if fields else ""

    def stored(self, name: str) -> str | None:
        """The first value of ``name`` exactly as the parser stored it (folded); None when absent."""
        fields = self._fields.get(name.lower())
        return str(fields[0][1]) if fields else None

    def parsed(self, name: str) -> Any:
        """The first field of ``name`` as ``Message.get`` returns it (the policy's header object); None when
        absent. Parsing can raise on malformed values, as ``Message.get`` does."""
        fields = self._fields.get(name.lower())
        if not fields:
            return None
        key, value = fields[0]
        return self._policy.header_fetch_parse(key, value)
