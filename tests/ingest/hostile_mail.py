"""Hypothesis strategies for hostile inbound mail: real messages of the corpus, mutated, and generated monsters.

The corpus (tests/mail/corpus) seeds the mutations, so that most cases are almost-valid mail that reaches
deep into the parser and the processor rather than failing at the first line.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from hypothesis import strategies as st

CORPUS = Path(__file__).parents[1] / "mail" / "corpus"
SEEDS: tuple[bytes, ...] = tuple(
    path.read_bytes()
    for path in sorted(CORPUS.rglob("*"))
    if path.is_file() and path.name not in ("LICENSE", "README.md")
)

# Labels a sender may write: real ones, aliases Python lacks, Python codecs that are no charset, and nonsense.
CHARSET_LABELS = (
    "utf-8",
    "us-ascii",
    "iso-8859-1",
    "iso-8859-2",
    "windows-1250",
    "koi8-r",
    "utf-7",
    "utf-16",
    "utf-32",
    "utf-16le",
    "iso-2022-jp",
    "gb2312",
    "big5",
    "shift_jis",
    "hz",
    "unknown-8bit",
    "x-unknown",
    "default",
    "x-user-defined",
    "x-klingon",
    "utf8mb4",
    "punycode",
    "idna",
    "undefined",
    "unicode_escape",
    "raw_unicode_escape",
    "base64",
    "rot13",
    "zlib",
    "uu",
    "hex",
    "bz2",
    "quopri",
    "mbcs",
    "cp65001",
    "",
    '"',
    '"utf-8',
    "utf-8\x00",
    "*",
    "utf-8*en",
    "ü",
    "a" * 300,
)
TRANSFER_ENCODINGS = (
    "base64",
    "quoted-printable",
    "7bit",
    "8bit",
    "binary",
    "x-uuencode",
    "uuencode",
    "bAsE64",
    "garbage",
    "",
)
# Byte strings that break parsers: line-end trickery, NUL, lone surrogates' UTF-8, encoded-word and MIME
# punctuation, unterminated quotes and comments.
SNIPPETS = (
    b"\x00",
    b"\r",
    b"\n",
    b"\r\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\r\n ",
    b"\xff",
    b"\xed\xa0\x80",
    b"\xc3",
    b"=?",
    b"?=",
    b"=?utf-8?B?",
    b"--",
    b"\r\n--",
    b'"',
    b"(",
    b"<",
    b">",
    b"@",
    b",",
    b";",
    b"\\",
    b"\r\n\t",
    b"\x1b",
    b"\xe2\x80\xa8",
    b"\x85",
    b"=\r\n",
    b"=XX",
    b"&#0;",
    b"<![CDATA[",
    b"<!--",
)
HEADER_NAMES = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Reply-To",
    "Sender",
    "Auto-Submitted",
    "Return-Path",
    "MIME-Version",
    "Content-ID",
)

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CHARSET_PARAM = re.compile(rb"(?i)(charset\s*=\s*)(\"[^\"\r\n]*\"|[^\s;]+)")
_BOUNDARY_PARAM = re.compile(rb'(?i)(boundary\s*=\s*)("[^"\r\n]*"|[^\s;]+)')


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    end = _HEADER_END.search(raw)
    return (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")


def _fields(head: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines, line ends kept."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += b"\r\n"
    return fields


def _at(raw: bytes, fraction: float) -> int:
    return min(len(raw), int(len(raw) * fraction))


def _encoded_word(charset: str, encoding: str, payload: bytes) -> bytes:
    if encoding == "B":
        text = base64.b64encode(payload)
    else:
        text = b"".join(bytes([c]) if chr(c).isalnum() else b"=%02X" % c for c in payload)
    return b"=?" + charset.encode("utf-8", "surrogatepass") + b"?" + encoding.encode() + b"?" + text + b"?="


def apply(raw: bytes, mutation: tuple) -> bytes:
    """One mutation of ``raw``; mutations are plain tuples so that Hypothesis shows and shrinks them."""
    kind, *args = mutation
    if kind == "flip":
        position, value = args
        index = _at(raw, position)
        return raw[:index] + bytes([value]) + raw[index + 1 :]
    if kind == "truncate":
        return raw[: _at(raw, args[0])]
    if kind == "insert":
        position, snippet, times = args
        index = _at(raw, position)
        return raw[:index] + snippet * times + raw[index:]
    if kind in ("duplicate_header", "drop_header", "header_line_end"):
        head, rest = _split_head(raw)
        fields = _fields(head)
        if not fields:
            return raw
        index = int(args[0] * len(fields)) % len(fields)
        if kind == "duplicate_header":
            fields.insert(index, fields[index])
        elif kind == "drop_header":
            del fields[index]
        else:  # bare CR or bare LF, or a stray CR, where a field ends
            fields[index] = fields[index].rstrip(b"\r\n") + args[1]
        return b"".join(fields) + rest
    if kind == "charset":
        label = args[0].encode("utf-8", "surrogatepass")
        if _CHARSET_PARAM.search(raw):
            return _CHARSET_PARAM.sub(lambda m: m.group(1) + label, raw)
        head, rest = _split_head(raw)
        return head + b"\r\nContent-Type: text/plain; charset=" + label + rest
    if kind == "encoded_word":
        name, charset, encoding, payload = args
        word = _encoded_word(charset, encoding, payload)
        value = word + b" <fuzz@example.org>" if name == "From" else word
        return _set_header(raw, name, value)
    if kind == "header":
        name, value = args
        return _set_header(raw, name, value)
    if kind == "transfer_encoding":
        return _set_header(raw, "Content-Transfer-Encoding", args[0].encode())
    if kind == "boundary":
        how, position = args
        boundaries = [m.group(2).strip(b'"') for m in _BOUNDARY_PARAM.finditer(raw)]
        if not boundaries:
            return raw
        boundary = boundaries[int(position * len(boundaries)) % len(boundaries)]
        if how == "drop_close":
            return raw.replace(b"--" + boundary + b"--", b"")
        if how == "rename_param":
            return raw.replace(b"=" + boundary, b"=x" + boundary, 1).replace(
                b'="' + boundary, b'="x' + boundary, 1
            )
        if how == "drop_delimiters":
            return raw.replace(b"--" + boundary, b"")
        if how == "empty":
            return _BOUNDARY_PARAM.sub(lambda m: m.group(1) + b'""', raw, count=1)
        return raw.replace(b"--" + boundary + b"\r\n", b"--" + boundary + b"\r\n--" + boundary + b"\r\n", 1)
    if kind == "long_line":
        position, length, in_head = args
        line = b"X-Long: " + b"a" * length + b"\r\n" if in_head else b"\r\n" + b"b" * length + b"\r\n"
        if in_head:
            head, rest = _split_head(raw)
            return line + head + rest
        index = _at(raw, position)
        return raw[:index] + line + raw[index:]
    raise ValueError(f"unknown mutation {kind}")


def _set_header(raw: bytes, name: str, value: bytes) -> bytes:
    head, rest = _split_head(raw)
    fields = [f for f in _fields(head) if not f.lower().startswith(name.lower().encode() + b":")]
    return name.encode() + b": " + value + b"\r\n" + b"".join(fields) + (rest or b"\r\n\r\n")


_fraction = st.floats(min_value=0, max_value=1, allow_nan=False)
_charset = st.one_of(st.sampled_from(CHARSET_LABELS), st.text(min_size=1, max_size=12))

MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), _fraction, st.integers(0, 255)),
    st.tuples(st.just("truncate"), _fraction),
    st.tuples(st.just("insert"), _fraction, st.sampled_from(SNIPPETS), st.sampled_from([1, 2, 50, 3000])),
    st.tuples(st.just("duplicate_header"), _fraction),
    st.tuples(st.just("drop_header"), _fraction),
    st.tuples(st.just("header_line_end"), _fraction, st.sampled_from([b"\r", b"\n", b"\r\r\n", b"\n\r"])),
    st.tuples(st.just("charset"), _charset),
    st.tuples(
        st.just("encoded_word"),
        st.sampled_from(["Subject", "From", "To", "Content-Disposition"]),
        _charset,
        st.sampled_from(["B", "Q"]),
        st.binary(max_size=40),
    ),
    st.tuples(st.just("header"), st.sampled_from(HEADER_NAMES), st.binary(max_size=200)),
    st.tuples(st.just("transfer_encoding"), st.sampled_from(TRANSFER_ENCODINGS)),
    st.tuples(
        st.just("boundary"),
        st.sampled_from(["drop_close", "rename_param", "drop_delimiters", "empty", "repeat"]),
        _fraction,
    ),
    st.tuples(st.just("long_line"), _fraction, st.sampled_from([998, 999, 5000, 70_000]), st.booleans()),
)


@st.composite
def mutated_corpus_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A corpus message with one to five mutations applied in turn."""
    index = draw(st.integers(0, len(SEEDS) - 1))
    mutations = draw(st.lists(MUTATIONS, min_size=1, max_size=5))
    raw = SEEDS[index]
    for mutation in mutations:
        raw = apply(raw, mutation)
    return f"corpus[{index}]+{'+'.join(m[0] for m in mutations)}", raw


# --- generated pathological messages ------------------------------------------------------------------

HEAD = b"From: Fuzz <fuzz@example.org>\r\nTo: support@localhost\r\nSubject: pathological\r\n"


def _head(tag: bytes) -> bytes:
    return HEAD + b"Message-ID: <" + tag + b"@fuzz>\r\n"


def nested_multipart(depth: int) -> bytes:
    """``depth`` multiparts each inside the other, a text part at the bottom."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % level for level in reversed(range(depth)))
    return (
        _head(b"nested-%d" % depth)
        + b"MIME-Version: 1.0\r\n"
        + opening
        + b"Content-Type: text/plain\r\n\r\nbottom"
        + closing
    )


def nested_messages(depth: int) -> bytes:
    """``depth`` message/rfc822 parts each enclosing the next: no boundaries for a scan to count."""
    layer = b"Content-Type: message/rfc822\r\n\r\nFrom: inner@example.org\r\nSubject: layer\r\n"
    return _head(b"enclosed-%d" % depth) + layer * depth + b"\r\ninnermost\r\n"


def many_addresses(count: int, header: str, style: int) -> bytes:
    """A To or Cc with ``count`` addresses: bare, with names, or with encoded names."""
    forms = (
        lambda n: b"user%d@example.org" % n,
        lambda n: b'"User %d" <user%d@example.org>' % (n, n),
        lambda n: b"=?utf-8?B?w7o=?= %d <user%d@example.org>" % (n, n),
    )
    addresses = b",\r\n ".join(forms[style](n) for n in range(count))
    head = (_head(b"addresses-%d" % count)).replace(b"To: support@localhost\r\n", b"")
    to = b"To: support@localhost\r\n" if header == "Cc" else b""
    return head + to + header.encode() + b": " + addresses + b"\r\n\r\nmany recipients\r\n"


def many_parts(count: int) -> bytes:
    """A multipart/mixed with ``count`` small attachments."""
    parts = b"".join(
        b'--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f%d.bin"'
        b"\r\n\r\ndata %d\r\n" % (n, n)
        for n in range(count)
    )
    return (
        _head(b"parts-%d" % count)
        + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
        + parts
        + b"--p--\r\n"
    )


def long_line(length: int, in_head: bool) -> bytes:
    """One line of ``length`` octets in the header section or the body."""
    if in_head:
        return _head(b"long-%d" % length) + b"X-Long: " + b"h" * length + b"\r\n\r\nshort body\r\n"
    return _head(b"long-body-%d" % length) + b"\r\n" + b"w" * length + b"\r\n"


def deep_html(depth: int, tag: str) -> bytes:
    """An HTML body of ``depth`` unclosed ``tag`` elements."""
    html = (f"<{tag}>" * depth + "deep").encode()
    return _head(b"html-%d" % depth) + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html + b"\r\n"


def bare_cr_headers(fields: int) -> bytes:
    """A header section whose fields end in bare CR (old Mac line ends) with a Bcc smuggled among them."""
    return (
        b"From: cr@example.org\rTo: support@localhost\rBcc: victim@example.org\r"
        + b"X-F: v\r" * fields
        + (b"Subject: bare CR\r\n\r\nbody\r\n")
    )


def many_encoded_words(count: int, charset: str) -> bytes:
    """A Subject of ``count`` encoded words in ``charset``."""
    words = b" ".join(_encoded_word(charset, "B", "ž".encode()) for _ in range(count))
    head = _head(b"words-%d" % count).replace(b"Subject: pathological\r\n", b"Subject: " + words + b"\r\n")
    return head + b"\r\nbody\r\n"


_depths = st.one_of(st.sampled_from([1, 49, 50, 51, 500, 974, 975, 976, 1000, 2000]), st.integers(1, 1200))
_counts = st.one_of(st.sampled_from([1, 999, 1000, 1001, 10_000]), st.integers(1, 12_000))

PATHOLOGICAL = st.one_of(
    st.builds(lambda d: ("nested multipart", nested_multipart(d)), _depths),
    st.builds(lambda d: ("nested messages", nested_messages(d)), _depths),
    st.builds(
        lambda n, h, s: ("addresses", many_addresses(n, h, s)),
        _counts,
        st.sampled_from(["To", "Cc"]),
        st.integers(0, 2),
    ),
    st.builds(
        lambda n: ("parts", many_parts(n)),
        st.one_of(st.sampled_from([999, 1000, 1001]), st.integers(1, 1500)),
    ),
    st.builds(
        lambda n, h: ("long line", long_line(n, h)),
        st.one_of(st.sampled_from([998, 999, 5000, 1_000_000]), st.integers(1, 100_000)),
        st.booleans(),
    ),
    st.builds(
        lambda d, t: ("deep html", deep_html(d, t)),
        st.one_of(st.sampled_from([100, 500, 5000, 100_000]), st.integers(1, 50_000)),
        st.sampled_from(["div", "blockquote", "span", "b", "table", "p", "li", "ul", "font", "a"]),
    ),
    st.builds(lambda n: ("bare CR", bare_cr_headers(n)), st.integers(0, 2000)),
    st.builds(
        lambda n, c: ("encoded words", many_encoded_words(n, c)),
        st.one_of(st.sampled_from([1, 10_000]), st.integers(1, 5000)),
        _charset,
    ),
)

HOSTILE_MESSAGES = st.one_of(
    mutated_corpus_messages(), mutated_corpus_messages(), mutated_corpus_messages(), PATHOLOGICAL
)
