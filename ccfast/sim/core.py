"""The :class:`Simulator`: listener for inbound ESL, dialer for simulated callers, generator.

Embedded use::

    async with open_simulator(password="ClueCon", timings=Timings.fast()) as sim:
        port = sim.port                       # inbound ESL port (0 → chosen by the OS)
        sim.dial_to = ("127.0.0.1", 8040)     # where callers' `socket` app connects
        rec = sim.spawn_caller(CallerSpec(queue="support@default", patience=5))
        await rec.done.wait()

or ``port = await nursery.start(sim.serve)``.
"""

from __future__ import annotations

import functools
import itertools
import socket
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import trio

from . import apps
from .profiles import AgentProfile, ProfileTable
from .records import CallRecord
from .hub import SocketHub
from .server import EslConnection, Faults, acl_allows
from .switch import CallerSpec, Switch, Timings
from ccfast import esl

log = logging.getLogger("ccfast.sim")


class Simulator:
    """A simulated FreeSWITCH box speaking the Event Socket protocol."""

    def __init__(self, *, password: str = "ClueCon", host: str = "127.0.0.1", port: int = 0,
                 timings: Timings | None = None, profiles: ProfileTable | dict | None = None,
                 default_profile: AgentProfile | None = None, seed: int | None = None,
                 dial_to: tuple[str, int] | None = None, acl: list[str] | None = None,
                 users: dict[str, str] | None = None, max_lag: int = 500,
                 history: bool = False, park_delay: float | None = None,
                 hostname: str = "sim", hub: bool = True, timer_resolution: float = 0.0,
                 io_block: float = 0.0):
        if isinstance(profiles, dict):
            profiles = ProfileTable(profiles, default_profile)
        elif profiles is None:
            profiles = ProfileTable(default=default_profile)
        self.password = password
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.switch = Switch(timings=timings, profiles=profiles, seed=seed, hostname=hostname,
                             history=history)
        # > 0: timers due within this many seconds of each other run in one scheduler turn
        self.switch.sched.resolution = timer_resolution
        self.switch.sched.io_block = io_block     # see Scheduler.io_block (used with the hub)
        self.dial_to = dial_to
        self.acl = acl
        self.users = dict(users or {})
        self.max_lag = max_lag
        self.park_delay = (self.switch.t.tick / 2) if park_delay is None else park_delay
        # live connections, in the order they came (a dict as an ordered set: a caller's socket
        # leaves it in O(1) when it closes)
        self.connections: dict[EslConnection, None] = {}
        self.faults = Faults()          # defaults copied into each new connection
        self.refuse_connections = False
        self.stats = {"listeners_dropped": 0, "inbound_connections": 0, "socket_connections": 0,
                      "events_filtered": 0}
        self._nursery: trio.Nursery | None = None
        self._seq = itertools.count(1)
        self._use_hub = hub     # callers' sockets in one epoll task (False: two trio tasks each)
        self.hub: SocketHub | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the simulator; ``task_status.started(port)`` once the inbound port listens."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            sw = self.switch
            sw.started = trio.current_time()
            sw.spawn = nursery.start_soon
            sw.dialer = self._dial
            sw.socket_app = functools.partial(apps.start_socket, self)  # the `socket` dialplan app
            if self._use_hub:
                self.hub = SocketHub(self)
                sw.sched.io = self.hub
            nursery.start_soon(self._run_sched)
            listeners = await trio.open_tcp_listeners(self.requested_port, host=self.host)
            self.port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, self._handle_inbound, listeners)
            task_status.started(self.port)

    async def _run_sched(self) -> None:
        try:
            await self.switch.sched.run()
        finally:
            if self.hub is not None:
                self.hub.close()

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
        except OSError:
            return
        if self.refuse_connections:
            await trio.aclose_forcefully(stream)
            return
        if not acl_allows(self.acl, peer[0]):
            try:
                await stream.send_all(esl.write_rude_rejection())
            finally:
                await trio.aclose_forcefully(stream)
            return
        self.stats["inbound_connections"] += 1
        if self.hub is not None:
            # served by the reactor task like the callers' sockets: its writes leave at the end
            # of every scheduler turn, so a busy turn never counts as the client lagging
            sock = socket.socket(fileno=stream.socket.detach())
            self.connections[self.hub.adopt(sock, f"{peer[0]}:{peer[1]}")] = None
            return
        conn = EslConnection(self, stream, peer=f"{peer[0]}:{peer[1]}")
        self.connections[conn] = None
        try:
            await conn.run()
        except Exception:  # a simulator bug must not take the whole simulator down
            log.exception("inbound connection %s failed", conn.peer)

    # -- callers ---------------------------------------------------------------------------
    def spawn_caller(self, spec: CallerSpec | None = None) -> CallRecord:
        """Start one caller now; it dials ``dial_to`` like the ``socket`` dialplan app."""
        return self.switch.spawn_caller(spec or CallerSpec())

    def _dial(self, ch, spec: CallerSpec) -> None:
        assert self._nursery is not None
        target = self.dial_to
        if self.hub is not None and target is not None:
            self.hub.dial(ch, spec, target)
        else:
            self._nursery.start_soon(self._run_socket, ch, spec)

    def _socket_failed(self, ch) -> None:
        """Nothing listens: the socket app returns at once, the dialplan goes on."""
        ch.record.socket_failed = True
        self.switch.later(0.0, self.switch._continue_if_alive, ch)

    def _socket_connected(self, ch, conn: EslConnection, spec: CallerSpec, target: tuple[str, int]) -> None:
        """The caller's socket app is connected: channel variables, then the session."""
        self.stats["socket_connections"] += 1
        ch.record.connected_at = trio.current_time()
        data = f"{target[0]}:{target[1]} {spec.socket_arg}"
        ch.set_vars([("current_application_data", data), ("current_application", "socket"),
                     ("socket_host", target[0]), ("socket_data", data)])
        ch.in_socket = True
        ch.socket = conn
        self.connections[conn] = None

    async def _run_socket(self, ch, spec: CallerSpec) -> None:
        """One caller's socket with its own trio tasks (see :mod:`.hub` for the usual way)."""
        target = self.dial_to
        stream = None
        if target is not None:
            try:
                stream = await trio.open_tcp_stream(target[0], target[1])
            except OSError:
                stream = None
        if not ch.alive:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            return
        if stream is None:
            self._socket_failed(ch)
            return
        mode, _, ctl = spec.socket_arg.partition(" ")
        conn = EslConnection(self, stream, channel=ch,
                             socket_mode="async" if mode == "async" else "static",
                             control="full" if "full" in spec.socket_arg else "single-channel",
                             peer=f"socket:{ch.uuid}")
        self._socket_connected(ch, conn, spec, target)
        try:
            await conn.run()
        except Exception:
            log.exception("socket session %s failed", conn.peer)

    async def run_callers(self, cps: float, *, total: int | None = None,
                          duration: float | None = None,
                          make_spec: Callable[[int], CallerSpec] | None = None,
                          batch_interval: float = 0.01) -> list[CallRecord]:
        """Spawn callers at ``cps`` per second (batched every ``batch_interval`` s) until
        ``total`` callers or ``duration`` seconds. Returns their records."""
        if cps <= 0:
            raise ValueError("cps must be > 0")
        make_spec = make_spec or (lambda i: CallerSpec())
        out: list[CallRecord] = []
        start = trio.current_time()
        n = 0
        while True:
            now = trio.current_time()
            if duration is not None and now - start >= duration:
                break
            due = int((now - start) * cps) + 1
            while n < due and (total is None or n < total):
                out.append(self.spawn_caller(make_spec(n)))
                n += 1
            if total is not None and n >= total:
                break
            await trio.sleep_until(max(now + batch_interval, start + n / cps))
        return out

    # -- fault injection -------------------------------------------------------------------
    def drop_connections(self, *, inbound: bool = True, outbound: bool = False) -> int:
        """Abort matching TCP connections at once; returns how many."""
        n = 0
        for c in list(self.connections):
            if (c.outbound and outbound) or (not c.outbound and inbound):
                c.abort()
                n += 1
        return n

    def inbound_connections(self) -> list[EslConnection]:
        return [c for c in self.connections if not c.outbound]


@asynccontextmanager
async def open_simulator(**kwargs) -> AsyncIterator[Simulator]:
    """Run a :class:`Simulator` for the duration of the block (inbound port in ``sim.port``)."""
    sim = Simulator(**kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        try:
            yield sim
        finally:
            nursery.cancel_scope.cancel()
