"""Simulated FreeSWITCH events and their wire encodings.

An event is a list of *blocks* (lists of ``(name, raw value)`` pairs) plus an optional body.
Blocks that describe a channel (caller profile, variables) are cached on the channel and shared
between events, so their URL-encoded plain form and their JSON fragment are computed once per
change instead of once per event and subscriber. Values are URL-encoded with the protocol layer's
``url_encode`` (FreeSWITCH's ``switch_url_encode`` rules); a fast path skips values made only of
characters that never need escaping.
"""

from __future__ import annotations

import json
import re
import time

from ccfast.esl._urlcodec import url_encode

_SAFE = re.compile(r"[A-Za-z0-9_./,()\-'!$*~]*\Z")
UNDEF = "_undef_"


_ENC: dict[str, str] = {}     # value -> encoded value (most values repeat: states, uuids, numbers)
_ENC_MAX = 200_000


def enc(value: str) -> str:
    """URL-encode one header value as FreeSWITCH writes it in text/event-plain."""
    e = _ENC.get(value)
    if e is None:
        e = value if _SAFE.match(value) else url_encode(value)
        if len(_ENC) >= _ENC_MAX:
            _ENC.clear()
        _ENC[value] = e
    return e


def line(name: str, value: str) -> bytes:
    """One ``Name: value\n`` line of text/event-plain (``_undef_`` for an empty value)."""
    return f"{name}: {enc(value) if value != '' else UNDEF}\n".encode("ascii")


try:  # the same bytes, made in C
    from ._render import render_line as line  # noqa: F811
except ImportError:  # pragma: no cover - not built
    pass


class Block:
    """An ordered run of headers with cached plain and JSON renderings.

    ``items`` may be given as a function (``src``) when the block's bytes are rendered by
    other means (``plain`` given up front): they are then built only if someone asks (a
    filter, a JSON listener, a test)."""

    __slots__ = ("_items", "_src", "_plain", "_json", "_getter", "_prefix")

    def __init__(self, items: list[tuple[str, str]] | None = None, *, plain: bytes | None = None,
                 src=None, getter=None, prefix: str | None = None):
        self._items = items
        self._src = src
        self._plain = plain
        self._json: str | None = None
        self._getter = getter       # name -> value or None, instead of a scan of the items
        self._prefix = prefix       # every header name of this block starts with it

    def get(self, name: str) -> str | None:
        """The first value of header *name* in this block; None when absent."""
        g = self._getter
        if g is not None:
            return g(name)
        p = self._prefix
        if p is not None and not name.startswith(p):
            return None
        for k, v in self.items:
            if k == name:
                return v
        return None

    @property
    def items(self) -> list[tuple[str, str]]:
        it = self._items
        if it is None:
            it = self._items = self._src()
        return it

    def plain(self) -> bytes:
        p = self._plain
        if p is None:
            p = self._plain = b"".join([line(k, v) for k, v in self.items])
        return p

    def json(self) -> str:
        j = self._json
        if j is None:
            d = json.dumps
            j = self._json = "".join([f"{d(k)}:{d(v)}," for k, v in self.items])
        return j


_ENVELOPE_NAMES = frozenset((
    "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
    "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp", "Event-Calling-File",
    "Event-Calling-Function", "Event-Calling-Line-Number", "Event-Sequence"))


class EnvelopeBlock(Block):
    """An event's envelope, rendered up front; its items are only built if asked for."""

    __slots__ = ("host", "name", "dates", "ts", "calling", "seq", "date_lines")

    def __init__(self, plain: bytes | None, host: "Host", name: str, dates: tuple, ts: int, calling: tuple,
                 seq: int, date_lines: bytes):
        self._plain = plain
        self.date_lines = date_lines
        self._items = None
        self._src = None
        self._json = None
        self._getter = None
        self._prefix = None
        self.host, self.name, self.dates, self.ts, self.calling, self.seq = host, name, dates, ts, calling, seq

    @property
    def items(self) -> list[tuple[str, str]]:
        it = self._items
        if it is None:
            h, calling = self.host, self.calling
            it = self._items = [
                ("Event-Name", self.name), ("Core-UUID", h.core_uuid),
                ("FreeSWITCH-Hostname", h.hostname), ("FreeSWITCH-Switchname", h.hostname),
                ("FreeSWITCH-IPv4", h.ipv4), ("FreeSWITCH-IPv6", h.ipv6),
                ("Event-Date-Local", self.dates[1]), ("Event-Date-GMT", self.dates[2]),
                ("Event-Date-Timestamp", str(self.ts)), ("Event-Calling-File", calling[0]),
                ("Event-Calling-Function", calling[1]), ("Event-Calling-Line-Number", str(calling[2])),
                ("Event-Sequence", str(self.seq))]
        return it

    def plain(self) -> bytes:
        p = self._plain
        if p is None:
            p = self._plain = self.host._render_envelope(self)
        return p

    def get(self, name: str) -> str | None:
        if name == "Event-Name":
            return self.name
        if name in _ENVELOPE_NAMES:
            for k, v in self.items:
                if k == name:
                    return v
        return None


class Host:
    """The identity of the simulated box (the envelope headers)."""

    def __init__(self, core_uuid: str, hostname: str = "sim", ipv4: str = "127.0.0.1",
                 ipv6: str = "::1"):
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.seq = 0
        self._date_cache: tuple[int, str, str] = (-1, "", "")
        self._date_lines: tuple[int, bytes] = (-1, b"")
        self._head = (line("Core-UUID", core_uuid) + line("FreeSWITCH-Hostname", hostname)
                      + line("FreeSWITCH-Switchname", hostname) + line("FreeSWITCH-IPv4", ipv4)
                      + line("FreeSWITCH-IPv6", ipv6))
        self._calling: dict[tuple, bytes] = {}
        self._names: dict[str, bytes] = {}

    def envelope_block(self, name: str, calling: tuple[str, str, int], seq: int | None = None) -> Block:
        """The envelope of :meth:`envelope` (``first=True``) as a pre-rendered block; *seq*: a
        sequence number taken earlier (default: the next one)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        now = time.time()
        sec = int(now)
        dl = self._date_lines
        if dl[0] != sec:
            cur = self.seq
            self.envelope("", calling)   # refresh the date strings (and undo its seq step)
            self.seq = cur
            c = self._date_cache
            dl = self._date_lines = (sec, line("Event-Date-Local", c[1]) + line("Event-Date-GMT", c[2]))
        return EnvelopeBlock(None, self, name, self._date_cache, int(now * 1_000_000), calling, seq, dl[1])

    def _render_envelope(self, e: "EnvelopeBlock") -> bytes:
        name, calling = e.name, e.calling
        nb = self._names.get(name)
        if nb is None:
            nb = self._names[name] = line("Event-Name", name)
        cb = self._calling.get(calling)
        if cb is None:
            cb = self._calling[calling] = (line("Event-Calling-File", calling[0])
                                           + line("Event-Calling-Function", calling[1])
                                           + line("Event-Calling-Line-Number", str(calling[2])))
        return b"%b%b%bEvent-Date-Timestamp: %d\n%bEvent-Sequence: %d\n" % (
            nb, self._head, e.date_lines, e.ts, cb, e.seq)

    def envelope(self, name: str, calling: tuple[str, str, int], *, first: bool = True
                 ) -> list[tuple[str, str]]:
        """``Event-Name`` (when *first*) then Core-UUID … Event-Sequence, in FreeSWITCH order."""
        self.seq += 1
        now = time.time()
        sec = int(now)
        cached = self._date_cache
        if cached[0] != sec:
            lt = time.localtime(sec)
            cached = self._date_cache = (
                sec, time.strftime("%Y-%m-%d %H:%M:%S", lt),
                time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(sec)))
        items = [("Event-Name", name)] if first else []
        items += [
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", cached[1]),
            ("Event-Date-GMT", cached[2]),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", calling[0]),
            ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", str(calling[2])),
            ("Event-Sequence", str(self.seq)),
        ]
        return items


class SimEvent:
    """One event as the simulator fires it; rendered lazily, once per format."""

    __slots__ = ("name", "subclass", "uuid", "blocks", "body", "_plain", "_json", "raw")

    def __init__(self, name: str, blocks: list[Block], *, subclass: str = "",
                 uuid: str = "", body: str | None = None):
        self.name = name
        self.subclass = subclass
        self.uuid = uuid
        self.blocks = blocks
        self.body = body
        self._plain: bytes | None = None
        self._json: bytes | None = None
        self.raw = False

    def headers(self):
        for b in self.blocks:
            yield from b.items

    def get(self, name: str, default: str | None = None) -> str | None:
        for b in self.blocks:
            v = b.get(name)
            if v is not None:
                return v
        return default

    def plain_frame(self) -> bytes:
        f = self._plain
        if f is None:
            parts = [b""]  # the frame's own header, below
            parts += [b.plain() for b in self.blocks]
            if self.body is not None:
                body = self.body.encode("utf-8")
                parts.append(b"Content-Length: %d\n\n" % len(body))
                parts.append(body)
            else:
                parts.append(b"\n")
            parts[0] = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % sum(map(len, parts))
            f = self._plain = b"".join(parts)
        return f

    def json_frame(self) -> bytes:
        f = self._json
        if f is None:
            s = "".join([b.json() for b in self.blocks])
            if self.body is not None:
                s += f'"Content-Length":"{len(self.body.encode())}","_body":{json.dumps(self.body)},'
            inner = ("{" + s[:-1] + "}").encode("utf-8")
            f = self._json = (b"Content-Length: %d\nContent-Type: text/event-json\n\n"
                              % len(inner)) + inner
        return f


NEED_ENVELOPE = object()   # chan_header: the value is in the envelope, which is not built yet


def chan_header(name: str, ev_name: str, ch, pre, post, with_vars: bool):
    """Header *name* of the channel event ``ev_name`` on *ch* (envelope, [pre], the channel's
    snapshot, [post]) without building the event: the value, None when absent, or
    ``NEED_ENVELOPE`` for an envelope header other than ``Event-Name`` (Event-Sequence, dates:
    only the built event has them). Same answers as ``ChanEvent.get``."""
    if name in _ENVELOPE_NAMES:
        return ev_name if name == "Event-Name" else NEED_ENVELOPE
    if pre:
        for k, v in pre:
            if k == name:
                return v
    if name.startswith("variable_"):
        v = ch.vars.get(name[9:]) if with_vars else None
    else:
        v = ch.state_value(name)
        if v is None:
            if name.startswith("Caller-"):
                v = ch.profile_block().get(name)
            elif name.startswith("Other-"):
                ob = ch.other_block()
                v = ob.get(name) if ob is not None else None
    if v is None and post:
        for k, x in post:
            if k == name:
                return x
    return v


class ChanEvent(SimEvent):
    """A channel event (envelope, [pre], the channel's snapshot, [post]) whose blocks are only
    assembled when someone takes it: most listeners' filters decide from a few headers, looked
    up here straight from the channel. Used synchronously by the switch (the channel does not
    change between firing and offering)."""

    __slots__ = ("ch", "env", "pre", "post", "with_vars", "_blocks")

    def __init__(self, name: str, ch, env: EnvelopeBlock, pre, post, with_vars: bool):
        self.name = name
        self.subclass = ""
        self.uuid = ch.uuid
        self.body = None
        self._plain = None
        self._json = None
        self.raw = False
        self.ch, self.env, self.pre, self.post, self.with_vars = ch, env, pre, post, with_vars
        self._blocks = None

    @property
    def blocks(self) -> list[Block]:
        b = self._blocks
        if b is None:
            b = [self.env]
            if self.pre:
                b.append(Block(self.pre))
            b += self.ch.snapshot_blocks(with_vars=self.with_vars)
            if self.post:
                b.append(Block(self.post))
            self._blocks = b
        return b

    def plain_frame(self) -> bytes:
        """The bytes of ``SimEvent.plain_frame`` over :attr:`blocks`, from the channel's cached
        parts without assembling the blocks."""
        f = self._plain
        if f is None:
            ch = self.ch
            parts = [b"", self.env.plain()]
            if self.pre:
                parts.append(b"".join([line(k, v) for k, v in self.pre]))
            parts.append(ch.state_plain())
            parts.append(ch._profile_plain("Caller-"))   # = profile_block().plain(), without the block
            if ch.other is not None:
                parts.append(ch.other_block().plain())
            if self.with_vars:
                parts.append(ch.vars_plain())
            if self.post:
                parts.append(b"".join([line(k, v) for k, v in self.post]))
            parts.append(b"\n")
            parts[0] = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % sum(map(len, parts))
            f = self._plain = b"".join(parts)
        return f

    def get(self, name: str, default: str | None = None) -> str | None:
        if self._blocks is not None:
            return SimEvent.get(self, name, default)
        v = chan_header(name, self.name, self.ch, self.pre, self.post, self.with_vars)
        if v is NEED_ENVELOPE:
            v = self.env.get(name)
        return default if v is None else v
