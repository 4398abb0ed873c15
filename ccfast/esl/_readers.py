"""Pure-Python ESL readers: the reference implementation of framing and decoding.

* :class:`MessageReader` -- client role: bytes from FreeSWITCH -> :mod:`._events` messages.
  The Cython ``ccfast.esl._fast.MessageReader`` has the same interface and must produce equal
  messages for every input (tests check it on the captures and on random events).
* :func:`decode_plain_event`, :func:`decode_json_event` -- one event body -> :class:`Event`.
* :class:`CommandReader` -- server role: bytes from a client -> :mod:`._commands` objects.

Reader contract (both roles): ``feed(data)`` appends bytes, ``feed(b"")`` marks end of stream;
``next_message()`` / ``next_command()`` returns the next complete item or ``None`` when more
bytes are needed (or the stream ended cleanly -- check ``at_eof``). Malformed input raises
:class:`RemoteProtocolError`, and the reader then stays broken (every later call re-raises).
Memory is bounded: a header block may not exceed ``max_header_size`` bytes and a body may not
exceed ``max_body_size`` bytes, whatever the peer sends.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from ._events import (
    ApiResponse,
    AuthRequest,
    ChannelData,
    CommandReply,
    DisconnectNotice,
    Event,
    Headers,
    LogData,
    Message,
    RudeRejection,
    UnknownFrame,
    join_array,
)
from ._urlcodec import url_decode
from .errors import RemoteProtocolError

DEFAULT_MAX_HEADER_SIZE = 1 << 20  # 1 MiB
DEFAULT_MAX_BODY_SIZE = 64 << 20  # 64 MiB

# printable ASCII, no space; a name may hold a ':' that is not followed by a space
# (FreeSWITCH writes ``variable_nolocal:lang: fr``): the separator is the first ": "
_NAME_RE = re.compile(rb"[!-9;-~](?:[!-9;-~]|:(?! ))*")
_DIGITS_RE = re.compile(rb"[0-9]{1,12}")
# a whole event-plain header block, and its lines: split first, then decode each value
_BLOCK_RE = re.compile(rb"(?:[!-9;-~]+:[^\n]*\n)+")
_LINE_RE = re.compile(rb"([!-9;-~](?:[!-9;-~]|:(?! ))*): ?([^\n]*)\n")


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"{what} is not valid UTF-8") from exc


def split_header_line(line: bytes) -> tuple[bytes, bytes]:
    """``b"Name: value"`` -> ``(b"Name", b"value")``; one space after the colon is dropped."""
    colon = line.find(b": ")
    if colon < 0:
        colon = line.find(b":")  # "Name:" or "Name:value" without the space
    if colon <= 0 or not _NAME_RE.fullmatch(line, 0, colon):
        raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
    start = colon + 1
    if line[start:start + 1] == b" ":
        start += 1
    return line[:colon], line[start:]


def parse_length(raw: bytes, limit: int) -> int:
    """Parse a Content-Length value; digits only, at most *limit*."""
    if not _DIGITS_RE.fullmatch(raw):
        raise RemoteProtocolError(f"bad Content-Length {raw[:40]!r}")
    n = int(raw)
    if n > limit:
        raise RemoteProtocolError(f"Content-Length {n} exceeds the limit {limit}")
    return n


def decode_plain_event(body: bytes) -> Event:
    """Decode the body of a ``text/event-plain`` frame.

    Split into lines first, then URL-decode each value; ``_undef_`` -> ``""``; when the last
    header of the block is ``Content-Length``, it delimits the event body and is not kept.
    """
    end = body.find(b"\n\n")
    if end < 0:
        raise RemoteProtocolError("event-plain body has no terminating blank line")
    pairs: list[tuple[str, str]] = []
    if end > 0:
        block = body[: end + 1]  # every line with its "\n"
        if _BLOCK_RE.fullmatch(block) is None:
            for line in block[:-1].split(b"\n"):
                split_header_line(line)  # raises with the offending line
        try:
            for name, value in _LINE_RE.findall(block):
                if value == b"_undef_":
                    pairs.append((name.decode("ascii"), ""))
                elif b"%" in value:
                    pairs.append((name.decode("ascii"), unquote_to_bytes(value).decode("utf-8")))
                else:
                    pairs.append((name.decode("ascii"), value.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"header value is not valid UTF-8: {exc}") from exc
    rest = body[end + 2:]
    ev_body: str | None = None
    if pairs and pairs[-1][0] == "Content-Length":
        n = parse_length(pairs.pop()[1].encode("ascii", "replace"), len(rest))
        if n != len(rest):
            raise RemoteProtocolError("event-plain inner body length mismatch")
        ev_body = _utf8(rest, "event body")
    elif rest:
        raise RemoteProtocolError("trailing bytes after an event-plain header block")
    return Event(Headers(pairs), ev_body, "plain")


class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


def _pairs_hook(pairs: list) -> list:
    return _Pairs(pairs)


def decode_json_event(body: bytes) -> Event:
    """Decode the body of a ``text/event-json`` frame.

    Values must be strings or arrays of strings (arrays become ``"ARRAY::a|:b"``); ``_body``
    becomes the event body and the ``Content-Length`` right before it is dropped.
    """
    try:
        obj = json.loads(_utf8(body, "event-json body"), object_pairs_hook=_pairs_hook)
    except ValueError as exc:  # JSONDecodeError
        raise RemoteProtocolError(f"malformed event-json: {exc}") from exc
    if type(obj) is not _Pairs:
        raise RemoteProtocolError("event-json is not an object")
    pairs: list[tuple[str, str]] = []
    ev_body: str | None = None
    for name, value in obj:
        if type(value) is list:
            if not all(isinstance(v, str) for v in value):
                raise RemoteProtocolError(f"event-json array {name!r} has non-string items")
            value = join_array(value)
        elif not isinstance(value, str):
            raise RemoteProtocolError(f"event-json value of {name!r} is not a string")
        if name == "_body":
            ev_body = value
            if pairs and pairs[-1][0] == "Content-Length":
                pairs.pop()
        else:
            pairs.append((name, value))
    return Event(Headers(pairs), ev_body, "json")


def decode_frame(pairs: list[tuple[bytes, bytes]], body: bytes | None) -> Message:
    """Turn one raw frame (outer header pairs, body or None) into a message."""
    hdrs = [(n.decode("ascii"), _utf8(v, "header value")) for n, v in pairs]
    h = Headers(hdrs)
    ctype = h.get("Content-Type")
    if ctype == "text/event-plain":
        return decode_plain_event(body or b"")
    if ctype == "text/event-json":
        return decode_json_event(body or b"")
    if ctype == "command/reply":
        if body is None and "Event-Name" in h:
            dec = [(n.decode("ascii"), "" if v == b"_undef_" else url_decode(v)) for n, v in pairs]
            return ChannelData(Headers(dec), None, "plain")
        return CommandReply(h.get("Reply-Text", ""), h)
    if ctype == "api/response":
        return ApiResponse(_utf8(body or b"", "api/response body"), h)
    if ctype == "auth/request":
        return AuthRequest()
    if ctype == "text/disconnect-notice":
        return DisconnectNotice(h, _utf8(body or b"", "disconnect notice body"))
    if ctype == "log/data":
        return LogData(h, _utf8(body or b"", "log body"))
    if ctype == "text/rude-rejection":
        return RudeRejection(_utf8(body or b"", "rude rejection body"))
    return UnknownFrame(ctype, h, body or b"")


class FrameSplitter:
    """Splits a byte stream into ``(header pairs, body or None)`` frames (no decoding)."""

    def __init__(
        self,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0  # where to resume looking for the blank line
        self._pending: tuple[list[tuple[bytes, bytes]], int] | None = None
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def at_eof(self) -> bool:
        """True once ``feed(b"")`` was called and every complete frame was consumed."""
        return self._eof and self._pos >= len(self._buf)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._pos and self._pos >= (len(self._buf) >> 1):
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    def _fail(self, msg: str) -> RemoteProtocolError:
        self._error = RemoteProtocolError(msg)
        return self._error

    def next_frame(self) -> tuple[list[tuple[bytes, bytes]], bytes | None] | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next_frame()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_frame(self) -> tuple[list[tuple[bytes, bytes]], bytes | None] | None:
        buf = self._buf
        if self._pending is None:
            # skip blank lines between frames
            while self._pos < len(buf) and buf[self._pos] == 0x0A:
                self._pos += 1
            start = self._pos
            scan = max(self._scan, start)
            end = buf.find(b"\n\n", scan)
            if end < 0:
                if len(buf) - start > self.max_header_size:
                    raise RemoteProtocolError("header block exceeds the size limit")
                self._scan = max(start, len(buf) - 1)
                if self._eof and len(buf) > start:
                    raise RemoteProtocolError("stream ended inside a header block")
                return None
            if end - start > self.max_header_size:
                raise RemoteProtocolError("header block exceeds the size limit")
            pairs = [split_header_line(line) for line in bytes(buf[start:end]).split(b"\n")]
            length = -1
            for name, value in pairs:
                if name == b"Content-Length":
                    length = parse_length(value, self.max_body_size)
                    break
            self._pos = end + 2
            self._scan = self._pos
            if length < 0:
                return pairs, None
            self._pending = (pairs, length)
        pairs, length = self._pending
        if len(buf) - self._pos < length:
            if self._eof:
                raise RemoteProtocolError("stream ended inside a frame body")
            return None
        body = bytes(buf[self._pos:self._pos + length])
        self._pos += length
        self._scan = self._pos
        self._pending = None
        return pairs, body


class MessageReader(FrameSplitter):
    """Client role, pure Python: bytes from FreeSWITCH -> messages."""

    def next_message(self) -> Message | None:
        frame = self.next_frame()
        if frame is None:
            return None
        try:
            return decode_frame(*frame)
        except RemoteProtocolError as exc:
            self._error = exc
            raise


class CommandReader(FrameSplitter):
    """Server role: bytes from an ESL client -> command objects (see :mod:`._commands`)."""

    def next_command(self):  # -> Command | None
        from ._commands import parse_command

        if self._error is not None:
            raise self._error
        try:
            frame = self._next_command_frame()
            if frame is None:
                return None
            return parse_command(*frame)
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_command_frame(self):
        buf = self._buf
        if self._pending is None:
            while self._pos < len(buf) and buf[self._pos] in (0x0A, 0x0D):
                self._pos += 1
            start = self._pos
            end = buf.find(b"\n\n", max(self._scan, start))
            if end < 0:
                if len(buf) - start > self.max_header_size:
                    raise RemoteProtocolError("command block exceeds the size limit")
                self._scan = max(start, len(buf) - 1)
                if self._eof and len(buf) > start:
                    raise RemoteProtocolError("stream ended inside a command")
                return None
            if end - start > self.max_header_size:
                raise RemoteProtocolError("command block exceeds the size limit")
            lines = bytes(buf[start:end]).split(b"\n")
            line = _utf8(lines[0].rstrip(b"\r"), "command line")
            pairs = [split_header_line(x.rstrip(b"\r")) for x in lines[1:]]
            length = -1
            for name, value in pairs:
                if name.lower() == b"content-length":
                    length = parse_length(value, self.max_body_size)
                    break
            self._pos = end + 2
            self._scan = self._pos
            if length < 0:
                return line, pairs, None
            self._pending = ((line, pairs), length)  # type: ignore[assignment]
        (line, pairs), length = self._pending  # type: ignore[misc]
        if len(buf) - self._pos < length:
            if self._eof:
                raise RemoteProtocolError("stream ended inside a command body")
            return None
        body = bytes(buf[self._pos:self._pos + length])
        self._pos += length
        self._scan = self._pos
        self._pending = None
        return line, pairs, body
