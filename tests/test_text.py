"""How messages show an endpoint: its user and password hidden
(``without_credentials``, used by the system checks and ``switchtrace demo``)."""

from __future__ import annotations

import pytest
from django.utils.translation import gettext_lazy

from switchtrace.text import without_credentials, without_escapes


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        ("http://collector:4318", "http://collector:4318"),
        ("https://u:p@collector.example:0/x", "https://REDACTED:REDACTED@collector.example:0/x"),
        # A user alone (a token) is hidden too.
        ("http://apikey@collector", "http://REDACTED:REDACTED@collector"),
        ("user:pass@collector:4318", "REDACTED:REDACTED@collector:4318"),
        # A base64 token, unencoded: /, ?, # and = in the password.
        ("http://apikey:Zm9v/YmFy+c?Q#=@collector:4318", "http://REDACTED:REDACTED@collector:4318"),
        # An @ in the password, then a /; a password of digits, then a /.
        ("http://alice:p@ss/word@collector:4318", "http://REDACTED:REDACTED@collector:4318"),
        ("http://alice:1234/5678@collector:4318", "http://REDACTED:REDACTED@collector:4318"),
        # The scheme as written: mistyped, after a space, or none but //.
        ("http//alice:pa://ss@collector:4318", "http//REDACTED:REDACTED@collector:4318"),
        (" http://alice:s3cret@collector:4318", " http://REDACTED:REDACTED@collector:4318"),
        ("//alice:s3cret@collector:4318", "//REDACTED:REDACTED@collector:4318"),
        # An @ in the query is the query's after a host; its own where there
        # is a user too.
        ("http://collector:0/v1/traces?tenant=ops@acme",
         "http://collector:0/v1/traces?tenant=ops@acme"),
        ("http://u:p@collector/x?t=ops@acme", "http://REDACTED:REDACTED@collector/x?t=ops@acme"),
        # In doubt, more hidden than a password shown: an @ in the path.
        ("http://collector:0/ingest/@team", "http://REDACTED:REDACTED@team"),
        # No scheme: a token holding a / is no scheme.
        ("tokSECRET/abc@collector:4317", "REDACTED:REDACTED@collector:4317"),
        # Not a str: bytes as bytes, a lazy string as its text.
        (b"http://user:SECRET@collector:4318", b"http://REDACTED:REDACTED@collector:4318"),
        (bytearray(b"http://u:p@h"), bytearray(b"http://REDACTED:REDACTED@h")),
        # A # is a password's (an endpoint has no fragment).
        ("http://alice:1234#x@collector:4318", "http://REDACTED:REDACTED@collector:4318"),
        (gettext_lazy("http://user:SECRET@collector:4318"),
         "http://REDACTED:REDACTED@collector:4318"),
        ("", ""),
        (None, None),
        (4318, 4318),
        # Any other object as it is, whatever its str holds.
        (ValueError("u@h"), None),
    ],
)  # fmt: skip
def test_an_endpoints_user_and_password_are_never_shown(endpoint, shown):
    if isinstance(endpoint, Exception):
        assert without_credentials(endpoint) is endpoint
    else:
        assert without_credentials(endpoint) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain, → non-ASCII", "plain, → non-ASCII"),
        ("two\nlines", "two\nlines"),
        ("C:\\new\\x", "C:\\new\\x"),  # (a backslash is no escape sequence)
        ("no-break\xa0space, narrow\u202fone", "no-break\xa0space, narrow\u202fone"),
        ("red\x1b[31m, title\x1b]0;t\x07", "red\\x1b[31m, title\\x1b]0;t\\x07"),
        ("tab\there, cr\r", "tab\\there, cr\\r"),
        ("reordered \u202eabc", "reordered \\u202eabc"),
        ("line\u2028separator", "line\\u2028separator"),
        ("isolated \u2066x\u2069, marked \u200f", "isolated \\u2066x\\u2069, marked \\u200f"),
        # A translation's words: joined, hyphenated where they may break.
        ("می\u200cشود, 👨\u200d👩, soft\xadhyphen", "می\u200cشود, 👨\u200d👩, soft\xadhyphen"),
        ("del\x7f, c1\x9b", "del\\x7f, c1\\x9b"),
    ],
)
def test_without_escapes_keeps_lines_and_spaces_and_shows_the_rest(text, shown):
    """What explain writes of the project's words: a terminal obeys none of
    it but the line breaks."""
    assert without_escapes(text) == shown
