"""FreeSWITCH's URL encoding of event-plain header values (pure Python reference).

Encoding follows ``switch_url_encode``: a byte is escaped as ``%XX`` (upper-case hex) when it is
< 0x20 or > 0x7E or one of ``CR LF space " # % & + : ; < = > ? @ [ \\ ] ^ ` { | }``; an already
valid ``%XX`` (upper-case hex digits) is passed through unchanged (so encoding is not injective:
a raw ``%20`` decodes to a space on the other side -- FreeSWITCH behaves the same way).
Decoding follows ``switch_url_decode``: each ``%XX`` (either case) becomes one byte, anything
else is literal; ``+`` stays ``+``. Values are UTF-8.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from .errors import RemoteProtocolError

UNSAFE = b"\r\n \"#%&+:;<=>?@[\\]^`{|}"
_UPPER_HEX = b"0123456789ABCDEF"

# byte -> its encoded form; only '%' needs the look-ahead check below
_ENC = [
    (bytes((b,)) if (0x20 <= b <= 0x7E and b not in UNSAFE) else b"%%%02X" % b)
    for b in range(256)
]
UNDEF = "_undef_"


def url_encode_bytes(raw: bytes) -> bytes:
    """Encode *raw* exactly as FreeSWITCH does for event-plain values."""
    out = bytearray()
    n = len(raw)
    enc = _ENC
    i = 0
    while i < n:
        b = raw[i]
        if b == 0x25 and i + 2 < n and raw[i + 1] in _UPPER_HEX and raw[i + 2] in _UPPER_HEX:
            out += b"%"
        else:
            out += enc[b]
        i += 1
    return bytes(out)


def url_encode(value: str) -> str:
    """Encode a header value for text/event-plain (no ``_undef_`` substitution)."""
    return url_encode_bytes(value.encode("utf-8")).decode("ascii")


def url_decode_bytes(raw: bytes) -> bytes:
    """Decode ``%XX`` escapes (either case); invalid escapes stay literal; ``+`` stays ``+``."""
    if b"%" not in raw:
        return raw
    # the stdlib's table-driven decoder has exactly these rules
    return unquote_to_bytes(raw)


def url_decode(raw: bytes) -> str:
    """Decode one event-plain value to ``str``; raises RemoteProtocolError on invalid UTF-8."""
    try:
        return url_decode_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"header value is not valid UTF-8: {raw[:80]!r}") from exc
