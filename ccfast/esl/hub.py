"""Outbound ESL connections without a task per connection: one epoll set, one trio task.

FreeSWITCH's ``socket`` app opens one TCP connection per caller and keeps it while the caller
waits. Served the usual trio way, each connection costs two tasks (handler and reader), a
nursery and several cancel scopes: kilobytes per waiting caller and tens of microseconds of
scheduling per call. :class:`OutboundHub` instead keeps every caller socket in one
``select.epoll`` set and serves them all from one task that waits on the epoll descriptor itself
(trio's own epoll watches ours). Each wake-up accepts new connections, reads every ready socket,
decodes with the same sans-IO :class:`~ccfast.esl.ClientProtocol`, hands replies to the
connection's FIFO of waiters and events to its handler, synchronously, then writes what the
handlers queued (one ``send`` per connection per wake-up).

Contract:

* ``on_connection(conn)`` is called for each accepted connection; it sets ``conn.handler`` and
  usually posts ``connect``. Handlers and reply callbacks run in the hub's task, in wire order,
  and must not block; an exception they raise is logged and the connection is closed.
* Commands are queued with :meth:`HubConnection.post` (``on_reply(reply_or_exception)``) or
  awaited from any task with :meth:`HubConnection.request`. Replies are FIFO-matched, as
  FreeSWITCH answers a socket's commands in order.
* ``handler(message)`` gets the connection's events and disconnect notices, then ``None`` exactly
  once when the connection ends (peer closed, socket error, protocol error or ``close()``), after
  every pending reply callback failed with :class:`ConnectionLost`.
* Bytes posted outside the hub's task are written at once (non-blocking); what the kernel does not
  take is kept and written when the socket is writable. A connection with more than
  ``MAX_QUEUED`` writes waiting (a peer that reads nothing) is dropped. When the hub stops
  (cancelled), its sockets are closed without calling handlers: the process is going away.
"""

from __future__ import annotations

import logging
import select
import socket
from typing import Any, Callable

import trio

from ._connection import ClientProtocol
from ._commands import Command
from ._events import ApiResponse, ChannelData, CommandReply, DisconnectNotice, Event
from ._link import ConnectionLost, _Fifo, _Waiter, settle
from ._steps import close_step, open_step
from ._throttle import FailureLog
from .errors import ProtocolError

log = logging.getLogger("ccfast.esl.hub")

__all__ = ["OutboundHub", "HubConnection", "ConnectionLost"]

READ_SIZE = 65536
MAX_READY = 512  # sockets handled per wake-up before other trio tasks get a turn
MAX_QUEUED = 1000  # writes waiting for a peer that does not read before it is dropped
_IN = select.EPOLLIN | select.EPOLLRDHUP
_IN_OUT = _IN | select.EPOLLOUT
_REPLIES = (CommandReply, ApiResponse, ChannelData)
_REPLY_TYPES = frozenset(_REPLIES)  # exact types first: no isinstance call for the usual frames


class HubConnection:
    """One caller's outbound socket, served by an :class:`OutboundHub`."""

    __slots__ = ("hub", "sock", "fd", "proto", "pending", "handler", "closed", "peer", "_out", "_blocked")

    def __init__(self, hub: OutboundHub, sock: socket.socket, peer: str) -> None:
        self.hub = hub
        self.sock = sock
        self.fd = sock.fileno()
        self.proto = ClientProtocol(decoder=hub.decoder)
        self.pending = _Fifo()
        self.handler: Callable[[Any], None] | None = None
        self.closed = False
        self.peer = peer
        self._out: list[bytes] = []
        self._blocked = False  # the kernel took only part of our bytes: waiting for EPOLLOUT

    # -- commands ----------------------------------------------------------------------------
    def post(self, command: Command, on_reply: Callable[[Any], Any] | None = None) -> None:
        """Queue ``command``; its reply (or ConnectionLost) goes to ``on_reply``. Raises
        ConnectionLost at once when the connection has ended. An exception ``on_reply`` raises
        is logged and ends the connection (a bug must be seen and must not leave the call half
        served)."""
        if self.closed:
            raise ConnectionLost("connection closed")
        self.pending.append(on_reply)  # registered before the bytes can leave
        self._write(self.proto.send(command))

    async def request(self, command: Command) -> Any:
        """Send ``command`` and wait for its reply (for the rare paths that run in a task)."""
        waiter = _Waiter()
        self.post(command, waiter)
        return await waiter.wait()

    def _settle(self, slot: Any, reply: Any) -> None:
        try:
            settle(slot, reply)
        except Exception as exc:
            self.hub._failures.failed("outbound reply callback", exc)
            self._lost(f"reply callback failed: {exc!r}")

    def close(self) -> None:
        """Write what is queued if the kernel takes it now, then close; idempotent."""
        if self.closed:
            return
        if self._out:
            try:
                self.sock.send(b"".join(self._out))
            except OSError:
                pass
        self._lost("closed locally")

    # -- the hub's side ----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        out = self._out
        out.append(data)
        if len(out) > 1:
            if len(out) > MAX_QUEUED:
                self._lost(f"peer reads nothing ({len(out)} writes queued)")
            return  # already due: flushed at the end of this wake-up or when writable
        if self.hub._in_tick:
            self.hub._dirty.append(self)
        else:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out or self.closed:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(f"send failed: {exc!r}")
            return
        if sent == len(data):
            out.clear()
            if self._blocked:
                self._blocked = False
                self.hub._watch(self, _IN)
            return
        out[:] = [data[sent:]]
        if not self._blocked:
            self._blocked = True
            self.hub._watch(self, _IN_OUT)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"read failed: {exc!r}")
            return
        if not data:
            self._lost("connection closed by peer")
            return
        self.proto.receive_data(data)
        pull = self.proto.pull
        try:
            while (msg := pull()) is not None:
                if type(msg) in _REPLY_TYPES or isinstance(msg, _REPLIES):
                    if self.pending:
                        slot = self.pending.popleft()
                        if slot is not None:
                            self._settle(slot, msg)
                elif isinstance(msg, (Event, DisconnectNotice)) and self.handler is not None:
                    self.handler(msg)
                if self.closed:
                    return
        except ProtocolError as exc:
            self._lost(f"protocol error: {exc}")

    def _lost(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self.hub._remove(self)
        err = ConnectionLost(why)
        pending = self.pending
        while pending:
            self._settle(pending.popleft(), err)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler(None)


class OutboundHub:
    """Listens for FreeSWITCH ``socket`` connections and serves them all from one task."""

    def __init__(self, on_connection: Callable[[HubConnection], None], *, decoder: str = "auto",
                 after_tick: Callable[[], None] | None = None) -> None:
        self.on_connection = on_connection
        self.after_tick = after_tick  # called after each wake-up's work (e.g. to write other links)
        self.decoder = decoder
        self.connections: dict[int, HubConnection] = {}
        self.accepted = 0
        self._epoll: select.epoll | None = None
        self._in_tick = False
        self._dirty: list[HubConnection] = []
        self._failures = FailureLog(log)
        self._watched: dict[int, tuple[Callable[[], None], Callable[[], None]]] = {}

    @property
    def serving(self) -> bool:
        return self._epoll is not None

    def watch(self, fd: int, on_readable: Callable[[], None], on_stop: Callable[[], None]) -> None:
        """Serve another socket's reads from this hub's wake-ups (e.g. a box link, so that its
        replies and events are handled in the same step as the callers'): ``on_readable()`` in
        the hub's step whenever ``fd`` is readable; ``on_stop()`` once, if the hub stops (or
        ``on_readable`` raises) while watching. Only while :attr:`serving`."""
        if self._epoll is None:
            raise RuntimeError("the hub is not serving")
        self._epoll.register(fd, _IN)
        self._watched[fd] = (on_readable, on_stop)

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed); no effect if not watched."""
        if self._watched.pop(fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def _watched_readable(self, fd: int) -> None:
        on_readable, on_stop = self._watched[fd]
        try:
            on_readable()
        except Exception as exc:
            self._failures.failed("watched socket", exc)
            self.unwatch(fd)
            on_stop()

    async def serve(self, host: str = "127.0.0.1", port: int = 8040, *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound port through ``task_status``, serve until cancelled."""
        listener = _listen(host, port)
        epoll = self._epoll = select.epoll()
        lfd = listener.fileno()
        epoll.register(lfd, select.EPOLLIN)
        task_status.started(listener.getsockname()[1])
        connections = self.connections
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll)
                ready = epoll.poll(0, MAX_READY)
                self._in_tick = True
                open_step()  # other links' writers and the dispatcher: after_tick's flush and pass
                try:
                    for fd, mask in ready:
                        if fd == lfd:
                            self._accept(listener)
                            continue
                        conn = connections.get(fd)
                        if conn is None:
                            if fd in self._watched:
                                self._watched_readable(fd)
                            continue
                        try:
                            if mask & select.EPOLLOUT:
                                conn._flush()
                            if mask & ~select.EPOLLOUT and not conn.closed:
                                conn._readable()
                        except Exception as exc:  # a handler's bug ends its call, not the hub
                            self._failures.failed("outbound connection handler", exc)
                            conn._lost(f"handler failed: {exc!r}")
                finally:
                    self._in_tick = False
                    try:
                        self._flush_dirty()
                        if self.after_tick is not None:
                            try:
                                self.after_tick()
                            except Exception as exc:
                                self._failures.failed("outbound hub after_tick", exc)
                    finally:
                        close_step()
        finally:
            for conn in list(connections.values()):
                conn.handler = None
                conn._lost("hub stopped")
            watched, self._watched = self._watched, {}
            self._epoll = None  # not serving from here on: a stopped watcher reads on its own
            for _, on_stop in watched.values():
                on_stop()
            epoll.close()
            listener.close()

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn._flush()
            except Exception as exc:
                self._failures.failed("outbound connection handler", exc)
                conn._lost(f"handler failed: {exc!r}")

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(MAX_READY):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving who is connected
                self._failures.failed("outbound accept", exc)
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = HubConnection(self, sock, f"{addr[0]}:{addr[1]}")
            self.connections[conn.fd] = conn
            self._epoll.register(conn.fd, _IN)
            self.accepted += 1
            try:
                self.on_connection(conn)
            except Exception as exc:
                self._failures.failed("outbound connection handler", exc)
                conn._lost(f"handler failed: {exc!r}")

    def _watch(self, conn: HubConnection, mask: int) -> None:
        if self._epoll is not None and not conn.closed:
            self._epoll.modify(conn.fd, mask)

    def _remove(self, conn: HubConnection) -> None:
        if self.connections.pop(conn.fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(conn.fd)
            except (OSError, ValueError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass


def _listen(host: str, port: int) -> socket.socket:
    family, type_, proto, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
