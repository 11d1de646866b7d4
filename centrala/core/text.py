"""Text as it may appear on one line: names and subjects that end up in headers, page titles and lists."""

from __future__ import annotations


def single_line(text: str) -> str:
    """``text`` with control characters (NUL, CR, LF, ...) and Unicode line breaks as spaces, runs of white
    space as one space, and no space at either end.

    Such values reach outbound headers, where a control character is refused (a reply could never be sent)
    and PostgreSQL, which refuses NUL in text.
    """
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in text):
        text = "".join(" " if c < " " or "\x7f" <= c <= "\x9f" else c for c in text)
    return " ".join(text.split())


def without_nul(text: str | None) -> str | None:
    """``text`` without NUL characters, which PostgreSQL refuses in text columns; None stays None."""
    return text.replace("\x00", "") if text and "\x00" in text else text
