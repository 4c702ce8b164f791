"""Which request Content-Types the JSON routes take: one rule for the proxy, the local labels API
and the model server.

A body declared as something else (curl's ``-d`` alone sends ``application/x-www-form-urlencoded``;
a form post, ``text/plain``) is refused with 415 and a message naming what was sent, rather than
parsed as JSON anyway: the client has a bug worth hearing about, and an answer to a form post
would be a cross-site request no browser preflighted. A missing Content-Type is taken as JSON
(RFC 9110 lets a recipient assume; hand-written clients often omit it). Only UTF-8 is read, the
encoding JSON text has (RFC 8259, 8.1).
"""

from __future__ import annotations

from email.message import Message

JSON_MEDIA_TYPE = "application/json"


def json_content_type_problem(content_type: str | None) -> str | None:
    """Why a request body declared as ``content_type`` is not JSON this API reads, or None when it is."""
    if content_type is None or not content_type.strip():
        return None
    parsed = Message()
    parsed["Content-Type"] = content_type
    media_type = parsed.get_content_type()  # lower case; "text/plain" when the header is malformed
    kind, _, subtype = media_type.partition("/")
    if not (media_type == JSON_MEDIA_TYPE or (kind == "application" and subtype.endswith("+json"))):
        shown = content_type.split(";", 1)[0].strip()[:100]
        return f"the request body must be {JSON_MEDIA_TYPE}, not {shown!r}"
    charset = parsed.get_param("charset")
    if isinstance(charset, str) and charset.strip().lower() not in ("utf-8", "utf8"):
        return f"the request body must be UTF-8 {JSON_MEDIA_TYPE}, not charset {charset.strip()[:40]!r}"
    return None
