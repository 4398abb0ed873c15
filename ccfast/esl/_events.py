"""Typed messages that FreeSWITCH sends (client role receives them, server role writes them).

Every message is an immutable-by-convention object with ``__slots__``:

* :class:`AuthRequest` -- ``Content-Type: auth/request`` (first frame of an inbound connection).
* :class:`CommandReply` -- ``command/reply``; ``reply_text`` plus all outer ``headers``
  (``Job-UUID`` for bgapi, ``Allowed-*`` for userauth).
* :class:`ApiResponse` -- ``api/response``; ``body`` is the command output (str).
* :class:`Event` -- ``text/event-plain`` or ``text/event-json``. ``headers`` is a
  :class:`Headers` (wire order, repeated names kept, values decoded), ``body`` the event body
  (plain: the inner ``Content-Length`` body; json: ``_body``) or ``None``.
* :class:`ChannelData` -- the outbound ``connect`` reply: one header block, no outer
  Content-Length, URL-encoded values, ``Reply-Text: %2BOK%0A``. It *is* an :class:`Event`
  (``name == "CHANNEL_DATA"``) with ``reply_text`` / ``socket_mode`` / ``control`` on top.
* :class:`LogData` -- ``log/data`` (headers + body).
* :class:`DisconnectNotice` -- ``text/disconnect-notice``; ``disposition`` is ``"linger"``,
  ``"disconnect"`` or ``None``.
* :class:`RudeRejection` -- ``text/rude-rejection`` (ACL refused; the socket closes).
* :class:`UnknownFrame` -- any other Content-Type (e.g. ``text/event-xml``), kept raw.

Header values: event-plain values are URL-decoded one by one after the block was split into
lines; ``_undef_`` (FreeSWITCH's marker for an empty value) decodes to ``""``; an array header
is the string ``"ARRAY::a|:b"`` (json arrays are turned into the same string), and
:meth:`Headers.get_array` / :meth:`Event.get_array` return ``["a", "b"]``.
Header names are case-sensitive, as written on the wire. For repeated names ``get`` returns
the first occurrence (as ``switch_event_get_header`` does), ``get_all`` returns all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ARRAY_PREFIX = "ARRAY::"
ARRAY_SEP = "|:"


def split_array(value: str | None) -> list[str] | None:
    """``"ARRAY::a|:b"`` -> ``["a", "b"]``; a plain value -> ``[value]``; None -> None."""
    if value is None:
        return None
    if value.startswith(ARRAY_PREFIX):
        return value[len(ARRAY_PREFIX):].split(ARRAY_SEP)
    return [value]


def join_array(items: Iterable[str]) -> str:
    """``["a", "b"]`` -> ``"ARRAY::a|:b"`` (the form FreeSWITCH uses in event-plain)."""
    return ARRAY_PREFIX + ARRAY_SEP.join(items)


class Headers(Mapping):
    """Ordered header list with repeated names kept.

    Mapping view (``h[name]``, ``get``, ``in``, ``keys``, iteration, ``len``) sees the *first*
    value of each name; :meth:`pairs` yields every ``(name, value)`` in wire order and
    :meth:`get_all` every value of one name. The Cython decoder returns a lazy object with the
    same methods (``ccfast.esl._fast.LazyHeaders``); both compare equal when their pairs are equal.
    """

    __slots__ = ("_pairs", "_first")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: list[tuple[str, str]] = list(pairs)
        first: dict[str, str] = {}
        for name, value in self._pairs:
            if name not in first:
                first[name] = value
        self._first = first

    def __getitem__(self, name: str) -> str:
        return self._first[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def pairs(self) -> list[tuple[str, str]]:
        """Every header in wire order, repeated names included."""
        return list(self._pairs)

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self._pairs if n == name]

    def get_array(self, name: str) -> list[str] | None:
        return split_array(self.get(name))

    def __eq__(self, other: object) -> bool:
        if hasattr(other, "pairs"):
            return self.pairs() == other.pairs()  # type: ignore[union-attr]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


def _as_headers(h: Any) -> Any:
    if h is None:
        return Headers()
    if isinstance(h, Headers) or hasattr(h, "pairs"):
        return h
    if isinstance(h, Mapping):
        return Headers(h.items())
    return Headers(h)


class Message:
    """Base class of everything FreeSWITCH sends."""

    __slots__ = ()

    def _key(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class AuthRequest(Message):
    """``Content-Type: auth/request``."""

    __slots__ = ()

    def _key(self) -> tuple:
        return ()

    def __repr__(self) -> str:
        return "AuthRequest()"


class CommandReply(Message):
    """``command/reply``: ``reply_text`` (e.g. ``+OK accepted``) and all outer headers."""

    __slots__ = ("reply_text", "headers")

    def __init__(self, reply_text: str, headers: Any = None) -> None:
        self.reply_text = reply_text
        self.headers = _as_headers(headers)

    @property
    def ok(self) -> bool:
        return self.reply_text.startswith("+OK")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")

    def _key(self) -> tuple:
        return (self.reply_text, self.headers.pairs())

    def __repr__(self) -> str:
        return f"CommandReply({self.reply_text!r})"


class ApiResponse(Message):
    """``api/response``; ``body`` is the output text (``-ERR ...`` on failure)."""

    __slots__ = ("body", "headers")

    def __init__(self, body: str, headers: Any = None) -> None:
        self.body = body
        self.headers = _as_headers(headers)

    @property
    def ok(self) -> bool:
        return self.body.startswith("+OK")

    def _key(self) -> tuple:
        return (self.body,)

    def __repr__(self) -> str:
        return f"ApiResponse({self.body!r})"


class Event(Message):
    """A FreeSWITCH event (``text/event-plain`` or ``text/event-json``).

    ``headers``: :class:`Headers` (or the Cython lazy equivalent); ``body``: str or None;
    ``format``: ``"plain"`` or ``"json"``. Equality compares header pairs and body.
    """

    __slots__ = ("headers", "body", "format")

    def __init__(self, headers: Any = None, body: str | None = None, format: str = "plain") -> None:
        self.headers = _as_headers(headers)
        self.body = body
        self.format = format

    @property
    def name(self) -> str | None:
        """``Event-Name`` (e.g. ``CHANNEL_ANSWER``, ``CUSTOM``)."""
        return self.headers.get("Event-Name")

    @property
    def subclass(self) -> str | None:
        """``Event-Subclass`` (e.g. ``callcenter::info``) or None."""
        return self.headers.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.headers.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")

    def get(self, name: str, default: Any = None) -> Any:
        return self.headers.get(name, default)

    def get_all(self, name: str) -> list[str]:
        return self.headers.get_all(name)

    def get_array(self, name: str) -> list[str] | None:
        """Array header as a list (``ARRAY::a|:b`` -> ``["a", "b"]``), scalar -> ``[v]``."""
        return split_array(self.headers.get(name))

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.headers

    def _key(self) -> tuple:
        return (self.headers.pairs(), self.body)

    def __repr__(self) -> str:
        sub = f" {self.subclass}" if self.subclass else ""
        return f"<{type(self).__name__} {self.name}{sub} ({self.format})>"


class ChannelData(Event):
    """The outbound ``connect`` reply: the channel snapshot plus the reply headers.

    ``headers`` holds every header of the block, decoded (so ``Reply-Text`` is ``"+OK\\n"``).
    """

    __slots__ = ()

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def ok(self) -> bool:
        return self.reply_text.startswith("+OK")

    @property
    def socket_mode(self) -> str | None:
        return self.headers.get("Socket-Mode")

    @property
    def control(self) -> str | None:
        return self.headers.get("Control")


class LogData(Message):
    """``log/data``: headers (Log-Level, ...) and the log line as body."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: Any = None, body: str = "") -> None:
        self.headers = _as_headers(headers)
        self.body = body

    def _key(self) -> tuple:
        return (self.headers.pairs(), self.body)

    def __repr__(self) -> str:
        return f"LogData({self.body[:40]!r})"


class DisconnectNotice(Message):
    """``text/disconnect-notice``; ``disposition`` is linger / disconnect / None (inbound)."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: Any = None, body: str = "") -> None:
        self.headers = _as_headers(headers)
        self.body = body

    @property
    def disposition(self) -> str | None:
        return self.headers.get("Content-Disposition")

    @property
    def linger_time(self) -> int | None:
        v = self.headers.get("Linger-Time")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    @property
    def controlled_session_uuid(self) -> str | None:
        return self.headers.get("Controlled-Session-UUID")

    def _key(self) -> tuple:
        return (self.headers.pairs(), self.body)

    def __repr__(self) -> str:
        return f"DisconnectNotice(disposition={self.disposition!r})"


class RudeRejection(Message):
    """``text/rude-rejection`` (ACL refused the connection)."""

    __slots__ = ("body",)

    def __init__(self, body: str = "") -> None:
        self.body = body

    def _key(self) -> tuple:
        return (self.body,)

    def __repr__(self) -> str:
        return f"RudeRejection({self.body!r})"


class UnknownFrame(Message):
    """A frame with a Content-Type this layer does not model (e.g. ``text/event-xml``)."""

    __slots__ = ("content_type", "headers", "body")

    def __init__(self, content_type: str | None, headers: Any = None, body: bytes = b"") -> None:
        self.content_type = content_type
        self.headers = _as_headers(headers)
        self.body = body

    def _key(self) -> tuple:
        return (self.content_type, self.headers.pairs(), self.body)

    def __repr__(self) -> str:
        return f"UnknownFrame({self.content_type!r})"


__all__ = [
    "ARRAY_PREFIX",
    "ARRAY_SEP",
    "split_array",
    "join_array",
    "Headers",
    "Message",
    "AuthRequest",
    "CommandReply",
    "ApiResponse",
    "Event",
    "ChannelData",
    "LogData",
    "DisconnectNotice",
    "RudeRejection",
    "UnknownFrame",
]
