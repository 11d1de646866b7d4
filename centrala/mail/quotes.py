"""The new part of a reply: quoted history, reply headers and signatures stripped; plain text from HTML.

Replies quote what they answer in a handful of ways: ``>``-prefixed lines (RFC 3676 §4.5), an attribution
line ("On … wrote:", "Dne … napsal(a):", "W dniu … pisze:", "… пише:"), or an Outlook header block ("From: …
Sent: … To: … Subject:" in the client's language) followed by the unmarked old message. Each line is marked
with one letter and the quotation is found with regular expressions over the marker string (the approach of
mailgun/talon):

    e  empty line            m  quoted line (starts with ">")
    s  splitter (attribution line or reply header block)
    f  forwarded-message marker
    t  anything else: presumably the new text

``visible_text`` never returns an empty string for a message that has content: when everything is quoted, the
full text is returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

# Beyond this many lines we look no further (talon's measured limit); a quote found earlier is still cut.
MAX_LINES = 1000
# An attribution wraps over at most this many lines ("On Mon, Apr 2, 2012 at 6:26 PM, Megan <\n…> wrote:").
ATTRIBUTION_MAX_LINES = 3
# Splitters and signature lines are short; longer lines are text, and are not fed to the line patterns at all
# (a megabyte of spaces would make "^\s*…" backtrack for seconds).
SPLITTER_MAX_CHARS = 1000
# An Outlook reply header block (From/Sent/To/Cc/Subject) spans at most this many lines, wrapped values too.
HEADER_BLOCK_MAX_LINES = 10
# A signature after "--" without the RFC 3676 trailing space is accepted only when it is this short.
SHORT_SIGNATURE_MAX_LINES = 10
# A signature after the exact RFC 3676 §4.3 delimiter "-- " may be longer (legal footers).
SIGNATURE_MAX_LINES = 30

_QUOTED_LINE = re.compile(r"^[ \t]*>")

_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:original message|reply message|původní zpráva|původní e-mail|oryginalna wiadomość|"
    r"wiadomość oryginalna|початкове повідомлення|оригінальне повідомлення|исходное сообщение|"
    r"ursprüngliche nachricht|message d'origine)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARDED = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|přeposlaná zpráva|přeposlaná zpráva|przekazana wiadomość|"
    r"wiadomość przekazana|пересланий лист|переслане повідомлення|пересылаемое сообщение|"
    r"weitergeleitete nachricht)\s*-{2,}|begin forwarded message:|začátek přeposílané zprávy:|"
    r"początek przekazywanej wiadomości:|початок пересланого листа:|начало переадресованного сообщения:)\s*$",
    re.IGNORECASE,
)
_UNDERSCORE_RULE = re.compile(r"^\s*_{10,}\s*$")

# "On <date>, <person> wrote:" and its translations. The verb ends the (possibly wrapped) line; a digit (the
# date) or an "@" (the address) must appear, so that prose like "My colleague wrote:" is not a splitter.
_WROTE = (
    r"wrote|sent|napsal\(a\)|napsala|napsal|napísal\(a\)|napísal|napisał\(a\)|napisała|napisał|pisze|"
    r"пише|написав\(ла\)|написала|написав|написал\(а\)|написал|schrieb|a écrit"
)
_ATTRIBUTION = re.compile(
    rf"^\s*(?:-+\s*)?(?=.*[\d@]).{{0,400}}?\b(?:{_WROTE})\s*:\s*$", re.IGNORECASE | re.DOTALL
)
_ATTRIBUTION_START = re.compile(r"^\s*(?:-+\s*)?(?:on|dne|w dniu|am|le)\b|.*[\d@]", re.IGNORECASE)
_ON_WROTE = re.compile(r"^\s*(?:-+\s*)?On\s.{0,400}?\bwrote\s*:?\s*$", re.DOTALL)
# Attribution lines without a verb (Yandex "26.06.2014, 14:41, "Alexander L" <a@example.com>:", mail.ru
# "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander L <a@example.com>:") count only when a quoted block follows.
_WEAK_ATTRIBUTION = re.compile(
    r"^\s*(?=.*(?:@|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}:\d{2})).{0,400}:\s*$", re.DOTALL
)

# Labels of an Outlook reply header block, by role, in en, cs, pl, uk, ru and de.
_HEADER_LABELS = {
    "from": ("from", "od", "від", "от", "von", "de"),
    "sent": ("sent", "odesláno", "wysłano", "wysłane", "надіслано", "відправлено", "отправлено", "gesendet",
             "envoyé"),
    "date": ("date", "datum", "data", "дата"),
    "to": ("to", "komu", "do", "кому", "an", "à"),
    "cc": ("cc", "kopie", "dw", "kopia", "копія", "копия"),
    "subject": ("subject", "předmět", "temat", "тема", "betreff", "objet"),
}
_LABEL_ROLE = {label: role for role, labels in _HEADER_LABELS.items() for label in labels}
_HEADER_LINE = re.compile(
    r"^\s*\*?(" + "|".join(sorted(map(re.escape, _LABEL_ROLE), key=len, reverse=True)) + r")\*?\s*:\*?(.*)$",
    re.IGNORECASE,
)

# Whole-line signatures of mobile and webmail clients (en, cs, pl, uk, ru).
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:sent from my .{1,40}|sent from (?:mail|outlook|yahoo mail|samsung|my mobile).{0,40}|"
    r"get outlook for (?:ios|android).{0,10}|sent with sparrow.{0,60}|sent via .{1,40}|"
    r"odesláno z (?:mého )?(?:iphonu|ipadu|mobilu|telefonu|zařízení|aplikace).{0,40}|"
    r"odesláno ze (?:zařízení|smartphonu|samsungu).{0,40}|"
    r"wysłane z (?:mojego )?(?:iphone'?a|ipada|telefonu|urządzenia|aplikacji|samsunga).{0,40}|"
    r"wysłano z (?:mojego )?(?:iphone'?a|ipada|telefonu|urządzenia|aplikacji).{0,40}|"
    r"надіслано з (?:мого )?(?:iphone|ipad|телефону|пристрою|samsung).{0,40}|"
    r"відправлено з (?:мого )?(?:iphone|ipad|телефону|пристрою).{0,40}|"
    r"отправлено (?:с|из) .{1,40})\s*$",
    re.IGNORECASE,
)

# Marker-string patterns (see the module docstring), written so that they cannot backtrack exponentially:
# talon's "(?<=m)e*((?:t+e*)+)m" takes minutes on a quoted line followed by a few dozen text lines.
_INLINE_REPLY = re.compile(r"(?<=m)e*+(t[te]*+)m")  # text between two quotes
_TEXT_AFTER_SPLITTER = re.compile(r"s[se]*+[tf]")  # a splitter followed by unquoted text (Outlook)
_EMPTY_QUOTATION = re.compile(r"(s[se]*+|m(?:e*+m)++e*+)")  # a splitter or quoted lines, nothing else
_LINK_START = re.compile(r"\(https?://|<https?://")


def visible_text(text: str, html: str | None = None, *, keep_signature: bool = False) -> str:
    """The new part of a reply: quoted history and (unless ``keep_signature``) the signature removed.

    ``text`` is used when it has content, otherwise text derived from ``html``. Returns the full (stripped)
    text when nothing would be left, so a message whose content is all quoted is never shown as empty.
    """
    source = text if text and text.strip() else html_to_text(html or "")
    reply = strip_quoted_reply(source)
    if not keep_signature:
        reply = strip_signature(reply)
    return reply.strip() if reply.strip() else source.strip()


def strip_quoted_reply(text: str) -> str:
    """``text`` without the quoted message it answers; inline (interleaved) replies and forwards stay."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    considered = lines[:MAX_LINES]
    kept = _unquoted_lines(considered, _mark_lines(considered))
    if len(kept) == len(considered):
        return text.strip()
    return "\n".join(kept).strip()


def strip_signature(text: str) -> str:
    """``text`` without a trailing signature: after an RFC 3676 §4.3 "-- " line, or "Sent from my iPhone"."""
    lines = text.rstrip().split("\n")
    cut = _signature_delimiter(lines)
    if cut is not None:
        lines = lines[:cut]
    lines = _without_mobile_signature(lines)
    result = "\n".join(lines).strip()
    return result if result else text.strip()


def _signature_delimiter(lines: list[str]) -> int | None:
    """Index of the last signature delimiter line, when what follows it is signature-sized."""
    for index in range(len(lines) - 1, 0, -1):
        following = len(lines) - index - 1
        if lines[index] == "-- " and following <= SIGNATURE_MAX_LINES:
            return index
        if lines[index].strip() == "--" and following <= SHORT_SIGNATURE_MAX_LINES:
            return index
    return None


def _without_mobile_signature(lines: list[str]) -> list[str]:
    """Drop a "Sent from my …" line (and anything after it) among the last three non-empty lines."""
    non_empty = [index for index, line in enumerate(lines) if line.strip()]
    for index in non_empty[-3:]:
        line = lines[index].strip()
        if index > 0 and len(line) <= SPLITTER_MAX_CHARS and _MOBILE_SIGNATURE.match(line):
            return lines[:index]
    return lines


# Each line pattern needs a character that most lines of text lack (">", "--", ":", "_"): looking for it first
# spares the regex call, which cost most of the time spent marking lines.
def _mark_lines(lines: list[str]) -> str:
    """One marker letter per line (see the module docstring)."""
    markers: list[str] = []
    attribution_ends = [_ends_like_attribution(line) for line in lines]  # once, not for each try
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            markers.append("e")
        elif ">" in line and _QUOTED_LINE.match(line) and not _is_wrapped_link_end(lines, index):
            markers.append("m")
        elif ("--" in line or ":" in line) and _FORWARDED.match(line):
            markers.append("f")
        else:
            size = _splitter_size(lines, index, attribution_ends)
            if size:
                markers.extend("s" * size)
                index += size
                continue
            markers.append("t")
        index += 1
    return "".join(markers)


def _is_wrapped_link_end(lines: list[str], index: int) -> bool:
    """A line starting with the ">" that closes a "<http://…" opened on the previous line is not a quote."""
    if index == 0 or not lines[index].lstrip().startswith(">"):
        return False
    previous = lines[index - 1]
    return "<http" in previous and ">" not in previous[previous.rfind("<http"):]


def _splitter_size(lines: list[str], index: int, attribution_ends: list[bool]) -> int:
    """How many lines starting at ``index`` form a splitter; 0 when they do not."""
    line = lines[index]
    if "--" in line and _ORIGINAL_MESSAGE.match(line):
        return 1
    if "_" in line and _UNDERSCORE_RULE.match(line):
        block = _header_block_size(lines, index + 1)
        return 1 + block if block else 0
    block = _header_block_size(lines, index)
    if block:
        return block
    return _attribution_size(lines, index, attribution_ends)


def _attribution_size(lines: list[str], index: int, attribution_ends: list[bool]) -> int:
    """Lines of an attribution ("… wrote:") starting at ``index``, possibly wrapped; 0 when there is none.

    ``attribution_ends`` says of each line whether it ends as every attribution does.
    """
    if not any(attribution_ends[index : index + ATTRIBUTION_MAX_LINES]):
        return 0  # the loop below returns only after such a line
    for size in range(1, ATTRIBUTION_MAX_LINES + 1):
        chunk = lines[index : index + size]
        if len(chunk) < size or (size > 1 and not chunk[-1].strip()):
            break
        if size > 1 and not _ATTRIBUTION_START.match(chunk[0]):
            break  # a wrapped attribution starts with its date, address or opener, not with text before it
        candidate = "\n".join(chunk)
        if len(candidate) > SPLITTER_MAX_CHARS:
            break
        if not attribution_ends[index + size - 1]:  # chunk[-1]
            continue  # every attribution ends so; the patterns below cost ~0.1 ms a try
        if _ON_WROTE.match(candidate) or _ATTRIBUTION.match(candidate):
            return size
        if _WEAK_ATTRIBUTION.match(candidate) and _quote_follows(lines, index + size):
            return size
    return 0


def _ends_like_attribution(line: str) -> bool:
    """Whether ``line`` ends as every attribution does: "…:" or "… wrote"."""
    return line.rstrip().lower().endswith((":", "wrote"))


def _quote_follows(lines: list[str], index: int) -> bool:
    """Whether the next non-empty line at or after ``index`` is a quoted line."""
    for line in lines[index : index + 3]:
        if line.strip():
            return bool(_QUOTED_LINE.match(line))
    return False


def _header_block_size(lines: list[str], index: int) -> int:
    """Lines of an Outlook reply header block starting at ``index``; 0 when there is none.

    A block is consecutive "Label: value" lines with a From label and at least two other roles, and looks like
    mail rather than, say, an itinerary ("From: Prague / To: Brno / Date: Monday"): it has a "Sent" label, a
    "Subject" label or an address in the From line.
    """
    roles: list[str] = []
    from_value = ""
    last_label = -1
    for offset, line in enumerate(lines[index : index + HEADER_BLOCK_MAX_LINES]):
        match = _HEADER_LINE.match(line) if ":" in line and len(line) <= SPLITTER_MAX_CHARS else None
        if match:
            role = _LABEL_ROLE[match.group(1).lower()]
            roles.append(role)
            last_label = offset
            if role == "from":
                from_value = match.group(2)
        elif offset == 0 or not line.strip() or offset - last_label > 2:
            break
    if not roles:
        return 0  # what nearly every line comes to
    distinct = set(roles)
    mail_like = "sent" in distinct or "subject" in distinct or "@" in from_value
    if "from" in distinct and len(distinct - {"from"}) >= 2 and mail_like:
        return last_label + 1
    return 0


def _unquoted_lines(lines: list[str], markers: str) -> list[str]:
    """The lines that are not part of the quotation the markers reveal."""
    # A couple of ">" lines without a splitter are not a quotation ("> 5 items" in prose).
    if "s" not in markers and not re.search("(me*){3}", markers):
        markers = markers.replace("m", "t")
    # A forwarded message on top: everything is the customer's content.
    if re.match("[te]*f", markers):
        return lines
    # An inline (interleaved) reply: the quotes are context the agent needs, keep all of it.
    # A long link wrapped out of a quoted line does not count as a reply between quotes.
    for inline in _INLINE_REPLY.finditer(markers):
        quoted, after = lines[inline.start() - 1], lines[inline.start()]
        if not (_LINK_START.search(quoted) or _LINK_START.match(after.strip())):
            return lines
    after_splitter = _TEXT_AFTER_SPLITTER.search(markers)
    if after_splitter:
        return lines[: after_splitter.start()]
    span = _quotation_span(markers)
    if span is None:
        empty = _EMPTY_QUOTATION.search(markers)
        span = empty.span(1) if empty else None
    if span:
        return lines[: span[0]] + lines[span[1] :]
    return lines


def _quotation_span(markers: str) -> tuple[int, int] | None:
    """Where the last quotation runs: talon's ``((?:s|(?:me*){2,}).*me*)[te]*$`` without cubic backtracking.

    It ends at the last quoted line (and the blank lines after it) when only text follows, and starts at the
    first splitter before it, or at the first pair of quoted lines with a third quoted line after them.
    """
    last = markers.rfind("m")
    if last < 0 or not set(markers[last + 1 :]) <= {"t", "e"}:
        return None
    end = last + 1
    while end < len(markers) and markers[end] == "e":
        end += 1
    start = re.search(r"s|m(?=e*+m.*m)", markers[: last + 1])
    return (start.start(), end) if start else None


# --- HTML to text -------------------------------------------------------------------------------------------

_SKIPPED_ELEMENTS = frozenset({"script", "style", "title", "template", "noscript", "xml"})
_PARAGRAPH_ELEMENTS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre"})
_BLOCK_ELEMENTS = frozenset({
    "address", "article", "aside", "center", "dd", "details", "div", "dt", "figcaption", "figure", "footer",
    "form", "header", "hr", "li", "main", "nav", "section", "summary", "tbody", "tfoot", "thead", "tr",
}) | _PARAGRAPH_ELEMENTS
_CELL_ELEMENTS = frozenset({"td", "th"})
_VOID_ELEMENTS = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
HTML_CHUNK = 65_536
# Deeper blockquotes are rendered with this many ">" (thousands of nested quotes would multiply the text).
MAX_QUOTE_PREFIX = 10


class _TextRenderer(HTMLParser):
    """Renders HTML as plain text the way a reader sees it: blocks on their own lines, blockquotes as "> "."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._quote_depth = 0
        self._line_depth = 0
        self._skip_depth = 0
        self._pre_depth = 0
        self._pending_break = 0  # 1: start a new line before the next text; 2: leave a blank line too
        self._break_depth = 0  # the quote depth of that blank line: the outermost since the break request
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skip_depth += tag not in _VOID_ELEMENTS
        elif tag == "br":
            self._apply_pending_break()
            self._end_line(force=True)
        elif tag == "blockquote":
            self._request_break(2)
            self._quote_depth += 1
        elif tag in _BLOCK_ELEMENTS:
            self._request_break(2 if tag in _PARAGRAPH_ELEMENTS else 1)
            self._pre_depth += tag == "pre"
            if tag == "li":
                self._write("- ")
        elif tag in _CELL_ELEMENTS and self._line:
            self._write(" ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len("".join(self._line))))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._write(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
            self._request_break(2)
        elif tag in _BLOCK_ELEMENTS:
            self._request_break(2 if tag in _PARAGRAPH_ELEMENTS else 1)
            self._pre_depth = max(0, self._pre_depth - (tag == "pre"))
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            shown = "".join(self._line)[start:].strip()
            if href and href.lower().startswith(("http://", "https://")) and href not in shown:
                self._write(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            for number, piece in enumerate(data.split("\n")):
                if number:
                    self._end_line(force=True)
                self._write(piece)
            return
        data = _WHITESPACE.sub(" ", data)
        if not self._line or self._pending_break:
            data = data.lstrip(" ")
        if data:
            self._write(data)

    def close(self) -> None:
        super().close()
        self._end_line(force=False)

    def _write(self, piece: str) -> None:
        self._apply_pending_break()
        if not self._line:
            self._line_depth = self._quote_depth
        self._line.append(piece)

    def _request_break(self, kind: int) -> None:
        if self._line or self.lines:
            depth = self._quote_depth
            self._break_depth = min(self._break_depth, depth) if self._pending_break else depth
            self._pending_break = max(self._pending_break, kind)

    def _apply_pending_break(self) -> None:
        if not self._pending_break:
            return
        self._end_line(force=False)
        if self._pending_break == 2 and self.lines and self.lines[-1].strip("> "):
            self.lines.append(">" * min(self._break_depth, MAX_QUOTE_PREFIX))
        self._pending_break = 0

    def _end_line(self, *, force: bool) -> None:
        if self._line or force:
            depth = min(self._line_depth if self._line else self._quote_depth, MAX_QUOTE_PREFIX)
            text = "".join(self._line).replace("\xa0", " ").rstrip()
            prefix = "> " * depth if text else ">" * depth
            self.lines.append((prefix + text).rstrip() if depth else text)
        self._line = []


def html_to_text(html: str, *, checkpoint: Callable[[], None] | None = None) -> str:
    """Plain text from HTML: blocks become lines, ``<blockquote>`` is ">"-quoted, scripts and styles go.

    ``checkpoint`` is called between chunks of the input (a deadline can raise from it): this pure-Python
    rendering takes about a second per megabyte.
    """
    renderer = _TextRenderer()
    for start in range(0, len(html), HTML_CHUNK):
        if checkpoint is not None:
            checkpoint()
        renderer.feed(html[start : start + HTML_CHUNK])
    renderer.close()
    lines: list[str] = []
    for line in renderer.lines:
        blank = not line.strip("> ")
        if blank and (not lines or not lines[-1].strip("> ")):
            continue  # at most one blank line in a row, none at the start
        lines.append(line)
    while lines and not lines[-1].strip("> "):
        lines.pop()
    return "\n".join(lines).strip()
