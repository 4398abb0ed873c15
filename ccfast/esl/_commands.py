"""Commands an ESL client sends, as typed objects that encode to bytes and parse back.

``cmd.encode() -> bytes`` gives the exact wire bytes (command line, header lines, blank line,
optional body). :func:`parse_command` (server role) turns a received frame back into the same
class, so ``parse(encode(cmd)) == cmd`` for every command built through the constructors.
Arguments that would break the framing (a newline in a command line or header, a reserved
header supplied by the caller) raise :class:`LocalProtocolError` at construction.

Header values are sent raw: FreeSWITCH does not URL-decode command headers.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError

EVENT_FORMATS = ("plain", "json", "xml")
HeaderList = tuple[tuple[str, str], ...]

# sendmsg execute-app-arg longer than this goes in a Content-Length body instead of a header
LONG_ARG = 1024


def _check_text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a str, got {type(value).__name__}")
    if "\n" in value or "\r" in value:
        raise LocalProtocolError(f"newline in {what}: {value[:60]!r}")
    return value


def _check_word(value: str, what: str) -> str:
    _check_text(value, what)
    if not value or " " in value:
        raise LocalProtocolError(f"{what} must be one non-empty word: {value!r}")
    return value


def _norm_headers(headers: Any) -> HeaderList:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in items:
        _check_text(name, "header name")
        if not name or ":" in name or " " in name:
            raise LocalProtocolError(f"bad header name {name!r}")
        if name.lower() == "content-length":
            raise LocalProtocolError("Content-Length is computed from the body; do not pass it")
        out.append((name, _check_text(str(value), f"value of header {name}")))
    return tuple(out)


def _norm_body(body: str | bytes | None) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        body = body.encode("utf-8")
    return bytes(body)


def _frame(line: str, headers: HeaderList = (), body: bytes | None = None) -> bytes:
    parts = [line.encode("utf-8"), b"\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\n".encode("utf-8"))
    if body is not None:
        parts.append(b"Content-Length: %d\n\n" % len(body))
        parts.append(body)
    else:
        parts.append(b"\n")
    return b"".join(parts)


class Command:
    """Base class: ``encode()`` -> bytes."""

    __slots__ = ()

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """``auth <password>``."""

    password: str

    def __post_init__(self) -> None:
        _check_word(self.password, "password")

    def encode(self) -> bytes:
        return _frame(f"auth {self.password}")


@dataclass(frozen=True, slots=True)
class UserAuth(Command):
    """``userauth <user@domain>:<password>``."""

    user: str
    password: str

    def __post_init__(self) -> None:
        _check_word(self.user, "user")
        _check_word(self.password, "password")
        if ":" in self.user:
            raise LocalProtocolError("user must not contain ':'")

    def encode(self) -> bytes:
        return _frame(f"userauth {self.user}:{self.password}")


def _norm_events(obj: Any, events: Iterable[str], subclasses: Iterable[str]) -> None:
    evs = [_check_word(e, "event name") for e in events]
    subs = tuple(_check_word(s, "event subclass") for s in subclasses)
    has_custom = "CUSTOM" in evs or bool(subs)
    evs = [e for e in evs if e != "CUSTOM"]
    if has_custom:
        evs.append("CUSTOM")  # everything after CUSTOM is read as a subclass: it goes last
    object.__setattr__(obj, "events", tuple(evs))
    object.__setattr__(obj, "subclasses", subs)


def _events_line(events: tuple[str, ...], subclasses: tuple[str, ...]) -> str:
    return " ".join(events + subclasses)


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    """``event plain|json|xml <EVENTS...> [CUSTOM <subclass>...]``.

    ``Subscribe("plain", ["CHANNEL_ANSWER"], ["callcenter::info"])`` ->
    ``event plain CHANNEL_ANSWER CUSTOM callcenter::info``.
    """

    format: str = "plain"
    events: tuple[str, ...] = ("ALL",)
    subclasses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.format not in EVENT_FORMATS:
            raise LocalProtocolError(f"event format must be one of {EVENT_FORMATS}")
        _norm_events(self, self.events, self.subclasses)
        if not self.events:
            raise LocalProtocolError("subscribe to at least one event")

    def encode(self) -> bytes:
        return _frame(f"event {self.format} {_events_line(self.events, self.subclasses)}")


@dataclass(frozen=True, slots=True)
class NixEvent(Command):
    """``nixevent <EVENTS...> [CUSTOM <subclass>...]``."""

    events: tuple[str, ...] = ()
    subclasses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _norm_events(self, self.events, self.subclasses)
        if not self.events:
            raise LocalProtocolError("nixevent needs at least one event")

    def encode(self) -> bytes:
        return _frame(f"nixevent {_events_line(self.events, self.subclasses)}")


@dataclass(frozen=True, slots=True)
class NoEvents(Command):
    """``noevents``."""

    def encode(self) -> bytes:
        return _frame("noevents")


@dataclass(frozen=True, slots=True)
class Filter(Command):
    """``filter <header> <value>`` (a value starting with ``/`` is a regex for FreeSWITCH)."""

    header: str
    value: str

    def __post_init__(self) -> None:
        _check_word(self.header, "filter header")
        if self.header == "delete":
            raise LocalProtocolError("use FilterDelete to delete filters")
        _check_text(self.value, "filter value")

    def encode(self) -> bytes:
        return _frame(f"filter {self.header} {self.value}")


@dataclass(frozen=True, slots=True)
class FilterDelete(Command):
    """``filter delete all`` (header None), ``filter delete <h>`` or ``filter delete <h> <v>``."""

    header: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        if self.header is None:
            if self.value is not None:
                raise LocalProtocolError("filter delete with a value needs a header")
        else:
            _check_word(self.header, "filter header")
        if self.value is not None:
            _check_text(self.value, "filter value")

    def encode(self) -> bytes:
        if self.header is None:
            return _frame("filter delete all")
        if self.value is None:
            return _frame(f"filter delete {self.header}")
        return _frame(f"filter delete {self.header} {self.value}")


@dataclass(frozen=True, slots=True)
class MyEvents(Command):
    """``myevents [<uuid>] [plain|json|xml]`` (outbound: no uuid)."""

    uuid: str | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        if self.uuid is not None:
            _check_word(self.uuid, "uuid")
        if self.format is not None and self.format not in EVENT_FORMATS:
            raise LocalProtocolError(f"event format must be one of {EVENT_FORMATS}")

    def encode(self) -> bytes:
        words = ["myevents"]
        if self.uuid is not None:
            words.append(self.uuid)
        if self.format is not None:
            words.append(self.format)
        return _frame(" ".join(words))


@dataclass(frozen=True, slots=True)
class DivertEvents(Command):
    """``divert_events on|off``."""

    on: bool = True

    def encode(self) -> bytes:
        return _frame("divert_events on" if self.on else "divert_events off")


@dataclass(frozen=True, slots=True)
class Linger(Command):
    """``linger`` (forever) or ``linger <seconds>``."""

    seconds: int | None = None

    def __post_init__(self) -> None:
        if self.seconds is not None and (not isinstance(self.seconds, int) or self.seconds < 0):
            raise LocalProtocolError("linger seconds must be a non-negative int")

    def encode(self) -> bytes:
        return _frame("linger" if self.seconds is None else f"linger {self.seconds}")


@dataclass(frozen=True, slots=True)
class NoLinger(Command):
    """``nolinger``."""

    def encode(self) -> bytes:
        return _frame("nolinger")


@dataclass(frozen=True, slots=True)
class Resume(Command):
    """``resume``: the dialplan continues after ``socket`` when the socket closes."""

    def encode(self) -> bytes:
        return _frame("resume")


@dataclass(frozen=True, slots=True)
class Connect(Command):
    """``connect`` -- first command on an outbound socket."""

    def encode(self) -> bytes:
        return _frame("connect")


@dataclass(frozen=True, slots=True)
class Exit(Command):
    """``exit`` -> ``+OK bye``, disconnect notice, close."""

    def encode(self) -> bytes:
        return _frame("exit")


@dataclass(frozen=True, slots=True)
class Log(Command):
    """``log <level>`` / ``log`` (console level)."""

    level: str | None = None

    def __post_init__(self) -> None:
        if self.level is not None:
            _check_word(self.level, "log level")

    def encode(self) -> bytes:
        return _frame("log" if self.level is None else f"log {self.level}")


@dataclass(frozen=True, slots=True)
class NoLog(Command):
    """``nolog``."""

    def encode(self) -> bytes:
        return _frame("nolog")


def _split_api(obj: Any) -> None:
    _check_text(obj.command, "api command")
    _check_text(obj.args, "api arguments")
    if not obj.args and " " in obj.command:
        cmd, _, args = obj.command.partition(" ")
        object.__setattr__(obj, "command", cmd)
        object.__setattr__(obj, "args", args)
    if not obj.command or " " in obj.command:
        raise LocalProtocolError(f"bad api command {obj.command!r}")


@dataclass(frozen=True, slots=True)
class Api(Command):
    """``api <command> <args>``; ``Api("uuid_kill abc")`` == ``Api("uuid_kill", "abc")``."""

    command: str
    args: str = ""

    def __post_init__(self) -> None:
        _split_api(self)

    @property
    def line(self) -> str:
        return f"{self.command} {self.args}" if self.args else self.command

    def encode(self) -> bytes:
        return _frame(f"api {self.line}")


@dataclass(frozen=True, slots=True)
class BgApi(Command):
    """``bgapi <command> <args>`` with an explicit ``Job-UUID`` header.

    ``job_uuid`` defaults to a fresh uuid4 so the caller can register its waiter *before*
    sending; a parsed command without the header has ``job_uuid=None``.
    """

    command: str
    args: str = ""
    job_uuid: str | None = field(default_factory=lambda: str(_uuid.uuid4()))

    def __post_init__(self) -> None:
        _split_api(self)
        if self.job_uuid is not None:
            _check_word(self.job_uuid, "Job-UUID")

    @property
    def line(self) -> str:
        return f"{self.command} {self.args}" if self.args else self.command

    def encode(self) -> bytes:
        hdrs = (("Job-UUID", self.job_uuid),) if self.job_uuid is not None else ()
        return _frame(f"bgapi {self.line}", hdrs)


@dataclass(frozen=True, slots=True)
class SendEvent(Command):
    """``sendevent <NAME>`` + headers (+ body). Values are sent raw (not URL-encoded).

    Use :meth:`custom` for ``CUSTOM`` events: ``SendEvent.custom("callcenter::info", {...})``
    puts ``Event-Subclass`` first. Never put a live channel's ``Unique-ID`` here (FreeSWITCH
    then queues the event to that channel instead of broadcasting it).
    """

    name: str
    headers: HeaderList = ()
    body: bytes | None = None

    def __post_init__(self) -> None:
        _check_word(self.name, "event name")
        object.__setattr__(self, "headers", _norm_headers(self.headers))
        object.__setattr__(self, "body", _norm_body(self.body))

    @classmethod
    def custom(cls, subclass: str, headers: Any = (), body: str | bytes | None = None) -> SendEvent:
        _check_word(subclass, "event subclass")
        return cls("CUSTOM", (("Event-Subclass", subclass),) + _norm_headers(headers), body)

    @property
    def subclass(self) -> str | None:
        for n, v in self.headers:
            if n.lower() == "event-subclass":
                return v
        return None

    def encode(self) -> bytes:
        return _frame(f"sendevent {self.name}", self.headers, self.body)


@dataclass(frozen=True, slots=True)
class SendMsg(Command):
    """``sendmsg [<uuid>]`` + headers (+ body). ``uuid`` None = the outbound socket's channel.

    Build with :meth:`execute` or :meth:`hangup`; the accessors read the headers back.
    """

    uuid: str | None = None
    headers: HeaderList = ()
    body: bytes | None = None

    def __post_init__(self) -> None:
        if self.uuid is not None:
            _check_word(self.uuid, "uuid")
        object.__setattr__(self, "headers", _norm_headers(self.headers))
        object.__setattr__(self, "body", _norm_body(self.body))

    @classmethod
    def execute(
        cls,
        uuid: str | None,
        app: str,
        arg: str | None = None,
        *,
        event_lock: bool = False,
        loops: int | None = None,
        async_: bool = False,
        event_uuid: str | None = None,
    ) -> SendMsg:
        """``call-command: execute`` of *app* with *arg*.

        An arg with a newline or longer than LONG_ARG bytes travels as a ``text/plain`` body.
        """
        _check_word(app, "application name")
        hdrs: list[tuple[str, str]] = [("call-command", "execute"), ("execute-app-name", app)]
        body = None
        if arg is not None:
            if "\n" in arg or "\r" in arg or len(arg.encode("utf-8")) > LONG_ARG:
                body = arg.encode("utf-8")
            else:
                hdrs.append(("execute-app-arg", arg))
        if loops is not None:
            hdrs.append(("loops", str(int(loops))))
        if event_lock:
            hdrs.append(("event-lock", "true"))
        if async_:
            hdrs.append(("async", "true"))
        if event_uuid is not None:
            hdrs.append(("Event-UUID", event_uuid))
        if body is not None:
            hdrs.append(("content-type", "text/plain"))
        return cls(uuid, tuple(hdrs), body)

    @classmethod
    def hangup(cls, uuid: str | None, cause: str | None = None) -> SendMsg:
        hdrs: list[tuple[str, str]] = [("call-command", "hangup")]
        if cause is not None:
            hdrs.append(("hangup-cause", cause))
        return cls(uuid, tuple(hdrs))

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (FreeSWITCH reads sendmsg headers that way)."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    @property
    def call_command(self) -> str | None:
        return self.header("call-command")

    @property
    def app_name(self) -> str | None:
        return self.header("execute-app-name")

    @property
    def app_arg(self) -> str | None:
        """``execute-app-arg`` header, or the body for long arguments."""
        v = self.header("execute-app-arg")
        if v is None and self.body is not None:
            return self.body.decode("utf-8", "replace")
        return v

    @property
    def event_lock(self) -> bool:
        return (self.header("event-lock") or "").lower() == "true"

    @property
    def async_(self) -> bool:
        return (self.header("async") or "").lower() == "true"

    @property
    def loops(self) -> int:
        v = self.header("loops")
        try:
            return int(v) if v is not None else 1
        except ValueError:
            return 1

    def encode(self) -> bytes:
        line = "sendmsg" if self.uuid is None else f"sendmsg {self.uuid}"
        return _frame(line, self.headers, self.body)


@dataclass(frozen=True, slots=True)
class RawCommand(Command):
    """Any other command line (+ headers, body). The server parser returns it for unknown commands."""

    line: str
    headers: HeaderList = ()
    body: bytes | None = None

    def __post_init__(self) -> None:
        _check_text(self.line, "command line")
        if not self.line:
            raise LocalProtocolError("empty command line")
        object.__setattr__(self, "headers", _norm_headers(self.headers))
        object.__setattr__(self, "body", _norm_body(self.body))

    @property
    def name(self) -> str:
        return self.line.split(" ", 1)[0]

    def encode(self) -> bytes:
        return _frame(self.line, self.headers, self.body)


# ---------------------------------------------------------------- server side parsing


def _parse_events(words: list[str]) -> tuple[list[str], list[str]]:
    if "CUSTOM" in words:
        i = words.index("CUSTOM")
        return words[: i + 1], words[i + 1:]
    return words, []


def parse_command(line: str, pairs: list[tuple[bytes, bytes]], body: bytes | None) -> Command:
    """Build a command object from a received frame (command line, raw header pairs, body).

    Commands this module does not model, or that are malformed in ways FreeSWITCH would reject
    with an ``-ERR`` reply, come back as :class:`RawCommand` so the server can answer them.
    """
    try:
        headers = tuple((n.decode("utf-8"), v.decode("utf-8")) for n, v in pairs)
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("command header is not valid UTF-8") from exc
    # Content-Length is framing, not a header of the command object
    headers = tuple((n, v) for n, v in headers if n.lower() != "content-length")
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    words = rest.split()
    lw = word.lower()
    try:
        if lw == "auth" and len(words) == 1 and not headers:
            return Auth(words[0])
        if lw == "userauth" and len(words) == 1 and ":" in words[0]:
            user, _, pw = words[0].rpartition(":")
            return UserAuth(user, pw)
        if lw == "event" and len(words) >= 2 and words[0] in EVENT_FORMATS:
            evs, subs = _parse_events(words[1:])
            return Subscribe(words[0], tuple(evs), tuple(subs))
        if lw == "nixevent" and words:
            evs, subs = _parse_events(words)
            return NixEvent(tuple(evs), tuple(subs))
        if lw == "noevents" and not words:
            return NoEvents()
        if lw == "filter" and words:
            if words[0] == "delete":
                if len(words) == 1 or (len(words) == 2 and words[1] == "all"):
                    return FilterDelete()
                h, _, v = rest[len("delete"):].strip().partition(" ")
                return FilterDelete(h, v.strip() or None)
            h, _, v = rest.partition(" ")
            if v:
                return Filter(h, v.strip())
        if lw == "myevents" and len(words) <= 2:
            uuid = fmt = None
            for w in words:
                if w in EVENT_FORMATS:
                    fmt = w
                else:
                    uuid = w
            return MyEvents(uuid, fmt)
        if lw == "divert_events" and len(words) == 1 and words[0] in ("on", "off"):
            return DivertEvents(words[0] == "on")
        if lw == "linger" and not words:
            return Linger()
        if lw == "linger" and len(words) == 1 and words[0].isdigit():
            return Linger(int(words[0]))
        if lw == "nolinger" and not words:
            return NoLinger()
        if lw == "resume" and not words:
            return Resume()
        if lw == "connect" and not words:
            return Connect()
        if lw == "exit" and not words:
            return Exit()
        if lw == "log" and len(words) <= 1:
            return Log(words[0] if words else None)
        if lw == "nolog" and not words:
            return NoLog()
        if lw == "api" and rest:
            return Api(rest)
        if lw == "bgapi" and rest:
            job = None
            for n, v in headers:
                if n.lower() == "job-uuid":
                    job = v
            return BgApi(rest, job_uuid=job)
        if lw == "sendevent" and len(words) == 1:
            return SendEvent(words[0], headers, body)
        if lw == "sendmsg" and len(words) <= 1:
            return SendMsg(words[0] if words else None, headers, body)
    except LocalProtocolError:
        pass  # not representable as a typed command: hand it over raw
    try:
        return RawCommand(line, headers, body)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"malformed command {line[:60]!r}: {exc}") from exc


__all__ = [
    "Command",
    "Auth",
    "UserAuth",
    "Subscribe",
    "NixEvent",
    "NoEvents",
    "Filter",
    "FilterDelete",
    "MyEvents",
    "DivertEvents",
    "Linger",
    "NoLinger",
    "Resume",
    "Connect",
    "Exit",
    "Log",
    "NoLog",
    "Api",
    "BgApi",
    "SendEvent",
    "SendMsg",
    "RawCommand",
    "parse_command",
    "LONG_ARG",
]
