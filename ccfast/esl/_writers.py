"""Writers for every frame FreeSWITCH sends (server role; used by the simulator and tests).

All functions return ``bytes`` laid out as FreeSWITCH lays them out (header order as in the
captures). Event headers may be given as an :class:`Event`, a :class:`Headers`, a mapping, or
a sequence of ``(name, value)`` pairs; a value may be a ``list`` of strings (an array header).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ._events import (
    ApiResponse,
    AuthRequest,
    ChannelData,
    CommandReply,
    DisconnectNotice,
    Event,
    LogData,
    Message,
    RudeRejection,
    join_array,
)
from ._urlcodec import UNDEF, url_encode_bytes
from .errors import LocalProtocolError

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def _pairs(headers: Any) -> Iterable[tuple[str, Any]]:
    if headers is None:
        return ()
    if isinstance(headers, Event):
        headers = headers.headers
    if hasattr(headers, "pairs"):
        return headers.pairs()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def _check_name(name: str) -> bytes:
    # a ':' inside a name is what FreeSWITCH writes for variable_nolocal:x; readers split at ": "
    raw = name.encode("utf-8")
    if not raw or raw.startswith(b":") or raw.endswith(b":") or b"\n" in raw or b" " in raw or b"\r" in raw:
        raise LocalProtocolError(f"bad header name {name!r}")
    return raw


def _check_raw_value(value: str) -> bytes:
    if "\n" in value:
        raise LocalProtocolError(f"newline in a header value: {value[:60]!r}")
    return value.encode("utf-8")


def _b(body: str | bytes | None) -> bytes | None:
    if body is None:
        return None
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


# ------------------------------------------------------------------ event bodies


def encode_plain_headers(headers: Any) -> bytes:
    """``Name: url-encoded value\\n`` lines; empty values as ``_undef_``; lists as ARRAY::."""
    out = []
    for name, value in _pairs(headers):
        if isinstance(value, (list, tuple)):
            value = join_array(value)
        raw = str(value).encode("utf-8")
        enc = url_encode_bytes(raw) if raw else UNDEF.encode()
        out.append(_check_name(name) + b": " + enc + b"\n")
    return b"".join(out)


def encode_event_plain(headers: Any, body: str | bytes | None = None) -> bytes:
    """The body of a ``text/event-plain`` frame (without the outer header block)."""
    if body is None and isinstance(headers, Event):
        body = headers.body
    raw_body = _b(body)
    pairs = list(_pairs(headers))
    if not raw_body and pairs and pairs[-1][0] == "Content-Length":
        # a reader would take it for the length of a body: the bytes would not decode
        raise LocalProtocolError("an event without body cannot end with a Content-Length header")
    block = encode_plain_headers(pairs)
    if raw_body:
        return block + b"Content-Length: %d\n\n" % len(raw_body) + raw_body
    return block + b"\n"


def _json_str(s: str) -> str:
    # cJSON and json.dumps(ensure_ascii=False) escape the same set with the same spelling
    return json.dumps(s, ensure_ascii=False)


def encode_event_json(headers: Any, body: str | bytes | None = None) -> bytes:
    """The body of a ``text/event-json`` frame, as cJSON_PrintUnformatted writes it."""
    if body is None and isinstance(headers, Event):
        body = headers.body
    parts = []
    for name, value in _pairs(headers):
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, str) and value.startswith("ARRAY::"):
            items = value[7:].split("|:")
        else:
            parts.append(f"{_json_str(name)}:{_json_str(str(value))}")
            continue
        parts.append(f"{_json_str(name)}:[{','.join(_json_str(i) for i in items)}]")
    if body:
        sbody = body.decode("utf-8") if isinstance(body, bytes) else body
        parts.append(f'"Content-Length":"{len(sbody.encode("utf-8"))}"')
        parts.append(f'"_body":{_json_str(sbody)}')
    return ("{" + ",".join(parts) + "}").encode("utf-8")


# ------------------------------------------------------------------ whole frames


def write_auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def write_command_reply(reply_text: str, headers: Any = ()) -> bytes:
    """``Content-Type: command/reply``, ``Reply-Text``, then extra headers (e.g. ``Job-UUID``)."""
    out = [b"Content-Type: command/reply\nReply-Text: ", _check_raw_value(reply_text), b"\n"]
    for name, value in _pairs(headers):
        if name in ("Content-Type", "Reply-Text"):
            continue
        out += [_check_name(name), b": ", _check_raw_value(str(value)), b"\n"]
    out.append(b"\n")
    return b"".join(out)


def write_bgapi_reply(job_uuid: str) -> bytes:
    return write_command_reply(f"+OK Job-UUID: {job_uuid}", (("Job-UUID", job_uuid),))


def write_api_response(body: str | bytes) -> bytes:
    """``api/response``; FreeSWITCH replaces an empty output by ``-ERR no reply\\n``."""
    raw = _b(body) or b"-ERR no reply\n"
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


def write_event_plain(headers: Any, body: str | bytes | None = None) -> bytes:
    inner = encode_event_plain(headers, body)
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner


def write_event_json(headers: Any, body: str | bytes | None = None) -> bytes:
    inner = encode_event_json(headers, body)
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(inner) + inner


def write_event(event: Event, format: str | None = None) -> bytes:
    """Write *event* as plain or json (default: ``event.format``)."""
    fmt = format or event.format
    if fmt == "json":
        return write_event_json(event)
    if fmt == "plain":
        return write_event_plain(event)
    raise LocalProtocolError(f"cannot write event format {fmt!r}")


def write_disconnect_notice(
    body: str = GOODBYE,
    *,
    controlled_session_uuid: str | None = None,
    disposition: str | None = None,
) -> bytes:
    """The goodbye notice. Outbound sockets pass the session uuid and ``disposition="disconnect"``."""
    raw = body.encode("utf-8")
    out = [b"Content-Type: text/disconnect-notice\n"]
    if controlled_session_uuid is not None:
        out.append(b"Controlled-Session-UUID: " + _check_raw_value(controlled_session_uuid) + b"\n")
    if disposition is not None:
        out.append(b"Content-Disposition: " + _check_raw_value(disposition) + b"\n")
    out.append(b"Content-Length: %d\n\n" % len(raw))
    out.append(raw)
    return b"".join(out)


def write_linger_notice(controlled_session_uuid: str, channel_name: str, linger_time: int = -1) -> bytes:
    """The ``Content-Disposition: linger`` notice sent at hang-up on a lingering socket."""
    return (
        b"Content-Type: text/disconnect-notice\n"
        b"Controlled-Session-UUID: " + _check_raw_value(controlled_session_uuid) + b"\n"
        b"Content-Disposition: linger\n"
        b"Channel-Name: " + _check_raw_value(channel_name) + b"\n"
        b"Linger-Time: %d\n"
        b"Content-Length: 0\n\n" % linger_time
    )


def write_rude_rejection(body: str = "Access Denied, go away.\n") -> bytes:
    raw = body.encode("utf-8")
    return b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(raw) + raw


def write_log_data(body: str, headers: Any = ()) -> bytes:
    raw = body.encode("utf-8")
    out = [b"Content-Type: log/data\nContent-Length: %d\n" % len(raw)]
    for name, value in _pairs(headers):
        out += [_check_name(name), b": ", _check_raw_value(str(value)), b"\n"]
    out.append(b"\n")
    out.append(raw)
    return b"".join(out)


def write_connect_reply(channel_headers: Any, socket_mode: str = "async", control: str = "full") -> bytes:
    """The outbound ``connect`` reply: channel snapshot + reply headers, no Content-Length.

    *channel_headers* is the channel snapshot starting with ``Event-Name: CHANNEL_DATA``
    (values URL-encoded here). A ChannelData (as decoded) may be passed back as is: its
    reply headers are dropped and rewritten.
    """
    reply = {"Content-Type", "Reply-Text", "Socket-Mode", "Control"}
    snap = [(n, v) for n, v in _pairs(channel_headers) if n not in reply]
    return (
        encode_plain_headers(snap)
        + b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: "
        + _check_raw_value(socket_mode)
        + b"\nControl: "
        + _check_raw_value(control)
        + b"\n\n"
    )


def write_message(msg: Message, format: str | None = None) -> bytes:
    """Write any message object (the inverse of the client-role reader)."""
    if isinstance(msg, ChannelData):
        return write_connect_reply(msg, msg.socket_mode or "async", msg.control or "full")
    if isinstance(msg, Event):
        return write_event(msg, format)
    if isinstance(msg, CommandReply):
        return write_command_reply(msg.reply_text, msg.headers)
    if isinstance(msg, ApiResponse):
        return write_api_response(msg.body)
    if isinstance(msg, AuthRequest):
        return write_auth_request()
    if isinstance(msg, DisconnectNotice):
        h = msg.headers
        if h.get("Content-Disposition") == "linger":
            return write_linger_notice(
                h.get("Controlled-Session-UUID", ""), h.get("Channel-Name", ""), msg.linger_time or -1
            )
        return write_disconnect_notice(
            msg.body,
            controlled_session_uuid=h.get("Controlled-Session-UUID"),
            disposition=h.get("Content-Disposition"),
        )
    if isinstance(msg, RudeRejection):
        return write_rude_rejection(msg.body)
    if isinstance(msg, LogData):
        hdrs = [(n, v) for n, v in msg.headers.pairs() if n not in ("Content-Type", "Content-Length")]
        return write_log_data(msg.body, hdrs)
    raise LocalProtocolError(f"cannot write {type(msg).__name__}")


__all__ = [
    "GOODBYE",
    "encode_plain_headers",
    "encode_event_plain",
    "encode_event_json",
    "write_auth_request",
    "write_command_reply",
    "write_bgapi_reply",
    "write_api_response",
    "write_event_plain",
    "write_event_json",
    "write_event",
    "write_disconnect_notice",
    "write_linger_notice",
    "write_rude_rejection",
    "write_log_data",
    "write_connect_reply",
    "write_message",
]
