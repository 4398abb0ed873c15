"""The callers' ``socket`` connections without a trio task per connection.

Each simulated caller opens one TCP connection to the dispatcher (FreeSWITCH's ``socket`` app).
Served the usual trio way that is a task for the reader, one for the writer, a nursery, cancel
scopes and a task switch for every write. :class:`SocketHub` keeps every caller socket in one
``select.epoll`` set, served by the scheduler's task (``Scheduler.io``): each turn completes
connects, reads every ready socket and runs its commands synchronously
(:meth:`EslConnection.dispatch`), between the timers due. What the switch queues for these
sockets (replies, events, notices) is written once per turn, one ``send`` per connection.

Same bytes and same order per connection as the task-per-connection transport of
:class:`~ccfast.sim.server.EslConnection` (which inbound connections, and callers when a test
injects reply delays, still use).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import _socket
from typing import TYPE_CHECKING

import trio

from ccfast import esl

from .server import EslConnection

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .core import Simulator
    from .switch import CallerSpec

log = logging.getLogger("ccfast.sim")

READ_SIZE = 65536
MAX_READY = 512
_IN = select.EPOLLIN | select.EPOLLRDHUP
_CONNECTING = select.EPOLLOUT
_IN_OUT = _IN | select.EPOLLOUT
_SOFT = (BlockingIOError, InterruptedError)


class HubConnection(EslConnection):
    """A caller's outbound socket served by the :class:`SocketHub` (no task of its own)."""

    _tasks = False

    def __init__(self, sim: "Simulator", hub: "SocketHub", sock: socket.socket, *,
                 channel: "Channel | None" = None, spec: "CallerSpec | None" = None,
                 target: tuple[str, int] | None = None, peer: str = ""):
        if channel is not None:     # a caller's outbound socket (we connect)
            mode, _, _ = spec.socket_arg.partition(" ")
            super().__init__(sim, None, channel=channel, socket_mode="async" if mode == "async" else "static",
                             control="full" if "full" in spec.socket_arg else "single-channel",
                             peer=f"socket:{channel.uuid}")
        else:                       # an inbound ESL client (it connected to us)
            super().__init__(sim, None, peer=peer)
        self.hub = hub
        self.sock = sock
        self.fd = sock.fileno()
        self.spec = spec
        self.target = target
        self.connecting = channel is not None
        self.out: list[bytes] = []
        self.blocked = False          # the kernel took part of our bytes: waiting for EPOLLOUT
        self.finished = False
        self.first_timer = None
        self.queued = False           # in the hub's list of connections to write
        self._delayed = False         # faults.reply_delay: the next command waited its delay
        self._waiting = False         # a reply-delay or stall timer is pending

    # -- output (replaces the writer task) -------------------------------------------------
    def push(self, data: bytes, event: bool = False) -> None:
        if self.closed:
            return
        self.out.append(data)
        if event:
            self.events_sent += 1
            # FreeSWITCH drops a listener whose queue of events not yet written grows past the
            # limit: here events wait for the end of the turn anyway, so only those queued while
            # the kernel refuses more bytes (the client does not read) count
            if self.blocked:
                self._lag += 1
            if self._lag > self.sim.max_lag:
                self.sim.stats["listeners_dropped"] += 1
                log.warning("dropping listener %s: %d events behind", self.peer, self._lag)
                self.close()
                return
        if not self.queued:
            self.hub.mark(self)

    def send_garbage(self, data: bytes) -> None:
        self.out.append(data)
        self.hub.mark(self)

    def close(self) -> None:
        """Close after what is already queued is written."""
        if not self.closed:
            self.closed = True
            self.hub.mark(self)

    def abort(self) -> None:
        self.closed = True
        self.out.clear()
        self.hub.finish(self)

    def _api_done(self) -> None:
        # the task transport pushes the response when its reader task next runs: after the
        # scheduler's current batch; so does this one
        self.sw.sched.call_soon(self._api_resume)

    def _api_resume(self) -> None:
        w = self._api_wait
        if w is None or self.finished:
            return
        self._api_wait = None
        self.push(esl.write_api_response(w[1][0]))
        self.process()

    # -- input -------------------------------------------------------------------------------
    def process(self) -> None:
        """Run the commands buffered so far (stops while a blocking api runs, and honours the
        test faults: a reply delay before each command, stalled reading)."""
        if self._waiting or self.finished:
            return
        proto = self.proto
        faults = self.faults
        try:
            while not self.closed and self._api_wait is None:
                if faults._stall is not None and faults.stalled():
                    self._wait(0.01)
                    return
                if faults.reply_delay and not self._delayed:
                    if proto.buffered_command():
                        self._delayed = True
                        self._wait(faults.reply_delay)
                    return
                cmd = proto.next_command()
                if cmd is None:
                    return
                self._delayed = False
                self.dispatch(cmd)
        except esl.ProtocolError as exc:
            log.info("closing %s: %s", self.peer, exc)
            self.close()

    def _wait(self, delay: float) -> None:
        self._waiting = True
        self.sw.later(delay, self._waited)

    def _waited(self) -> None:
        self._waiting = False
        self.process()

    def _do_connect(self) -> None:
        super()._do_connect()
        t = self.first_timer
        if t is not None:
            self.first_timer = None
            t.cancel()

    def first_command_timeout(self) -> None:
        """FreeSWITCH waited too long for ``connect``: notice, close; the channel stays."""
        if not self.connected and not self.closed:
            self.push(esl.write_disconnect_notice(controlled_session_uuid=self.channel.uuid,
                                                  disposition="disconnect"))
            self.close()


class SocketHub:
    """All callers' sockets in one epoll set, served by :meth:`run` (one trio task)."""

    def __init__(self, sim: "Simulator"):
        self.sim = sim
        self.ep = select.epoll()
        self.conns: dict[int, HubConnection] = {}
        self.fd = self.ep.fileno()
        self.sched = sim.switch.sched
        self.dirty: list[HubConnection] = []
        self._flush_asked = False
        self.writes = 0             # send() calls, and what they carried (statistics)
        self.bytes_written = 0
        self.bytes_to_callers = 0   # of which to the callers' outbound sockets (the rest: inbound clients)
        self.reads = 0

    # -- inbound clients -------------------------------------------------------------------------
    def adopt(self, sock: socket.socket, peer: str) -> HubConnection:
        """Serve an accepted inbound ESL client: auth request, then its commands."""
        sock.setblocking(False)
        conn = HubConnection(self.sim, self, sock, peer=peer)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _IN)
        conn.push(esl.write_auth_request())
        return conn

    # -- connecting ----------------------------------------------------------------------------
    def dial(self, ch: "Channel", spec: "CallerSpec", target: tuple[str, int]) -> None:
        """Start the caller's TCP connection (non-blocking); the rest happens in :meth:`run`."""
        # the C socket type: socket.socket's Python wrapper costs a few microseconds per call
        # in __init__ and close, and nothing here needs its extras (makefile, context manager)
        sock = _socket.socket(socket.AF_INET6 if ":" in target[0] else socket.AF_INET,
                              socket.SOCK_STREAM | socket.SOCK_NONBLOCK)   # non-blocking from the start
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(target)
        conn = HubConnection(self.sim, self, sock, channel=ch, spec=spec, target=target)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.sim._socket_failed(ch)
            return
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _CONNECTING)
        if err == 0:
            self._connected(conn)

    def _connected(self, conn: HubConnection, ev: int = 0) -> None:
        err = 0
        if ev & (select.EPOLLERR | select.EPOLLHUP) or not ev:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or (ev & select.EPOLLHUP)
        ch = conn.channel
        if err:
            self._drop(conn)
            self.sim._socket_failed(ch)
            return
        if not ch.alive:
            self._drop(conn)
            return
        conn.connecting = False
        self.ep.modify(conn.fd, _IN)
        self.sim._socket_connected(ch, conn, conn.spec, conn.target)
        sw = self.sim.switch
        conn.first_timer = sw.later(sw.t.first_command_timeout, conn.first_command_timeout)
        if conn.proto is not None and conn.out:
            self.mark(conn)

    def _drop(self, conn: HubConnection) -> None:
        self.conns.pop(conn.fd, None)
        conn.sock.close()   # also leaves the epoll set (the descriptor is not shared)

    # -- output ----------------------------------------------------------------------------------
    def mark(self, conn: HubConnection) -> None:
        """``conn`` has bytes to write (or is closing): written at the end of this batch."""
        conn.queued = True
        self.dirty.append(conn)
        if not self.sched.in_batch and not self._flush_asked:
            self._flush_asked = True    # a write from another task: the scheduler's next turn
            self.sched.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_asked = False
        while self.dirty:
            dirty = self.dirty
            self.dirty = []
            self._flush(dirty)

    def _flush(self, dirty: list) -> None:
        for conn in dirty:
            conn.queued = False
            if conn.finished or conn.connecting:
                continue
            if conn.out and not conn.blocked:
                self._write(conn)
            if conn.closed and not conn.out and not conn.finished:
                self.finish(conn)

    def _write(self, conn: HubConnection) -> None:
        out = conn.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        conn._lag = 0
        self.writes += 1
        self.bytes_written += len(data)
        if conn.outbound:
            self.bytes_to_callers += len(data)
        try:
            n = conn.sock.send(data)
        except _SOFT:
            n = 0
        except OSError:
            conn.closed = True
            self.finish(conn)
            return
        if n < len(data):
            out.append(data[n:])
            conn.blocked = True
            self.ep.modify(conn.fd, _IN_OUT)

    def finish(self, conn: HubConnection) -> None:
        """The connection is over: close the socket, then what the task transport does after
        its reader and writer stopped (detach, socket_closed)."""
        if conn.finished:
            return
        conn.finished = True
        conn.closed = True
        if conn.first_timer is not None:
            conn.first_timer.cancel()
        self._drop(conn)
        conn._detach()
        conn._on_closed()

    # -- driven by the scheduler's task (Scheduler.io) ----------------------------------------
    def wait(self, timeout: float) -> bool:
        """Block up to *timeout* seconds until a socket is ready (``Scheduler.io_block``). What
        is ready is served by the next :meth:`poll`, which asks again: the timers that run in
        between may close sockets and reuse their numbers."""
        return bool(self.ep.poll(timeout, 1))

    def poll(self) -> None:
        """Serve the sockets that are ready now (connects completed, bytes to read, writable)."""
        ready = self.ep.poll(0, MAX_READY)
        for fd, ev in ready:
            conn = self.conns.get(fd)
            if conn is not None:
                self._ready(conn, ev)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.sock.close()
        self.conns.clear()
        self.ep.close()

    def _ready(self, conn: HubConnection, ev: int) -> None:
        if conn.connecting:
            self._connected(conn, ev)
            return
        if ev & select.EPOLLOUT and conn.blocked:
            conn.blocked = False
            self.ep.modify(conn.fd, _IN)
            if conn.out:
                self._write(conn)
            if conn.finished:
                return
            if conn.closed and not conn.out:
                self.finish(conn)
                return
        if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
            if conn.closed:
                # closing (output still blocked): what arrives now is not read as commands, as the
                # task transport stops reading; drained so epoll does not report it again
                try:
                    data = conn.sock.recv(READ_SIZE)
                except _SOFT:
                    return
                except OSError:
                    data = b""
                if not data:
                    conn.out.clear()
                    self.finish(conn)
                return
            self.reads += 1
            try:
                data = conn.sock.recv(READ_SIZE)
            except _SOFT:
                return
            except OSError:
                conn.closed = True
                conn.out.clear()
                self.finish(conn)
                return
            if not data:
                conn.close()   # peer closed: write what is queued, then end
                self.mark(conn)
                return
            conn.proto.feed(data)
            conn.process()
