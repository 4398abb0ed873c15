"""Pieces shared by the trio inbound client and the outbound session.

* :class:`EventQueue` — the bounded buffer between a connection's reader and its consumers.
  The reader never waits on it. **Overflow policy**: when full, the *oldest* queued event is
  dropped to make room (``policy="drop_oldest"``, default: consumers see the freshest state), or
  the new one is (``"drop_newest"``); either way ``dropped`` counts it and ``on_overflow`` is
  called (e.g. to schedule a reconciliation). FreeSWITCH itself drops a listener that falls
  ~500 events behind, so the reader must keep draining the socket whatever consumers do.
* :class:`_Link` — one TCP connection with FIFO reply matching: the waiter is appended and the
  command written under one lock, so replies (which FreeSWITCH sends in command order) are
  matched to commands in order; events are routed separately. When the link drops every pending
  waiter fails with :class:`ConnectionLost`.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

import trio

from . import _connection
from ._commands import Command
from ._events import (ApiResponse, AuthRequest, ChannelData, CommandReply, DisconnectNotice,
                      Event, Message, RudeRejection)
from .errors import ProtocolError


class ConnectionLost(Exception):
    """The ESL connection dropped (or is down) before the command's reply arrived."""


class CommandFailed(Exception):
    """FreeSWITCH answered a command with ``-ERR …`` (``reply`` holds the full text)."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class AuthenticationFailed(Exception):
    """The password / userauth was refused (``-ERR invalid``) or the ACL rejected us."""


class EventQueue:
    """Bounded, non-blocking for the producer; see the module docstring for the policy."""

    def __init__(self, maxlen: int = 10_000, policy: str = "drop_oldest",
                 on_overflow: Callable[[int], Any] | None = None):
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError("policy must be 'drop_oldest' or 'drop_newest'")
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self.policy = policy
        self.on_overflow = on_overflow
        self.dropped = 0
        self.received = 0
        self._q: collections.deque = collections.deque()
        self._wake = trio.Event()
        self._closed = False

    def put(self, item: Any) -> None:
        self.received += 1
        if len(self._q) >= self.maxlen:
            self.dropped += 1
            if self.policy == "drop_newest":
                self._overflow()
                return
            self._q.popleft()
            self._overflow()
        self._q.append(item)
        self._wake.set()

    def _overflow(self) -> None:
        if self.on_overflow is not None:
            try:
                self.on_overflow(self.dropped)
            except Exception:
                pass

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def __len__(self) -> int:
        return len(self._q)

    async def get(self) -> Any:
        """Next item; raises trio.EndOfChannel once closed and empty."""
        while not self._q:
            if self._closed:
                raise trio.EndOfChannel
            await self._wake.wait()
            self._wake = trio.Event()
        return self._q.popleft()

    def get_nowait(self) -> Any:
        if not self._q:
            raise trio.WouldBlock
        return self._q.popleft()

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration


class _Waiter:
    __slots__ = ("event", "result", "error")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def set(self, result: Any) -> None:
        self.result = result
        self.event.set()

    def fail(self, err: BaseException) -> None:
        self.error = err
        self.event.set()

    async def wait(self) -> Any:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return self.result


class _Link:
    """One open ESL stream as a client: FIFO replies, job waiters, events to a handler."""

    def __init__(self, stream: trio.abc.Stream, on_event: Callable[[Event], None],
                 jobs: dict[str, _Waiter], *, decoder: str = "auto"):
        self.stream = stream
        self.proto = _connection.ClientProtocol(decoder=decoder)
        self.on_event = on_event
        self.jobs = jobs
        self.pending: collections.deque[_Waiter] = collections.deque()
        self.lock = trio.Lock()
        self.alive = True
        self.auth_request = trio.Event()
        self.disconnect_notice: DisconnectNotice | None = None
        self.linger_notice: DisconnectNotice | None = None
        self.rude: RudeRejection | None = None
        self.last_rx = trio.current_time()
        self.closed = trio.Event()

    async def send(self, command: Command) -> Message:
        if not self.alive:
            raise ConnectionLost("not connected")
        w = _Waiter()
        data = self.proto.send(command)
        async with self.lock:
            if not self.alive:
                raise ConnectionLost("not connected")
            self.pending.append(w)   # registered before the bytes leave
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.lost(f"send failed: {exc!r}")
        return await w.wait()

    async def send_raw(self, command: Command) -> None:
        """Write a command that gets no reply of its own (none in ESL today; kept for faults)."""
        async with self.lock:
            await self.stream.send_all(self.proto.send(command))

    def lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        err = ConnectionLost(why)
        while self.pending:
            self.pending.popleft().fail(err)
        self.closed.set()

    async def reader(self) -> None:
        """Read until EOF/error; never blocks on consumers."""
        try:
            while True:
                data = await self.stream.receive_some(65536)
                self.last_rx = trio.current_time()
                self.proto.receive_data(data)
                for msg in self.proto.messages():
                    self._route(msg)
                if not data:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.lost(f"read failed: {exc!r}")
            return
        except ProtocolError as exc:
            self.lost(f"protocol error: {exc}")
            return
        self.lost("connection closed by peer")

    def _route(self, msg: Message) -> None:
        if isinstance(msg, Event) and not isinstance(msg, ChannelData):
            if msg.name == "BACKGROUND_JOB":
                w = self.jobs.pop(msg.job_uuid or "", None)
                if w is not None:
                    w.set(msg.body or "")
            self.on_event(msg)
        elif isinstance(msg, (CommandReply, ApiResponse, ChannelData)):
            if self.pending:
                self.pending.popleft().set(msg)
        elif isinstance(msg, AuthRequest):
            self.auth_request.set()
        elif isinstance(msg, DisconnectNotice):
            if msg.disposition == "linger":
                self.linger_notice = msg
                self.on_event(msg)
            else:
                self.disconnect_notice = msg
                self.on_event(msg)
        elif isinstance(msg, RudeRejection):
            self.rude = msg

    async def aclose(self) -> None:
        self.lost("closed locally")
        await trio.aclose_forcefully(self.stream)
