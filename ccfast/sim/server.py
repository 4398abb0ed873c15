"""The simulator's Event Socket connections: inbound (clients connect to us) and the outbound
``socket`` sessions the simulated callers open to the dispatcher.

Commands are parsed by the protocol layer's :class:`ccfast.esl.ServerProtocol`; replies and
notices use its ``write_*`` functions. Events come pre-rendered from the switch (one encoding per
format shared by every listener). Each connection has one writer task draining an unbounded
outgoing queue; a listener that falls more than ``max_lag`` events behind is dropped, as
FreeSWITCH drops slow listeners.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import re
from typing import TYPE_CHECKING

import trio

from ccfast import esl
from ccfast.esl import (Api, Auth, BgApi, Connect, DivertEvents, Exit, Filter, FilterDelete,
                        Linger, Log, MyEvents, NixEvent, NoEvents, NoLinger, NoLog, RawCommand,
                        Resume, SendEvent, SendMsg, Subscribe, UserAuth)

from . import api as sim_api
from .events import NEED_ENVELOPE, Block, SimEvent, chan_header
from .switch import C_DATA, C_JOB, C_SENDEVENT, ExecMsg, new_uuid
from .wire import CommandReader, LazySendEvent

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .core import Simulator

log = logging.getLogger("ccfast.sim")

# §2.3: the event types `myevents` delivers for the controlled channel
MYEVENTS = frozenset((
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_CREATE", "CHANNEL_DATA", "CHANNEL_DESTROY", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "DTMF", "TALK", "NOTALK",
    "DETECTED_SPEECH",
))

_REPLIES: dict[str, bytes] = {}
CONNECT_TAIL = b"Content-Type: command/reply\nReply-Text: %%2BOK%%0A\nSocket-Mode: %s\nControl: %s\n\n"


class Faults:
    """Per-connection fault injection, set by tests (or ``Simulator.faults`` for new ones)."""

    __slots__ = ("reply_delay", "_stall")

    def __init__(self) -> None:
        self.reply_delay = 0.0          # every reply (and what follows) waits this long
        self._stall: trio.Event | None = None   # made when first asked for (one per connection)

    @property
    def stall(self) -> trio.Event:
        """Not set = reading stalled; see stall_reading()."""
        s = self._stall
        if s is None:
            s = self._stall = trio.Event()
            s.set()
        return s

    def stalled(self) -> bool:
        s = self._stall
        return s is not None and not s.is_set()

    def stall_reading(self, on: bool = True) -> None:
        if on and self.stall.is_set():
            self._stall = trio.Event()
        elif not on:
            self.stall.set()


class EslConnection:
    """One ESL connection on the FreeSWITCH side. ``channel`` is set for outbound sockets."""

    _tasks = True   # served by its own trio tasks (run); the hub's connections are not

    def __init__(self, sim: "Simulator", stream: trio.abc.Stream, *, channel: "Channel" | None = None,
                 socket_mode: str = "async", control: str = "full", peer: str = ""):
        self.sim = sim
        self.sw = sim.switch
        self.stream = stream
        self.proto = CommandReader()
        self.channel = channel
        self.outbound = channel is not None
        self.socket_mode = socket_mode
        self.control = control
        self.peer = peer
        self.authed = self.outbound
        self.connected = False          # outbound: `connect` handled
        self.parked = False             # outbound: the socket app parked the channel
        self.linger: int | None = None  # None = no linger; -1 forever; N seconds
        self.resume = False
        self.divert = False
        self.fmt: str | None = None
        self.all_events = False
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.all_custom = False
        self.filters: list[tuple[str, str, re.Pattern | None]] = []
        self._fsplit: tuple | None = None   # passes_chan's view of filters (rebuilt when they change)
        self.my_uuid: str | None = None
        self.my_channel: Channel | None = None
        self.faults = Faults()
        self.faults.reply_delay = sim.faults.reply_delay
        self._lag = 0
        self.closed = False
        if self._tasks:     # the task-per-connection transport's queue, wake-up and scope
            self._out: collections.deque[bytes] = collections.deque()
            self._wake = trio.Event()
            self._cancel = trio.CancelScope()
        self.events_sent = 0
        self.commands_seen: collections.deque[str] = collections.deque(maxlen=1000)  # the last ones
        self._api_wait: tuple | None = None

    # -- event listener interface (called by the switch) ------------------------------------
    def wants(self, name: str, subclass: str, ch) -> bool:
        if self.fmt is None or self.my_uuid is not None:
            return False
        if self.all_events:
            return True
        if name == "CUSTOM":
            return self.all_custom or subclass in self.subclasses
        return name in self.names

    def wants_own(self, name: str, subclass: str) -> bool:
        if self.fmt is None:
            return False
        if name in MYEVENTS or name in self.names or self.all_events:
            return True
        if name == "CUSTOM":
            return self.all_custom or subclass in self.subclasses
        return False

    def offer(self, ev: SimEvent) -> None:
        if self.closed:
            return
        if self.filters and not self._passes(ev):
            self.sim.stats["events_filtered"] += 1
            return
        self.push(ev.json_frame() if self.fmt == "json" else ev.plain_frame(), event=True)

    def on_channel_gone(self, ch) -> None:
        pass

    def on_hangup(self, ch) -> None:
        """The controlled channel hung up: linger notice, or disconnect notice and close."""
        if self.closed:
            return
        if self.linger is None:
            self.push(esl.write_disconnect_notice(controlled_session_uuid=ch.uuid,
                                                  disposition="disconnect"))
            self.close()
        else:
            self.push(esl.write_linger_notice(ch.uuid, ch.name, self.linger))
            if self.linger >= 0:
                self.sw.later(self.linger, self._linger_expired, ch)

    def _linger_expired(self, ch) -> None:
        if not self.closed:
            self.push(esl.write_disconnect_notice(controlled_session_uuid=ch.uuid,
                                                  disposition="disconnect"))
            self.close()

    def passes_chan(self, name: str, ch, pre, post, with_vars: bool) -> bool | None:
        """``_passes`` for a channel event not built yet (see ``Switch.fire_chan``); None when a
        filter needs the built event (an envelope header other than Event-Name)."""
        filters = self.filters
        sp = self._fsplit
        if sp is None or sp[0] is not filters or sp[1] != len(filters):
            # exact Event-Name filters as one set (the member sockets' only filters); filters OR,
            # so the order they are tried in does not change the answer
            names = frozenset(v for h, v, rx in filters if h == "Event-Name" and rx is None)
            sp = self._fsplit = (filters, len(filters), names,
                                 [f for f in filters if f[0] != "Event-Name" or f[2] is not None])
        if name in sp[2]:
            return True
        for h, v, rx in sp[3]:
            got = chan_header(h, name, ch, pre, post, with_vars)
            if got is None:
                continue
            if got is NEED_ENVELOPE:
                return None
            if _filter_hit(got, v, rx):
                return True
        return False

    def _passes(self, ev: SimEvent) -> bool:
        for h, v, rx in self.filters:
            got = ev.get(h)
            if got is not None and _filter_hit(got, v, rx):
                return True
        return False

    # -- output ----------------------------------------------------------------------------
    def push(self, data: bytes, event: bool = False) -> None:
        if self.closed:
            return
        self._out.append(data)
        if event:
            self.events_sent += 1
            self._lag += 1
            if self._lag > self.sim.max_lag:
                self.sim.stats["listeners_dropped"] += 1
                log.warning("dropping listener %s: %d events behind", self.peer, self._lag)
                self.close()
                return
        self._wake.set()

    def reply(self, text: str, headers=()) -> None:
        if headers or "\n" in text:
            self.push(esl.write_command_reply(text, headers))
            return
        # the same bytes as esl.write_command_reply(text), without its generic checks
        data = _REPLIES.get(text)
        if data is None:
            data = b"Content-Type: command/reply\nReply-Text: %b\n\n" % text.encode("utf-8")
            if len(_REPLIES) < 256 and not text.startswith("+OK "):
                _REPLIES[text] = data   # the constant ones ("+OK", "+OK will linger", ...)
        self.push(data)

    def close(self) -> None:
        """Close after what is already queued is written."""
        if not self.closed:
            self.closed = True
            self._wake.set()

    def abort(self) -> None:
        """Drop the TCP connection now (fault injection)."""
        self.closed = True
        self._out.clear()
        self._cancel.cancel()

    def send_garbage(self, data: bytes) -> None:
        self._out.append(data)
        self._wake.set()

    async def _writer(self) -> None:
        out = self._out
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if out:
                if len(out) == 1:
                    data = out.popleft()
                else:
                    data = b"".join(out)
                    out.clear()
                self._lag = 0
                await self.stream.send_all(data)
            if self.closed and not out:
                return

    # -- main loop -------------------------------------------------------------------------
    async def run(self) -> None:
        with self._cancel:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer_then_cancel, nursery)
                if not self.outbound:
                    self.push(esl.write_auth_request())
                try:
                    await self._reader()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    nursery.cancel_scope.cancel()
                except esl.ProtocolError as exc:
                    log.info("closing %s: %s", self.peer, exc)
                self.close()
        self.closed = True
        self._detach()
        with trio.CancelScope(shield=True):
            try:
                await trio.aclose_forcefully(self.stream)
            except Exception:
                pass
        self._on_closed()

    async def _writer_then_cancel(self, nursery: trio.Nursery) -> None:
        try:
            await self._writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        first_deadline = None
        if self.outbound:
            first_deadline = trio.current_time() + self.sw.t.first_command_timeout
        while not self.closed:
            if not self.faults.stall.is_set():
                await self.faults.stall.wait()
            if first_deadline is not None and not self.connected:
                with trio.move_on_at(first_deadline) as sc:
                    data = await self.stream.receive_some(65536)
                if sc.cancelled_caught:
                    # FS waited too long for the first command: notice, close, channel stays
                    self.push(esl.write_disconnect_notice(
                        controlled_session_uuid=self.channel.uuid, disposition="disconnect"))
                    self.close()
                    return
            else:
                data = await self.stream.receive_some(65536)
            if not data:
                return
            self.proto.feed(data)
            for cmd in self.proto.commands():
                if self.faults.reply_delay:
                    await trio.sleep(self.faults.reply_delay)
                await self.handle(cmd)
                if self.closed:
                    return

    def _detach(self) -> None:
        if self in self.sw.listeners:
            self.sw.listeners.remove(self)
        ch = self.my_channel
        if ch is not None and self in ch.listeners:
            ch.listeners.remove(self)
        self.sim.connections.pop(self, None)

    def _on_closed(self) -> None:
        ch = self.channel
        if ch is not None:
            if ch.socket is self:
                ch.socket = None
            self.sw.socket_closed(ch, self.resume, self.parked)

    # -- commands --------------------------------------------------------------------------
    async def handle(self, cmd) -> None:
        """Run one command; a blocking ``api`` (originate) holds this connection until done."""
        self.dispatch(cmd)
        w = self._api_wait
        if w is not None:
            await w[0].wait()
            self._api_wait = None
            self.push(esl.write_api_response(w[1][0]))

    def dispatch(self, cmd) -> None:
        """Run one command synchronously. When it is an ``api`` that finishes later,
        ``self._api_wait`` is set to ``(trio.Event, [result])``."""
        t = type(cmd)
        if self.connected or (self.authed and not self.outbound):
            # the usual case: one dictionary look-up instead of the isinstance chain below
            fast = _FAST.get(t)
            if fast is not None:
                self.commands_seen.append(fast[0])
                getattr(self, fast[1])(cmd)     # looked up here: tests and the bench wrap handlers
                return
        line = cmd.line if isinstance(cmd, RawCommand) else (
            "SendEvent" if t is LazySendEvent else t.__name__)
        self.commands_seen.append(line)
        if self.outbound and not self.connected:
            if isinstance(cmd, Connect):
                self._do_connect()
            elif isinstance(cmd, Exit):
                self._do_exit()
            else:
                self.reply("-ERR command not found")
            return
        if not self.authed:
            if isinstance(cmd, Auth):
                if cmd.password == self.sim.password:
                    self.authed = True
                    self.reply("+OK accepted")
                else:
                    self.reply("-ERR invalid")
                    self.close()
            elif isinstance(cmd, UserAuth):
                if self.sim.users.get(cmd.user) == cmd.password:
                    self.authed = True
                    self.reply("+OK accepted", (("Allowed-Events", "all"), ("Allowed-API", "all"),
                                                ("Allowed-LOG", "true")))
                else:
                    self.reply("-ERR invalid")
                    self.close()
            elif isinstance(cmd, Exit):
                self._do_exit()
            else:
                self.reply("-ERR command not found")
            return
        if isinstance(cmd, Api):
            self._do_api(cmd)
        elif isinstance(cmd, BgApi):
            self._do_bgapi(cmd)
        elif isinstance(cmd, SendMsg):
            self._do_sendmsg(cmd)
        elif type(cmd) is LazySendEvent or isinstance(cmd, SendEvent):
            self._do_sendevent(cmd)
        elif isinstance(cmd, Subscribe):
            self._subscribe(cmd)
        elif isinstance(cmd, NixEvent):
            for e in cmd.events:
                if e == "ALL":
                    self.all_events = False
                    self.names.clear()
                elif e == "CUSTOM":
                    for s in cmd.subclasses:
                        self.subclasses.discard(s)
                    if not cmd.subclasses:
                        self.all_custom = False
                else:
                    self.names.discard(e)
            self.reply("+OK events nixed")
        elif isinstance(cmd, NoEvents):
            self.fmt = None
            self.all_events = self.all_custom = False
            self.names.clear()
            self.subclasses.clear()
            self.reply("+OK no longer listening for events")
        elif isinstance(cmd, Filter):
            v = cmd.value
            rx = re.compile(v[1:].rstrip("/")) if v.startswith("/") else None
            self.filters.append((cmd.header, v, rx))
            self.reply(f"+OK filter added. [{cmd.header}]=[{v}]")
        elif isinstance(cmd, FilterDelete):
            if cmd.header is None:
                self.filters.clear()
                self.reply("+OK filter deleted. [all]=[all]")
            else:
                self.filters = [f for f in self.filters if not (
                    f[0] == cmd.header and (cmd.value is None or f[1] == cmd.value))]
                self.reply(f"+OK filter deleted. [{cmd.header}]=[{cmd.value or ''}]")
        elif isinstance(cmd, MyEvents):
            self._do_myevents(cmd)
        elif isinstance(cmd, DivertEvents):
            self.divert = cmd.on
            self.reply("+OK events diverted" if cmd.on else "+OK events not diverted")
        elif isinstance(cmd, Linger):
            if not self.outbound:
                self.reply("-ERR not controlling a session")
            else:
                self.linger = -1 if cmd.seconds is None else cmd.seconds
                self.reply("+OK will linger" if cmd.seconds is None
                           else f"+OK will linger {cmd.seconds} seconds")
        elif isinstance(cmd, NoLinger):
            if not self.outbound:
                self.reply("-ERR not controlling a session")
            else:
                self.linger = None
                self.reply("+OK will not linger")
        elif isinstance(cmd, Resume):
            if not self.outbound:
                self.reply("-ERR not controlling a session")
            else:
                self.resume = True
                rec = self.channel.record
                if rec is not None:
                    rec.resumed = True
                self.reply("+OK")
        elif isinstance(cmd, Log):
            self.reply(f"+OK log level {cmd.level or 7} [7]")
        elif isinstance(cmd, NoLog):
            self.reply("+OK no longer logging")
        elif isinstance(cmd, Exit):
            self._do_exit()
        elif isinstance(cmd, Connect):
            self.reply("-ERR command not found")
        else:
            self.reply("-ERR command not found")

    def _subscribe(self, cmd: Subscribe) -> None:
        self.fmt = "json" if cmd.format == "json" else "plain"
        for e in cmd.events:
            if e == "ALL":
                self.all_events = True
            elif e == "CUSTOM":
                if not cmd.subclasses:
                    self.all_custom = True
            else:
                self.names.add(e)
        self.subclasses.update(cmd.subclasses)
        if self.my_uuid is None and self not in self.sw.listeners:
            self.sw.listeners.append(self)
        self.reply(f"+OK event listener enabled {cmd.format}")

    def _do_myevents(self, cmd: MyEvents) -> None:
        if self.outbound:
            ch = self.channel
        else:
            ch = self.sw.get(cmd.uuid) if cmd.uuid else None
            if ch is None:
                self.reply("-ERR invalid uuid")
                return
        self.fmt = "json" if cmd.format == "json" else "plain"
        self.my_uuid = ch.uuid
        self.my_channel = ch
        if self in self.sw.listeners:
            self.sw.listeners.remove(self)
        if self not in ch.listeners:
            ch.listeners.append(self)
        self.reply("+OK Events Enabled")

    def _do_connect(self) -> None:
        ch = self.channel
        self.connected = True
        rec = ch.record
        if rec is not None:
            rec.connect_cmd_at = trio.current_time()
        # envelope, the Channel-* profile copy, then the channel's snapshot (the plain bytes of
        # [envelope_block, data_profile_block()] + snapshot_blocks(), from the cached parts)
        parts = [self.sw.host.envelope_block("CHANNEL_DATA", C_DATA).plain(), ch._profile_plain("Channel-"),
                 ch.state_plain(), ch._profile_plain("Caller-")]
        if ch.other is not None:
            parts.append(ch.other_block().plain())
        parts.append(ch.vars_plain())
        parts.append(CONNECT_TAIL % (self.socket_mode.encode(), self.control.encode()))
        data = b"".join(parts)
        self.push(data)
        self.sw.later(self.sim.park_delay, self._park)
        spec = ch.caller_spec
        if spec is not None:
            for delay, digits in spec.dtmf:
                ch.timers.append(self.sw.later(delay, self.sw.send_dtmf, ch, digits))

    def _park(self) -> None:
        ch = self.channel
        if ch.alive and ch.in_socket and not self.closed:
            self.parked = True
            self.sw.park(ch)

    def _do_exit(self) -> None:
        self.reply("+OK bye")
        if self.outbound:
            self.push(esl.write_disconnect_notice(controlled_session_uuid=self.channel.uuid,
                                                  disposition="disconnect"))
        else:
            self.push(esl.write_disconnect_notice())
        self.close()

    def _do_api(self, cmd: Api) -> None:
        if self.outbound and self.control != "full":
            self.reply("-ERR command not found")
            return
        result: list[str] = []
        ev = trio.Event()

        def done(text: str) -> None:
            result.append(text)
            ev.set()
            self._api_done()

        out = sim_api.execute(self.sw, cmd.command, cmd.args, done)
        if out is None and not result:
            self._api_wait = (ev, result)   # `api` blocks this connection until the command finishes
            return
        self.push(api_response(out if out is not None else result[0]))

    def _api_done(self) -> None:
        """A blocking api finished (the task-per-connection transport waits on the event)."""

    def _do_bgapi(self, cmd: BgApi) -> None:
        job = cmd.job_uuid or new_uuid()
        self.push(bgapi_reply(job))
        sw = self.sw
        arg = cmd.args

        def done(text: str) -> None:
            sw.later(0.0, _fire_job, sw, job, cmd.command, arg, text)

        out = sim_api.execute(sw, cmd.command, cmd.args, done, job_uuid=job)
        if out is not None:
            done(out)

    def _do_sendmsg(self, cmd: SendMsg) -> None:
        if cmd.uuid:
            ch = self.sw.get(cmd.uuid)
        else:
            ch = self.channel if self.outbound else None
        if ch is None or not ch.alive:
            self.reply(f"-ERR invalid session id [{cmd.uuid or ''}]")
            return
        cc = (cmd.call_command or "").lower()
        if cc == "execute":
            msg = ExecMsg(cmd.app_name or "", cmd.app_arg or "", cmd.event_lock, cmd.loops)
        elif cc == "hangup":
            msg = ExecMsg("hangup", cmd.header("hangup-cause") or "NORMAL_CLEARING")
        else:
            self.reply("+OK")
            return
        self.reply("+OK")
        self.sw.queue_msg(ch, msg)

    def _do_sendevent(self, cmd) -> None:
        """``sendevent``: broadcast, or queued to the channel named by ``Unique-ID`` (§7.2).

        *cmd* is a :class:`~ccfast.sim.wire.LazySendEvent` (headers decoded only when the event
        reaches someone) or a ``SendEvent``; either way the bytes sent are the same."""
        sw = self.sw
        euid = new_uuid()
        self.push(b"Content-Type: command/reply\nReply-Text: +OK %b\n\n" % euid.encode())   # reply(f"+OK {euid}")
        name = cmd.name
        if type(cmd) is LazySendEvent:
            sub = cmd.subclass
            target_uuid = cmd.unique_id
        else:
            sub = cmd.subclass or ""
            target_uuid = None
            for n, v in cmd.headers:
                if n.lower() == "unique-id":
                    target_uuid = v
        ch = sw.channels.get(target_uuid) if target_uuid else None   # sw.get(target_uuid)
        if ch is not None and not ch.alive:
            ch = None
        if ch is None:
            if not sw.wants_any(name, sub):
                sw.host.seq += 1    # the event exists (it takes a sequence number); nobody gets it
                sw.count_event(name)
                return
            items, body = _sendevent_items(cmd, sub, euid)
            env = sw.host.envelope(name, C_SENDEVENT)
            sw.fire(SimEvent(name, [Block(items), Block(env)], subclass=sub, body=body))
            return
        # §7.2: the event is queued to that channel
        if ch.bridged is not None:
            return
        for a in ch.app_stack:
            if a.name == "playback" or a.name == "endless_playback":
                sock = ch.socket
                if sock is not None and sock.divert:
                    items, body = _sendevent_items(cmd, sub, euid)
                    sock.push(SimEvent(name, [Block(items)], subclass=sub, body=body).plain_frame(), event=True)
                return
        sw.later(sw.t.tick, _deliver_to_parked, sw, ch, cmd, sub, euid)


_API_REPLIES: dict = {}


def api_response(text) -> bytes:
    """``esl.write_api_response(text)``; the constant ones ("+OK", "-ERR No such channel!"...)
    made once."""
    data = _API_REPLIES.get(text)
    if data is None:
        data = esl.write_api_response(text)
        if len(_API_REPLIES) < 256 and not text.startswith("+OK " if type(text) is str else b"+OK "):
            _API_REPLIES[text] = data
    return data


def bgapi_reply(job: str) -> bytes:
    """``esl.write_bgapi_reply(job)``, formatted directly for the usual (ASCII, one-line) job uuid."""
    if job.isascii() and job.isprintable():
        j = job.encode()
        return b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: %b\nJob-UUID: %b\n\n" % (j, j)
    return esl.write_bgapi_reply(job)


# exact command type -> its handler, for connections past connect/auth (dispatch's fast path:
# the same handlers as its isinstance chain)
_FAST = {Api: ("Api", "_do_api"), BgApi: ("BgApi", "_do_bgapi"), SendMsg: ("SendMsg", "_do_sendmsg"),
         LazySendEvent: ("SendEvent", "_do_sendevent"), SendEvent: ("SendEvent", "_do_sendevent")}


def _sendevent_items(cmd, sub: str, euid: str) -> tuple[list, str | None]:
    """The event's own headers as FreeSWITCH builds them from a ``sendevent`` command."""
    if type(cmd) is LazySendEvent:
        cmd = cmd.full()
    items = []
    if sub:
        items.append(("Event-Subclass", sub))
    items.append(("Command", f"sendevent {cmd.name}"))
    for n, v in cmd.headers:
        if n.lower() == "event-subclass" and v == sub:
            continue
        items.append((n, v))
    body = cmd.body.decode("utf-8", "replace") if cmd.body else None
    if body is not None:
        items.append(("Content-Length", str(len(cmd.body))))
    items.append(("Event-UUID", euid))
    return items, body


def _deliver_to_parked(sw, ch, cmd, sub, euid) -> None:
    if not ch.alive:
        return
    name = cmd.name
    if not sw.wants_any(name, sub):
        sw.host.seq += 1
        sw.count_event(name)
        return
    items, body = _sendevent_items(cmd, sub, euid)
    env = sw.host.envelope(name, C_SENDEVENT)
    blocks = [Block(items), Block(env)] + ch.snapshot_blocks()
    sw.fire(SimEvent(name, blocks, subclass=sub, body=body))


def _fire_job(sw, job_uuid: str, command: str, arg: str, text: str) -> None:
    if not sw.wants_any("BACKGROUND_JOB"):
        return
    env = sw.host.envelope_block("BACKGROUND_JOB", C_JOB)
    job = Block([("Job-UUID", job_uuid), ("Job-Command", command), ("Job-Command-Arg", arg)])
    sw.fire(SimEvent("BACKGROUND_JOB", [env, job], body=text))


def acl_allows(acl: list[str] | None, peer_ip: str) -> bool:
    if not acl:
        return True
    try:
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in acl)


def _filter_hit(got: str, value: str, rx) -> bool:
    """One ``filter`` entry against a header's value: its regex (``/…/``) or the exact value."""
    return rx.search(got) is not None if rx is not None else got == value
