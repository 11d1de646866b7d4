"""The mail data of an SMTP DATA command, read in large pieces rather than line by line.

RFC 5321 §4.1.1.4: the data ends with a line holding only a period, the five octets CRLF "." CRLF, the CRLF
that ends the DATA command counting as the first two (so the data may be empty). Nothing else ends it: a
period between bare LFs or bare CRs is content, which keeps a second message from being smuggled inside the
first (CVE-2023-51764). RFC 5321 §4.5.2: the client put one more period before every line beginning with a
period, and the server takes it away.
"""

from __future__ import annotations

import asyncio
import enum

END_OF_DATA = b"\r\n.\r\n"
_CRLF = b"\r\n"
# What the end marker adds after the CRLF that ends the last line of content.
_END_LINE = b".\r\n"
# The beginnings of an end marker, the longest first.
_MARKER_BEGINNINGS = tuple(END_OF_DATA[:length] for length in range(len(END_OF_DATA) - 1, 0, -1))


class OverLimit(enum.Enum):
    """The limit a message went over."""

    SIZE = enum.auto()
    LINE = enum.auto()


async def read_mail_data(
    reader: asyncio.StreamReader, *, line_limit: int, size_limit: int | None
) -> bytes | OverLimit:
    """Read the data of one DATA command up to its end marker; return the content, unstuffed, or the limit
    it went over.

    ``line_limit`` bounds a line with its CRLF, ``size_limit`` (None or 0: none) the data as sent, dots
    included. Nothing after the end marker is read: a command sent right behind it stays in ``reader``. Data
    over a limit is read to its end all the same (RFC 5321 §4.2.5: the reply follows the end of data, and the
    session goes on), but not kept.
    """
    data, ended = await _read_opening(reader)
    limits = _Limits(line_limit=line_limit, size_limit=size_limit or None)
    while True:
        if ended:
            del data[-len(_END_LINE) :]
        if limits.over is None:
            limits.check(data, complete=ended)
            if limits.over is not None:
                data.clear()
        if ended:
            break
        piece, ended = await _read_piece(reader)
        if limits.over is None:
            data += piece
    if limits.over is not None:
        return limits.over
    return _unstuff(data)


async def _read_opening(reader: asyncio.StreamReader) -> tuple[bytearray, bool]:
    """The first octets of the data, and whether they end it.

    Read a few at a time, never past the earliest place the data can end, until they either end it or hold no
    beginning of an end marker: asyncio's ``readuntil`` finds a marker only within the octets it reads, and
    the first may begin with the CRLF of the DATA command or with any octet read here.
    """
    opening = bytearray()
    matched = len(_CRLF)
    while matched:
        piece = await reader.readexactly(len(END_OF_DATA) - matched)
        opening += piece
        tail = END_OF_DATA[:matched] + piece
        if tail == END_OF_DATA:
            return opening, True
        matched = _begun_marker_length(tail)
    return opening, False


def _begun_marker_length(octets: bytes) -> int:
    """How many of the last octets of ``octets`` may be the beginning of an end marker."""
    for beginning in _MARKER_BEGINNINGS:
        if octets.endswith(beginning):
            return len(beginning)
    return 0


async def _read_piece(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """The next piece of data and whether it ends the data: up to and with the end marker, or a long run
    without one."""
    try:
        return await reader.readuntil(END_OF_DATA), True
    except asyncio.LimitOverrunError as overrun:
        # No marker within the reader's limit: take the octets before it or, with none in sight, all but
        # the last four, which may begin one; no marker can span the octets taken and those left.
        return await reader.read(overrun.consumed), False


def _unstuff(data: bytearray) -> bytes:
    """The content of ``data`` (emptied) without the period the client put before each line beginning with
    one, RFC 5321 §4.5.2."""
    if data.startswith(b"."):
        del data[0]
    content = bytes(data)
    # Only one copy of a large message at a time.
    data.clear()
    # A line begins after each CRLF; one holding only a period would have ended the data, so each CRLF "."
    # begins a line with more on it, whose first period goes.
    return content.replace(b"\r\n.", b"\r\n")


class _Limits:
    """Judges the data against the line and size limits as it grows, as aiosmtpd's line-by-line reading did.

    That reading counted each line towards the size when it had read the whole line, and noticed a line over
    the limit as soon as its start overflowed the reader's buffer; so the first of the two it met decides:
    a line over the limit goes over the line limit, unless the lines before it already went over the size.
    A line just one or two octets over fitted the buffer and was counted first: it goes over the size if the
    data up to its end does.
    """

    def __init__(self, *, line_limit: int, size_limit: int | None) -> None:
        self.line_limit = line_limit
        self.size_limit = size_limit
        self.over: OverLimit | None = None
        # Where the first line not yet known to be within the line limit begins.
        self._line_start = 0

    def check(self, data: bytearray, *, complete: bool) -> None:
        """Judge the lines of ``data`` (all of it when ``complete``) not judged yet; set ``over`` once a limit
        is known to be broken."""
        while True:
            window_end = self._line_start + self.line_limit
            last_crlf = data.rfind(_CRLF, self._line_start, window_end)
            if last_crlf != -1:
                # Every line between here and there fits in the window: none of them is too long.
                self._line_start = last_crlf + len(_CRLF)
                if window_end < len(data):
                    continue
            elif len(data) >= window_end:
                self.over = self._judge_long_line(data, complete=complete)
                return
            break
        if self.size_limit is not None and self._line_start > self.size_limit:
            self.over = OverLimit.SIZE

    def _judge_long_line(self, data: bytearray, *, complete: bool) -> OverLimit | None:
        """Which limit the data went over first, given that the line at ``_line_start`` is over the line
        limit; None until the data shows whether the line ends one or two octets over."""
        start = self._line_start
        if self.size_limit is None:
            return OverLimit.LINE
        if start > self.size_limit:
            return OverLimit.SIZE
        just_over_end = start + self.line_limit + len(_CRLF)
        if len(data) < just_over_end and not complete:
            return None
        crlf = data.find(_CRLF, start + self.line_limit - 1, just_over_end)
        if crlf != -1 and crlf + len(_CRLF) > self.size_limit:
            return OverLimit.SIZE
        return OverLimit.LINE
