"""The new part of a reply is found for the common clients and languages; quote-only mail keeps its text."""

from __future__ import annotations

from pathlib import Path

import pytest

from centrala.mail.parse import parse_email
from centrala.mail.quotes import html_to_text, strip_quoted_reply, strip_signature, visible_text

CORPUS = Path(__file__).with_name("corpus")
STANDARD_REPLIES = sorted(CORPUS.glob("talon/standard_replies/*.eml"))
HTML_REPLIES = sorted(CORPUS.glob("talon/html_replies/*.html"))


@pytest.mark.parametrize("path", STANDARD_REPLIES, ids=lambda path: path.name)
def test_talon_standard_reply_quote_is_stripped(path):
    """talon's fixtures: the expected reply is the companion ``*_reply_text`` file, else "Hello"."""
    parsed = parse_email(path.read_bytes())
    companion = path.with_name(path.stem + "_reply_text")
    expected = companion.read_text(encoding="utf-8").strip() if companion.exists() else "Hello"
    assert strip_quoted_reply(parsed.text) == expected


@pytest.mark.parametrize("path", STANDARD_REPLIES, ids=lambda path: path.name)
def test_talon_standard_reply_visible_text_has_no_signature(path):
    parsed = parse_email(path.read_bytes())
    assert parsed.visible_text == "Hello"
    assert parsed.text.startswith(("Hello", "On 04/02/2012"))  # the full text stays available


@pytest.mark.parametrize("path", HTML_REPLIES, ids=lambda path: path.name)
def test_talon_html_reply_text_is_derived_and_stripped(path):
    reply = visible_text("", path.read_text(encoding="utf-8"))
    assert [line for line in reply.splitlines() if line.strip()] == ["Hi. I am fine.", "Thanks,", "Alex"]


REPLY = "Dobrý den,\nposílám fakturu.\n\nJana"


@pytest.mark.parametrize(
    "quote",
    [
        # attribution lines
        "On Mon, Nov 16, 2026 at 9:30 AM Petr Novák <petr@example.cz> wrote:\n> Pošlete fakturu.",
        "On Mon, Nov 16, 2026 at 9:30 AM Petr Novák <\npetr@example.cz> wrote:\n\n> Pošlete fakturu.",
        "Dne 16. 11. 2026 9:30 Petr Novák napsal(a):\n> Pošlete fakturu.",
        "po 16. 11. 2026 v 9:30 odesílatel Petr Novák <petr@example.cz> napsal:\n> Pošlete fakturu.",
        "W dniu 16.11.2026 o 09:30, Piotr Nowak pisze:\n> Proszę o fakturę.",
        "pon., 16 lis 2026 o 09:30 Piotr Nowak <piotr@example.pl> napisał(a):\n> Proszę o fakturę.",
        "пн, 16 лист. 2026 о 09:30 Олена <olena@example.ua> пише:\n> Надішліть рахунок.",
        "16.11.2026 9:30, Олена Коваль написав(ла):\n> Надішліть рахунок.",
        "16.11.2026, 09:30, \"Олена\" <olena@example.ua>:\n> Надішліть рахунок.",
        # Outlook: the old message follows the header block unquoted
        (
            "-----Original Message-----\nFrom: Petr <petr@example.cz>\nSent: Monday, November 16, 2026 9:30\n"
            "To: Podpora\nSubject: Faktura\n\nPošlete fakturu.\n\nPetr"
        ),
        (
            "________________________________\nFrom: Petr Novák <petr@example.cz>\nSent: Monday 9:30\n"
            "To: support@example.cz\nSubject: Faktura\n\nPošlete fakturu."
        ),
        (
            "-----Původní zpráva-----\nOd: Petr Novák [mailto:petr@example.cz]\n"
            "Odesláno: pondělí 16. listopadu 2026 9:30\nKomu: Podpora\nPředmět: Faktura\n\nPošlete fakturu."
        ),
        (
            "Od: Piotr Nowak <piotr@example.pl>\nWysłano: poniedziałek, 16 listopada 2026 09:30\n"
            "Do: Wsparcie\nTemat: Faktura\n\nProszę o fakturę."
        ),
        (
            "Від: Олена Коваль <olena@example.ua>\nНадіслано: 16 листопада 2026 р. 9:30\nКому: Підтримка\n"
            "Тема: Рахунок\n\nНадішліть рахунок."
        ),
        (
            "От: Ольга\nОтправлено: понедельник, 16 ноября 2026 г. 9:30\nКому: Поддержка\nТема: Счёт\n\n"
            "Пришлите счёт."
        ),
        # plain ">" quoting without an attribution
        "> Pošlete fakturu.\n> Děkuji\n> Petr",
    ],
)
def test_quoted_reply_is_stripped(quote):
    assert visible_text(f"{REPLY}\n\n{quote}\n") == REPLY


def test_bottom_posted_reply_keeps_the_text_after_the_quote():
    text = "Dne 16. 11. 2026 9:30 Petr napsal(a):\n> Pošlete fakturu.\n> Petr\n\nPosílám v příloze.\nJana"
    assert visible_text(text) == "Posílám v příloze.\nJana"


def test_inline_reply_is_kept_whole():
    text = "On Mon, Nov 16, 2026 at 9:30 AM Petr wrote:\n> Kdy?\nZítra.\n> Kde?\nV Brně.\n"
    assert visible_text(text) == text.strip()


def test_forwarded_message_is_kept_whole():
    text = (
        "Přeposílám.\n\n---------- Forwarded message ----------\nFrom: Petr <petr@example.cz>\nDate: Mon\n"
        "Subject: Faktura\nTo: Jana\n\nPošlete fakturu."
    )
    assert visible_text(text) == text


def test_itinerary_is_not_taken_for_a_reply_header():
    text = "Rezervace:\nOd: Praha hl. n.\nDo: Brno\nDatum: 5. 12. 2026\n\nDěkuji"
    assert visible_text(text) == text


def test_a_couple_of_angle_brackets_are_not_a_quote():
    text = "Výsledek:\n> 5 položek\nDíky"
    assert visible_text(text) == text


def test_message_that_is_all_quote_keeps_its_full_text():
    text = "On Mon, Nov 16, 2026 at 9:30 AM Petr <petr@example.cz> wrote:\n> Pošlete fakturu.\n> Petr"
    assert visible_text(text) == text


def test_message_that_is_only_a_signature_keeps_its_text():
    assert visible_text("-- \nJana Nováková\nACME s.r.o.") == "-- \nJana Nováková\nACME s.r.o."


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nJana Nováková\nACME s.r.o.\n+420 123 456 789", "--\nJana", "Sent from my iPhone",
        "Odesláno z iPhonu", "Odesláno z mého iPhonu", "Wysłane z iPhone'a", "Wysłane z mojego iPhone'a",
        "Надіслано з iPhone", "Sent from my Galaxy", "Get Outlook for Android",
    ],
)
def test_signature_is_stripped(signature):
    assert strip_signature(f"{REPLY}\n\n{signature}") == REPLY


def test_signature_delimiter_far_from_the_end_is_content():
    text = "Nahoře\n--\n" + "\n".join(f"řádek {n}" for n in range(20))
    assert strip_signature(text) == text


def test_html_to_text_keeps_structure():
    html = (
        "<p>Dobrý&nbsp;den,</p><p>text <b>tučně</b><br>druhý řádek</p><ul><li>jedna</li><li>dvě</li></ul>"
        "<blockquote><p>citace</p><blockquote>hlubší</blockquote></blockquote>"
        "<a href='https://example.cz/x'>odkaz</a><script>alert(1)</script><style>p{}</style>"
    )
    assert html_to_text(html) == (
        "Dobrý den,\n\ntext tučně\ndruhý řádek\n\n- jedna\n- dvě\n\n> citace\n>\n> > hlubší\n\n"
        "odkaz <https://example.cz/x>"
    )


@pytest.mark.parametrize(
    "text",
    [
        "> quoted\n" + "text\n" * 60,  # talon's inline-reply pattern backtracks exponentially on this
        "> a\n> b\n" + "text\n" * 900 + "On 1. 1. 2026 a@example.cz wrote:",
        ("> a\n\nOn 1. 1. 2026 a@example.cz wrote:\nb\n") * 300,
        " " * 100_000 + "x",
    ],
    ids=["quote-then-text", "long-tail", "alternating", "long-line"],
)
def test_pathological_text_is_stripped_without_backtracking(text):
    assert visible_text(text)
