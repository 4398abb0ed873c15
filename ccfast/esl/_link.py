"""Pieces shared by the trio inbound client and the outbound session.

* :class:`EventQueue` — the bounded buffer between a connection's reader and its consumers.
  The reader never waits on it. **Overflow policy**: when full, the *oldest* queued event is
  dropped to make room (``policy="drop_oldest"``, default: consumers see the freshest state), or
  the new one is (``"drop_newest"``); either way ``dropped`` counts it and ``on_overflow`` is
  called (e.g. to schedule a reconciliation). FreeSWITCH itself drops a listener that falls
  ~500 events behind, so the reader must keep draining the socket whatever consumers do.
* :class:`_Link` — one TCP connection with FIFO reply matching: the reply slot (a waiter, a
  callback or ``None``, see :func:`settle`) is appended and the command's bytes queued in one
  synchronous step, so replies (which FreeSWITCH sends in command order) are matched to commands
  in order; queued commands are written together (one syscall per scheduler tick, see the class).
  Events are routed separately. When the link drops every pending slot gets
  :class:`ConnectionLost`.
"""

from __future__ import annotations

import collections
import itertools
import os
from typing import Any, Callable

import trio

from . import _connection
from ._commands import Command
from ._steps import STEPS, close_step, open_step
from ._events import (ApiResponse, AuthRequest, ChannelData, CommandReply, DisconnectNotice,
                      Event, Message, RudeRejection)
from .errors import ProtocolError


class Encoded(Command):
    """A command already turned into its wire bytes (built once, e.g. one event fired on several
    boxes). Whoever builds it guarantees the ESL framing (``Encoded.frame``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self) -> bytes:
        return self.data

    @staticmethod
    def frame(line: str, headers: list[tuple[str, str]]) -> "Encoded":
        """``line`` + ``Name: value`` lines + blank line. Names must be single words without
        ``:``; values without newlines (the caller has checked both)."""
        parts = [line, "\n"]
        for name, value in headers:
            parts += (name, ": ", value, "\n")
        parts.append("\n")
        return Encoded("".join(parts).encode("utf-8"))

    def __repr__(self) -> str:
        return f"Encoded({self.data[:40]!r})"


class ConnectionLost(Exception):
    """The ESL connection dropped (or is down) before the command's reply arrived."""


class CommandFailed(Exception):
    """FreeSWITCH answered a command with ``-ERR …`` (``reply`` holds the full text)."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


class AuthenticationFailed(Exception):
    """The password / userauth was refused (``-ERR invalid``) or the ACL rejected us."""


class _Fifo:
    """A FIFO for the reply slots of a waiting caller's connection (``hub.HubConnection``, one per
    caller): a ``collections.deque`` costs ~600 bytes even when empty (one 64-slot block); this
    is a list plus a head index (compacted as it drains), ~60 bytes when empty."""

    __slots__ = ("_items", "_head")

    def __init__(self) -> None:
        self._items: list = []
        self._head = 0

    def append(self, item: Any) -> None:
        self._items.append(item)

    def popleft(self) -> Any:
        items, head = self._items, self._head
        if head >= len(items):
            raise IndexError("pop from an empty FIFO")
        item = items[head]
        items[head] = None
        head += 1
        if head >= len(items):
            items.clear()
            head = 0
        elif head >= 64 and head * 2 >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head


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


def settle(slot: Any, reply: Any) -> None:
    """Hand a reply (or the link's failure) to one slot of a reply FIFO: ``None`` (nobody wants
    it), a :class:`_Waiter`, or a bare ``on_reply`` callable — fire-and-forget commands (many per
    call) queue their callback itself rather than a waiter around it. A bare callback's exception
    propagates: each reader decides what it means."""
    if type(slot) is _Waiter:
        if isinstance(reply, BaseException):
            slot.fail(reply)
        else:
            slot.set(reply)
    elif slot is not None:
        slot(reply)


class _Waiter:
    """The reply slot of one command (or one bgapi job).

    ``wait()`` returns the reply or raises the failure. ``on_reply`` (optional) is called with the
    reply or the exception instead of anyone waiting: fire-and-forget commands use it to count
    failures. The trio.Event is only created when somebody actually waits.
    """

    __slots__ = ("_event", "done", "result", "error", "on_reply")

    def __init__(self, on_reply: Callable[[Any], Any] | None = None) -> None:
        self._event: trio.Event | None = None
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.on_reply = on_reply

    def set(self, result: Any) -> None:
        if self.done:
            return
        self.result = result
        self.done = True
        if self._event is not None:
            self._event.set()
        if self.on_reply is not None:
            try:
                self.on_reply(result)
            except Exception:  # a counter callback must never break the reader
                pass

    def fail(self, err: BaseException) -> None:
        if self.done:
            return
        self.error = err
        self.done = True
        if self._event is not None:
            self._event.set()
        if self.on_reply is not None:
            try:
                self.on_reply(err)
            except Exception:
                pass

    async def wait(self) -> Any:
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        if self.error is not None:
            raise self.error
        return self.result


WRITE_TIMEOUT = 30.0  # a peer that has taken none of our bytes for this long is dropped


class _Link:
    """One open ESL stream as a client: FIFO replies, job waiters, events to a handler.

    Writing: every command is *queued* (its bytes and its reply waiter appended in the same
    synchronous step, so replies stay FIFO-matched) and written by whoever flushes next; all
    commands queued meanwhile go out in one ``send_all`` (one syscall for a whole scheduler
    tick's commands). With a :meth:`writer` task running (the inbound link) the writer flushes;
    without one (outbound sessions) :meth:`send` flushes inline. :meth:`post` queues a command
    without waiting for its reply (fire-and-forget; the reply is still consumed in order).
    """

    def __init__(self, stream: trio.abc.Stream, on_event: Callable[[Event], None],
                 jobs: dict[str, _Waiter], *, decoder: str = "auto"):
        self.stream = stream
        self.proto = _connection.ClientProtocol(decoder=decoder)
        self.on_event = on_event
        # after each chunk read and routed; default: write what the replies' callbacks queued
        self.after_read: Callable[[], None] | None = None
        self.jobs = jobs
        self.pending: collections.deque = collections.deque()  # one per link: C speed over size
        self.alive = True
        self.auth_request = trio.Event()
        self.disconnect_notice: DisconnectNotice | None = None
        self.linger_notice: DisconnectNotice | None = None
        self.rude: RudeRejection | None = None
        self.last_rx = trio.current_time()
        self.closed = trio.Event()
        self._out: list[bytes] = []
        self._flushing = False
        self._writer_wake: trio.Event | None = None  # set while a writer task runs
        self._writer_armed = False  # _writer_wake was set since the writer last woke
        self._reactor_wake: trio.Event | None = None  # set while a reactor reads this link
        self.writes = 0  # send_all calls (each carries one or more commands)
        self.commands = 0

    def post(self, command: Command, on_reply: Callable[[Any], Any] | None = None) -> None:
        """Queue ``command`` and its reply slot; returns at once (ConnectionLost when down).
        ``on_reply(reply_or_exception)`` (optional) is called from the reader; an exception it
        raises is swallowed (it must never break the link).

        The bytes leave with the next flush: at once through the writer task when one runs,
        else with the next :meth:`send`/:meth:`flush` on this link."""
        if not self.alive:
            raise ConnectionLost("not connected")
        # an Encoded command is its bytes (the protocol's checks concern closed links and exit)
        data = command.data if type(command) is Encoded else self.proto.send(command)
        self.pending.append(on_reply)  # registered before the bytes can leave
        self._out.append(data)
        self.commands += 1
        self._due()

    def post_many(self, commands: list[bytes], on_reply: Callable[[Any], Any] | None = None) -> None:
        """:meth:`post` of several already encoded commands (whole frames: the caller guarantees
        the framing), each with its own reply slot ``on_reply``."""
        if not self.alive:
            raise ConnectionLost("not connected")
        self.pending.extend(itertools.repeat(on_reply, len(commands)))
        self._out.extend(commands)
        self.commands += len(commands)
        self._due()

    def _due(self) -> None:
        """Commands were queued: wake the writer task (or, inside a hot-path step, let the
        step's end decide)."""
        if self._writer_wake is not None and not self._writer_armed:
            self._writer_armed = True  # one wake-up per batch of commands, not one per command
            if STEPS.depth:
                STEPS.held.append(self._release_writer)  # the step's closing flush may write them
            else:
                self._writer_wake.set()

    def _release_writer(self) -> None:
        """End of the step that posted: wake the writer only for what is still queued."""
        if self._writer_wake is None:
            return
        if self._out and self.alive:
            self._writer_wake.set()
        else:
            self._writer_armed = False

    async def send(self, command: Command) -> Message:
        """Queue ``command``, make sure it is written, return its reply."""
        w = _Waiter()
        self.post(command, w)
        if self._writer_wake is None:
            await self.flush()
        return await w.wait()

    async def send_many(self, commands: list[Command]) -> list[Message]:
        """Pipeline: all commands written together (one syscall), then every reply in order.

        FreeSWITCH runs a socket's commands in order, so this is what sending them one by one
        does, minus the round trips. ConnectionLost if the link drops before the last reply."""
        waiters = [_Waiter() for _ in commands]
        for command, w in zip(commands, waiters):
            self.post(command, w)
        if self._writer_wake is None:
            await self.flush()
        return [await w.wait() for w in waiters]

    async def flush(self) -> None:
        """Write everything queued, in order. One flusher at a time: a caller that finds a
        flush running returns at once and its bytes ride along (the flusher loops until the
        queue is empty). The write is shielded from the caller's cancellation — a command cut
        in half would corrupt the stream for every later one — and bounded by WRITE_TIMEOUT."""
        if self._flushing:
            return
        self._flushing = True
        try:
            with trio.CancelScope(shield=True) as scope:
                while self._out and self.alive:
                    out = self._out
                    data = out[0] if len(out) == 1 else b"".join(out)
                    out.clear()
                    self.writes += 1
                    scope.deadline = trio.current_time() + WRITE_TIMEOUT  # per write, not per flush
                    await self.stream.send_all(data)
            if scope.cancelled_caught:
                await self._drop(f"peer took no data for {WRITE_TIMEOUT:.0f} s")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self._drop(f"send failed: {exc!r}")
        finally:
            self._flushing = False

    def flush_nowait(self) -> None:
        """Write what is queued now, without waiting: one non-blocking ``send`` of everything
        (the bytes leave in this scheduler step instead of when the writer task next runs).
        Whatever the kernel does not take, or a flush already in progress, is left to the
        writer task, in order. Only with a writer task running (the inbound link). Never raises."""
        out = self._out
        if not out or self._flushing or not self.alive or self._writer_wake is None:
            return  # without a writer task the owner flushes (a remainder would be stranded)
        sock = getattr(self.stream, "socket", None)
        if sock is None:  # not a socket (tests' memory streams): the writer task writes
            self._writer_armed = True
            self._writer_wake.set()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        try:
            sent = os.write(sock.fileno(), data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # the writer task meets the error and drops the link
        out.clear()
        self.writes += 1
        if sent < len(data):
            out.append(data[sent:])
            if self._writer_wake is not None:
                self._writer_wake.set()

    async def _drop(self, why: str) -> None:
        """Lost on our side: also close the stream, so the reader ends and the owner of the
        link notices (the inbound client then reconnects) instead of a half-dead link that
        still reads events but refuses every command."""
        self.lost(why)
        await trio.aclose_forcefully(self.stream)

    async def writer(self) -> None:
        """Flush whenever commands are queued, until the link is lost (run it in the link's
        nursery): commands posted during one scheduler tick share one write."""
        self._writer_wake = wake = trio.Event()
        try:
            while self.alive:
                await wake.wait()
                self._writer_wake = wake = trio.Event()
                self._writer_armed = False
                await self.flush()
        finally:
            self._writer_wake = None

    async def send_raw(self, command: Command) -> None:
        """Write a command that gets no reply of its own (none in ESL today; kept for faults)."""
        self._out.append(self.proto.send(command))
        await self.flush()

    def lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self._out.clear()
        if self._writer_wake is not None:
            self._writer_wake.set()  # let the writer task end
        err = ConnectionLost(why)
        while self.pending:
            self._settle(self.pending.popleft(), err)
        self.closed.set()
        if self._reactor_wake is not None:  # the reader waits in _read_in: let it end
            self._reactor_wake.set()

    @staticmethod
    def _settle(slot: Any, reply: Any) -> None:
        try:
            settle(slot, reply)
        except Exception:  # a fire-and-forget callback must never break the reader
            pass

    async def reader(self, reactor: Any = None) -> None:
        """Read until EOF/error; never blocks on consumers.

        ``reactor`` (optional, e.g. the :class:`~ccfast.esl.hub.OutboundHub`): while it is
        serving, this link's socket is read from the reactor's own epoll wake-ups — in the same
        scheduler step as the callers' sockets — instead of by this task (which then only waits
        for the link's end or the reactor's stop, and reads on its own again after a stop)."""
        sock = getattr(self.stream, "socket", None)
        # a socket stream is read straight from its descriptor: wait until readable, then one
        # read (the stream's receive_some tries a read first, which fails after every drained
        # chunk, and adds a conflict check and a cancel scope per read)
        fd = sock.fileno() if isinstance(self.stream, trio.SocketStream) and sock is not None else -1
        receive = self.stream.receive_some
        try:
            while self.alive:
                if fd >= 0 and reactor is not None and reactor.serving:
                    await self._read_in(reactor, fd)
                    continue
                if fd >= 0:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = os.read(fd, 65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                else:
                    data = await receive(65536)
                open_step()  # wake-ups the callbacks ask for wait for after_read's flush
                try:
                    self._take(data)
                finally:
                    close_step()
                if not data:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.lost(f"read failed: {exc!r}")
            return
        except ProtocolError as exc:
            self.lost(f"protocol error: {exc}")
            return
        self.lost("connection closed by peer")

    def _take(self, data: bytes) -> None:
        """One chunk read: decode, route every message, then ``after_read`` (or a flush)."""
        self.last_rx = trio.current_time()
        self.proto.receive_data(data)
        pull, route = self.proto.pull, self._route
        while (msg := pull()) is not None:
            route(msg)
        if self.after_read is not None:
            self.after_read()
        else:
            self.flush_nowait()  # commands the replies' callbacks queued leave now

    async def _read_in(self, reactor: Any, fd: int) -> None:
        """Let ``reactor`` read this link until the link ends or the reactor stops."""
        wake = self._reactor_wake = trio.Event()

        def readable() -> None:  # in the reactor's step
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.lost(f"read failed: {exc!r}")
                return
            try:
                self._take(data)
            except ProtocolError as exc:
                self.lost(f"protocol error: {exc}")
                return
            if not data:
                self.lost("connection closed by peer")

        reactor.watch(fd, readable, wake.set)
        try:
            await wake.wait()
        finally:
            self._reactor_wake = None
            reactor.unwatch(fd)

    def _route(self, msg: Message) -> None:
        t = type(msg)
        if t is CommandReply or t is ApiResponse:  # most frames: exact types, no isinstance chain
            if self.pending:
                slot = self.pending.popleft()
                if type(slot) is _Waiter:
                    slot.set(msg)
                elif slot is not None:
                    try:
                        slot(msg)
                    except Exception:  # a fire-and-forget callback must never break the reader
                        pass
        elif isinstance(msg, Event) and not isinstance(msg, ChannelData):
            if msg.name == "BACKGROUND_JOB":
                w = self.jobs.pop(msg.job_uuid or "", None)
                if w is not None:
                    w.set(msg.body or "")
            self.on_event(msg)
        elif isinstance(msg, (CommandReply, ApiResponse, ChannelData)):
            if self.pending:
                self._settle(self.pending.popleft(), msg)
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
