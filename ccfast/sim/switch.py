"""The simulated switch: channels, event bus, originate jobs, bridges, hangups, applications.

Everything here is synchronous and driven by the :class:`~ccfast.sim.sched.Scheduler`: API
commands change state and schedule the consequences (events come after the reply, as in
FreeSWITCH where they are produced by other threads). Events are only built when some listener
wants them, and each one is encoded once per format whatever the number of listeners.
The sequences and timings reproduce ``reference/freeswitch-integration.md`` (§2–§7).
"""

from __future__ import annotations

import random
import time
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from .channel import Q850, Channel, PyChannel
from .dialstring import DialStringError, Leg, Originate, parse_originate
from .events import Block, ChanEvent, Host, SimEvent
from .profiles import ANSWER, NO_ANSWER, AgentProfile, ProfileTable, sample
from .records import CallRecord, JobRecord, LegRecord
from .sched import Scheduler

# Event-Calling-File/Function/Line-Number per event kind, as in the captures.
C_CREATE = ("switch_core_state_machine.c", "switch_core_session_run", 626)
C_ANSWER = ("switch_channel.c", "switch_channel_perform_mark_answered", 3848)
C_PROGRESS = ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 1145)
C_PARK = ("switch_ivr.c", "switch_ivr_park", 1002)
C_UNPARK = ("switch_ivr.c", "switch_ivr_park", 1213)
C_EXEC = ("switch_core_session.c", "switch_core_session_exec", 2949)
C_EXEC_DONE = ("switch_core_session.c", "switch_core_session_exec", 2972)
C_EXEC_BRIDGE = ("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 1236)
C_BRIDGE = ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689)
C_UNBRIDGE = ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879)
C_STATE = ("switch_channel.c", "switch_channel_perform_set_running_state", 2409)
C_HANGUP = ("switch_channel.c", "switch_channel_perform_hangup", 3447)
C_HANGUP_DONE = ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943)
C_PLAY_START = ("switch_ivr_play_say.c", "switch_ivr_play_file", 1649)
C_PLAY_STOP = ("switch_ivr_play_say.c", "switch_ivr_play_file", 2023)
C_JOB = ("mod_event_socket.c", "api_exec", 1580)
C_DATA = ("mod_event_socket.c", "parse_command", 2029)
C_SENDEVENT = ("mod_event_socket.c", "parse_command", 2283)
C_DTMF = ("switch_channel.c", "switch_channel_dequeue_dtmf", 686)
C_RECORD = ("switch_ivr_async.c", "record_callback", 1288)
C_EVENT_APP = ("mod_dptools.c", "event_function", 1425)

PLAYBACK_APPS = ("playback", "endless_playback")


@dataclass
class Timings:
    """Every delay of the simulator, in seconds. Defaults follow the observed FreeSWITCH."""

    tick: float = 0.02                  # media tick: sendmsg execution, bridge steps
    originate_setup: float = 0.01       # bgapi originate → CHANNEL_CREATE
    hangup_propagation: float = 0.02    # one leg hangs up → its bridged peer reacts
    playback_default: float = 1.0       # a playback of an ordinary file
    first_command_timeout: float = 25.0  # outbound: FS waits this long for `connect`
    default_originate_timeout: float = 60.0

    @classmethod
    def fast(cls) -> "Timings":
        """Short timings for tests and benchmarks (same ordering, smaller delays)."""
        return cls(tick=0.002, originate_setup=0.001, hangup_propagation=0.002,
                   playback_default=0.1, first_command_timeout=10.0)


@dataclass
class CallerSpec:
    """One simulated caller entering the queue through the dialplan's `socket` app."""

    queue: str = "support@default"
    cid_name: str = "Alice Smith"
    cid_number: str = "5551000"
    extension: str = "ext_queue"
    context: str = "cc"
    variables: dict[str, str] = field(default_factory=dict)   # set before `socket`
    patience: float | None = None       # abandon (hang up the caller side) after N s unbridged
    dtmf: list = field(default_factory=list)   # [(seconds after connect, "digits"), ...]
    after_socket: list = field(default_factory=list)  # [("set", "x=1"), ("socket", "h:p async full"), ("hangup", "CAUSE")]
    socket_arg: str = "async full"


@dataclass
class ExecMsg:
    app: str
    arg: str = ""
    event_lock: bool = False
    loops: int = 1


class RunningApp:
    __slots__ = ("name", "arg", "app_uuid", "event_lock", "timer", "started")

    def __init__(self, name: str, arg: str, app_uuid: str, event_lock: bool):
        self.name = name
        self.arg = arg
        self.app_uuid = app_uuid
        self.event_lock = event_lock
        self.timer = None
        self.started = 0.0   # set by Simulator.serve (trio clock)


class _Job:
    __slots__ = ("rec", "orig", "group_idx", "legs", "done_cb", "finished", "deadline_timer",
                 "first_cause")

    def __init__(self, rec: JobRecord, orig: Originate, done_cb: Callable[[str], None]):
        self.rec = rec
        self.orig = orig
        self.group_idx = 0
        self.legs: list[_LegState] = []
        self.done_cb = done_cb
        self.finished = False
        self.deadline_timer = None
        self.first_cause: str | None = None


class _LegState:
    __slots__ = ("leg", "chan", "b", "profile", "status", "cause", "timers", "rec")

    def __init__(self, leg: Leg):
        self.leg = leg
        self.chan: Channel | None = None
        self.b: Channel | None = None
        self.profile: AgentProfile | None = None
        self.status = "new"      # new / ringing / answered / failed
        self.cause = ""
        self.timers: list = []
        self.rec: LegRecord | None = None


_uuid_rng = random.Random(int.from_bytes(os.urandom(16), "big"))
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_uuid() -> str:
    """A random (version 4, RFC 4122 variant) uuid string, as ``str(uuid.uuid4())`` gives,
    from a PRNG seeded once from the OS (a simulator needs unique ids, not secret ones)."""
    h = "%032x" % ((_uuid_rng.getrandbits(128) & _V4_CLEAR) | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


try:  # the same, formatted in C from the PRNG's bytes
    from ._render import Uuid4Source

    new_uuid = Uuid4Source(_uuid_rng)  # noqa: F811
except ImportError:  # pragma: no cover - not built
    pass


def _release(ch: Channel) -> None:
    """A channel is over: break the reference cycles it is part of, so reference counting frees
    it (the bench runs with the cyclic collector off; a call's three channels and their rendered
    parts are tens of KB). Caches go (rebuilt if ever asked for); the loopback and other-leg links
    go once both ends are over (a channel fires no events after its hangup)."""
    ch._profile_block = ch._other_block = None      # their closures refer to channels
    p = ch.loopback_peer
    if p is not None and p.gone:
        ch.loopback_peer = None
        if p.loopback_peer is ch:
            p.loopback_peer = None
    p = ch.other
    if p is not None and p.gone:
        ch.other = None
        if p.other is ch:
            p.other = None
            p._other_block = None


class Switch:
    """All simulated state of one FreeSWITCH box."""

    channel_type: type = Channel     # PyChannel (the reference) when the typed one is not built

    def __init__(self, *, timings: Timings | None = None, profiles: ProfileTable | None = None,
                 seed: int | None = None, hostname: str = "sim",
                 history: bool = False, max_history: int = 100_000):
        self.t = timings or Timings()
        self.profiles = profiles or ProfileTable()
        self.rng = random.Random(seed)
        self.host = Host(new_uuid(), hostname)
        self.sched = Scheduler()
        self.channels: dict[str, Channel] = {}
        self.listeners: list = []           # global event listeners (inbound connections)
        self.calls: dict[str, CallRecord] = {}
        self.legs: dict[str, LegRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.session_seq = 0
        self.sessions_total = 0
        self.global_vars: dict[str, str] = {}
        self.spawn: Callable[..., Any] | None = None   # nursery.start_soon, set by the Sim
        self.dialer: Callable[[Channel, CallerSpec], Any] | None = None
        # the `socket` app: (channel, running app or None for a dialplan step, "host:port …"),
        # set by the Sim (apps.start_socket)
        self.socket_app: Callable[[Channel, Any, str], Any] | None = None
        self.history: dict[str, list[str]] | None = {} if history else None
        self.event_counts: dict[str, int] = {}
        self.started = 0.0   # set by Simulator.serve (trio clock)
        self._ringing: dict[str, tuple[_Job, _LegState]] = {}   # a-leg uuid → its job leg
        self.stats = {"events_built": 0, "originates": 0, "bridges": 0, "callers": 0}

    # -- timers ----------------------------------------------------------------------------
    def later(self, delay: float, fn, *args):
        return self.sched.call_later(delay, fn, *args)

    # -- events ----------------------------------------------------------------------------
    def _targets(self, name: str, subclass: str, ch: Channel | None) -> list:
        out = [l for l in self.listeners if l.wants(name, subclass, ch)]
        if ch is not None and ch.listeners:
            out += [l for l in ch.listeners if l.wants_own(name, subclass)]
        return out

    def _dispatch(self, ev: SimEvent, targets: list) -> None:
        self.stats["events_built"] += 1
        for t in targets:
            t.offer(ev)

    def fire_chan(self, name: str, ch: Channel, calling, pre=None, post=None,
                  with_vars: bool = True) -> None:
        """Fire a channel event: envelope, [pre], channel snapshot, [post]. (The reference; with
        the typed channel the switch uses ``_chan.fire_chan``, same behaviour; ``PySwitch`` keeps
        this one.)"""
        if self.history is not None:
            self.history.setdefault(ch.uuid, []).append(name)
        ec = self.event_counts
        ec[name] = ec.get(name, 0) + 1
        targets = [l for l in self.listeners if l.wants(name, "", ch)]
        if ch.listeners:
            targets += [l for l in ch.listeners if l.wants_own(name, "")]
        if not targets:
            return
        self.stats["events_built"] += 1
        host = self.host
        host.seq += 1
        seq = host.seq     # the event's number, whether or not anyone takes it
        ev = None
        for t in targets:
            # t.offer(ev), with filters decided from the channel: the event is assembled (its
            # envelope dated) only when a listener takes it
            if t.closed:
                continue
            if t.filters:
                ok = t.passes_chan(name, ch, pre, post, with_vars)
                if ok is None:      # a filter on an envelope header: needs the event
                    if ev is None:
                        ev = ChanEvent(name, ch, host.envelope_block(name, calling, seq), pre, post, with_vars)
                    ok = t._passes(ev)
                if not ok:
                    t.sim.stats["events_filtered"] += 1
                    continue
            if ev is None:
                ev = ChanEvent(name, ch, host.envelope_block(name, calling, seq), pre, post, with_vars)
            t.push(ev.json_frame() if t.fmt == "json" else ev.plain_frame(), event=True)

    def fire(self, ev: SimEvent, ch: Channel | None = None) -> None:
        self.event_counts[ev.name] = self.event_counts.get(ev.name, 0) + 1
        targets = self._targets(ev.name, ev.subclass, ch)
        if targets:
            self._dispatch(ev, targets)

    def count_event(self, name: str) -> None:
        """An event was fired that no listener gets (counted like :meth:`fire` counts)."""
        self.event_counts[name] = self.event_counts.get(name, 0) + 1

    def wants_any(self, name: str, subclass: str = "") -> bool:
        for l in self.listeners:
            if l.wants(name, subclass, None):
                return True
        return False

    # -- channel creation ------------------------------------------------------------------
    def new_channel(self, uuid: str, name: str, **kw) -> Channel:
        self.session_seq += 1
        self.sessions_total += 1
        ch = self.channel_type(uuid, name, session_id=self.session_seq, **kw)
        self.channels[uuid] = ch
        return ch

    def _base_vars(self, ch: Channel, outbound: bool) -> list[tuple[str, str]]:
        if outbound:
            return [("direction", "outbound"), ("is_outbound", "true"),
                    ("session_id", str(ch.session_id)), ("read_codec", "L16"),
                    ("read_rate", "8000"), ("write_codec", "L16"), ("write_rate", "8000"),
                    ("channel_name", ch.name), ("uuid", ch.uuid), ("call_uuid", ch.uuid)]
        return [("direction", "inbound"), ("uuid", ch.uuid), ("session_id", str(ch.session_id)),
                ("channel_name", ch.name), ("read_codec", "L16"), ("read_rate", "8000"),
                ("write_codec", "L16"), ("write_rate", "8000")]

    # -- answer / park / progress ------------------------------------------------------------
    def mark_progress(self, ch: Channel) -> None:
        if ch.progress_us or not ch.alive:
            return
        from .channel import now_us
        ch.progress_us = now_us()
        ch.call_state = "RINGING"
        ch.touch_profile()
        self.fire_chan("CHANNEL_PROGRESS", ch, C_PROGRESS)

    def mark_answered(self, ch: Channel, state: str | None = None, number: int | None = None,
                      call_state: str | None = None) -> bool:
        if ch.answered or not ch.alive:
            return False
        from .channel import now_us
        ch.answered_us = now_us()
        ch.answer_state = "answered"
        if state:
            ch.set_state(state, number)
        if call_state:
            ch.call_state = call_state
        ch.touch_profile()
        ch.set_var("endpoint_disposition", "ANSWER")
        self.fire_chan("CHANNEL_ANSWER", ch, C_ANSWER)
        ch.call_state = "ACTIVE"
        rec = ch.record
        if isinstance(rec, CallRecord) and ch.role == "member":
            rec.answered_at = self.sched.now()
        return True

    def park(self, ch: Channel) -> None:
        ch.parked = True
        self.fire_chan("CHANNEL_PARK", ch, C_PARK)

    def unpark(self, ch: Channel) -> None:
        if ch.parked:
            ch.parked = False
            self.fire_chan("CHANNEL_UNPARK", ch, C_UNPARK)

    def set_state_event(self, ch: Channel, state: str, number: int | None = None) -> None:
        ch.set_state(state, number)
        self.fire_chan("CHANNEL_STATE", ch, C_STATE, with_vars=False)

    # -- originate -------------------------------------------------------------------------
    def originate(self, arg: str, job_uuid: str, done: Callable[[str], None]) -> None:
        """Start an originate; ``done`` gets ``+OK <uuid>\\n`` or ``-ERR <CAUSE>\\n``."""
        self.stats["originates"] += 1
        rec = JobRecord(job_uuid, "originate", arg, self.sched.now())
        self.jobs[job_uuid] = rec
        try:
            orig = parse_originate(arg)
        except DialStringError as exc:
            self.later(0.0, self._job_result, None, rec, done, f"-ERR {exc.cause}\n")
            return
        except ValueError as exc:
            self.later(0.0, self._job_result, None, rec, done, f"{exc}\n")
            return
        job = _Job(rec, orig, done)
        timeout = orig.global_vars.get("originate_timeout")
        try:
            tmo = float(timeout) if timeout else (orig.timeout or self.t.default_originate_timeout)
        except ValueError:
            tmo = self.t.default_originate_timeout
        job.deadline_timer = self.later(tmo, self._job_timeout, job)
        self._start_group(job)

    def _job_result(self, job: _Job | None, rec: JobRecord, done, text: str) -> None:
        if job is not None:
            if job.finished:
                return
            job.finished = True
            if job.deadline_timer:
                job.deadline_timer.cancel()
        rec.result = text
        rec.finished = self.sched.now()
        rec.done.set()
        done(text)

    def _start_group(self, job: _Job) -> None:
        orig = job.orig
        group = orig.groups[job.group_idx]
        job.legs = [_LegState(leg) for leg in group]
        for ls in job.legs:
            v = orig.leg_vars(ls.leg)
            contact = self.profiles.resolve(ls.leg.endpoint)
            if contact.profile is None:
                ls.status = "ringing"
                ls.timers.append(self.later(self.t.originate_setup, self._leg_fail, job, ls,
                                            contact.cause))
                continue
            prof = contact.profile.pick(self.rng)
            ls.profile = prof
            a_uuid = v.get("origination_uuid") or new_uuid()
            if a_uuid in self.channels:
                a_uuid = new_uuid()
            cid_name = v.get("origination_caller_id_name") or orig.cid_name or "FreeSWITCH"
            cid_num = v.get("origination_caller_id_number") or orig.cid_number or "0000000000"
            if contact.kind == "loopback":
                a_name = f"loopback/{contact.name}-a"
                src = "mod_loopback"
                ctx = contact.context
            else:
                a_name = f"{contact.kind}/{contact.name}"
                src = f"mod_{contact.kind}"
                ctx = "default"
            a = self.new_channel(a_uuid, a_name, direction="outbound", destination=contact.name,
                                 context=ctx, cid_name=cid_name, cid_number=cid_num, source=src,
                                 hit_dialplan=False)
            a.role = "agent"
            a.profile_obj = prof
            a.set_vars(self._base_vars(a, True))
            if "origination_uuid" in v:
                a.set_var("origination_uuid", a_uuid)
            a.set_vars((k, x) for k, x in v.items() if k != "origination_uuid")
            ls.chan = a
            if contact.kind == "loopback":
                b = self.new_channel(new_uuid(), f"loopback/{contact.name}-b",
                                     direction="inbound", destination=contact.name, context=ctx,
                                     cid_name=cid_name, cid_number=cid_num, source=src,
                                     hit_dialplan=True)
                b.role = "agent_b"
                a.set_vars([("originate_early_media", "false"),
                            ("originate_endpoint", "loopback"),
                            ("other_loopback_leg_uuid", b.uuid), ("loopback_leg", "A")])
                b.set_vars(self._base_vars(b, False) + [("call_uuid", b.uuid)])
                if "origination_uuid" in v:
                    b.set_var("origination_uuid", a_uuid)
                b.set_vars((k, x) for k, x in v.items() if k != "origination_uuid")
                b.set_vars([("other_loopback_leg_uuid", a.uuid), ("loopback_leg", "B")])
                a.loopback_peer, b.loopback_peer = b, a
                ls.b = b
            else:
                a.set_vars([("originate_early_media", "false"),
                            ("originate_endpoint", contact.kind)])
            lr = LegRecord(a_uuid, ls.leg.endpoint, prof.name, job.rec.job_uuid,
                           self.sched.now())
            self.legs[a_uuid] = lr
            a.record = lr
            ls.rec = lr
            ls.status = "ringing"
            self._ringing[a_uuid] = (job, ls)
            ls.timers.append(self.later(self.t.originate_setup, self._leg_start, job, ls))
            lt = ls.leg.vars.get("leg_timeout") or orig.global_vars.get("leg_timeout")
            if lt:
                try:
                    ls.timers.append(self.later(float(lt), self._leg_timeout, job, ls))
                except ValueError:
                    pass

    def _leg_start(self, job: _Job, ls: _LegState) -> None:
        a, b, prof = ls.chan, ls.b, ls.profile
        if a is None or prof is None or not a.alive:
            return
        self.fire_chan("CHANNEL_CREATE", a, C_CREATE)
        if b is not None:
            self.fire_chan("CHANNEL_CREATE", b, C_CREATE)
            b.set_state("CS_EXECUTE")
            b.call_state = "RINGING"
        a.set_state("CS_CONSUME_MEDIA")
        if prof.outcome == ANSWER:
            delay = sample(prof.ring_time, self.rng) or 0.0
            if delay > 0:
                self.mark_progress(a)
                if b is not None:
                    self.mark_progress(b)
                ls.timers.append(self.later(delay, self._leg_answer, job, ls))
            else:
                self._leg_answer(job, ls)
        elif prof.outcome == NO_ANSWER:
            self.mark_progress(a)
            if b is not None:
                self.mark_progress(b)
        else:
            delay = sample(prof.fail_time, self.rng) or 0.0
            ls.timers.append(self.later(delay, self._leg_fail, job, ls, prof.outcome))

    def _leg_answer(self, job: _Job, ls: _LegState) -> None:
        a, b = ls.chan, ls.b
        if job.finished or ls.status != "ringing" or a is None or not a.alive:
            return
        ls.status = "answered"
        self._ringing.pop(a.uuid, None)
        for t in ls.timers:
            t.cancel()
        a.call_state = "DOWN"
        self.mark_answered(a, "CS_CONSUME_MEDIA", 7)
        if b is not None:
            b.set_vars([("DP_MATCH", "ARRAY::" + b.profile["Destination-Number"] + "|:1"),
                        ("current_application", "answer")])
            self.mark_answered(b, "CS_EXECUTE", 4)
        if ls.rec:
            ls.rec.answered_at = self.sched.now()
        # the first leg to answer wins; every other leg loses the race
        for other in job.legs:
            if other is not ls and other.status == "ringing":
                self._leg_fail(job, other, "LOSE_RACE", report=False)
        self._job_result(job, job.rec, job.done_cb, f"+OK {a.uuid}\n")
        orig = job.orig
        a.set_state("CS_EXECUTE", 4)
        if orig.app:
            self.run_app_now(a, ExecMsg(orig.app, orig.app_arg))
        else:
            self.run_app_now(a, ExecMsg("park"))

    def _leg_timeout(self, job: _Job, ls: _LegState) -> None:
        if ls.status == "ringing":
            self._leg_fail(job, ls, "ALLOTTED_TIMEOUT")

    def _job_timeout(self, job: _Job) -> None:
        job.deadline_timer = None
        for ls in job.legs:
            if ls.status == "ringing":
                self._leg_fail(job, ls, "NO_ANSWER")

    def _leg_fail(self, job: _Job, ls: _LegState, cause: str, report: bool = True) -> None:
        if ls.status not in ("ringing", "new"):
            return
        ls.status = "failed"
        ls.cause = cause
        for t in ls.timers:
            t.cancel()
        if ls.chan is not None:
            self._ringing.pop(ls.chan.uuid, None)
        if ls.chan is not None and ls.chan.alive:
            self.hangup(ls.chan, cause)
        if not report or job.finished:
            return
        if all(x.status == "failed" for x in job.legs):
            first = job.legs[0].cause
            job.group_idx += 1
            if job.group_idx < len(job.orig.groups) and job.deadline_timer is not None:
                self._start_group(job)
            else:
                self._job_result(job, job.rec, job.done_cb, f"-ERR {first}\n")

    # -- hangup ----------------------------------------------------------------------------
    def hangup(self, ch: Channel, cause: str = "NORMAL_CLEARING") -> None:
        if not ch.alive:
            return
        from .channel import now_us
        # a ringing originate leg: its job must learn the cause
        job_leg = self._ringing_leg_of(ch)
        ch.hangup_cause = cause
        ch.hangup_us = now_us()
        ch.answer_state = "hangup"
        ch.state_number = 10
        ch.touch_profile()
        for t in ch.timers:
            t.cancel()
        ch.timers.clear()
        for app in ch.app_stack:
            if app.timer:
                app.timer.cancel()
        ch.app_stack.clear()
        ch.msg_queue.clear()
        ch.set_vars([("hangup_cause", cause), ("hangup_cause_q850", str(Q850.get(cause, 16)))])
        self.fire_chan("CHANNEL_HANGUP", ch, C_HANGUP)
        peer = ch.bridged
        if peer is not None:
            ch.bridged = None
            peer.bridged = None
            peer_is_b = ch.bridge_a
            if ch.bridge_a:
                self.fire_chan("CHANNEL_UNBRIDGE", ch, C_UNBRIDGE, pre=self._bridge_ids(ch, peer))
            ch.set_var("bridge_hangup_cause", cause)
            if peer_is_b:
                self.later(0.001, self._bridged_b_after, peer, cause)
            else:
                self.later(self.t.hangup_propagation, self._bridged_a_after, peer, ch, cause)
        self.set_state_event(ch, "CS_HANGUP", 10)
        ch.call_state = "HANGUP"
        self.set_state_event(ch, "CS_REPORTING", 11)
        self._final_vars(ch)
        self.fire_chan("CHANNEL_HANGUP_COMPLETE", ch, C_HANGUP_DONE,
                       pre=[("Hangup-Cause", cause)])
        ch.gone = True
        self.channels.pop(ch.uuid, None)
        lp = ch.loopback_peer
        if lp is not None and lp.alive:
            self.later(0.0, self.hangup, lp, cause)
        if ch.socket is not None:
            ch.socket.on_hangup(ch)
        for l in list(ch.listeners):
            l.on_channel_gone(ch)
        rec = ch.record
        now = self.sched.now()
        if isinstance(rec, CallRecord) and ch.role == "member":
            rec.ended_at = now
            rec.hangup_cause = cause
            rec.done.set()
        elif isinstance(rec, LegRecord) and ch.role == "agent":
            rec.ended_at = now
            rec.cause = cause
            rec.done.set()
        if job_leg is not None:
            job, ls = job_leg
            self._leg_fail(job, ls, cause)
        _release(ch)

    def _ringing_leg_of(self, ch: Channel):
        jl = self._ringing.pop(ch.uuid, None)
        if jl is not None and jl[1].status == "ringing":
            return jl
        return None

    def _final_vars(self, ch: Channel) -> None:
        secs = (ch.hangup_us - ch.created_us) / 1e6
        bill = (ch.hangup_us - ch.answered_us) / 1e6 if ch.answered_us else 0.0
        ch.set_vars([("duration", str(int(secs))), ("billsec", str(int(bill))),
                     ("mduration", str(int(secs * 1000))), ("billmsec", str(int(bill * 1000))),
                     ("end_epoch", str(ch.hangup_us // 1_000_000)),
                     ("end_uepoch", str(ch.hangup_us))])

    def _bridge_ids(self, a: Channel, b: Channel) -> list[tuple[str, str]]:
        return [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]

    def _bridged_b_after(self, b: Channel, cause: str) -> None:
        """The A side (member) hung up: the B side (agent) hangs up or parks."""
        if not b.alive:
            return
        if b.vars.get("park_after_bridge") == "true":
            b.set_state("CS_PARK")
            self.park(b)
        else:
            self.hangup(b, "NORMAL_CLEARING")

    def _bridged_a_after(self, a: Channel, b: Channel, cause: str) -> None:
        """The B side (agent) hung up: the A side (member) leaves the bridge (§5.1)."""
        if not a.alive:
            return
        self.fire_chan("CHANNEL_UNBRIDGE", a, C_UNBRIDGE, pre=self._bridge_ids(a, b))
        a.set_var("last_bridge_hangup_cause", cause)
        a.set_var("bridge_hangup_cause", cause)
        self.set_state_event(a, "CS_EXECUTE")
        if a.vars.get("hangup_after_bridge") == "true":
            self.hangup(a, cause)
        elif a.vars.get("park_after_bridge") == "true":
            a.set_state("CS_PARK")
            self.park(a)
        else:
            self.continue_dialplan(a)

    # -- the socket app's return and the dialplan after it ----------------------------------
    def continue_dialplan(self, ch: Channel) -> None:
        rec = ch.record
        spec: CallerSpec | None = getattr(ch, "caller_spec", None)
        if isinstance(rec, CallRecord):
            rec.continued_in_dialplan = True
        if self.history is not None:
            self.history.setdefault(ch.uuid, []).append("dialplan-continue")
        steps = spec.after_socket if spec else []
        pos = getattr(ch, "dialplan_pos", 0)
        for app, arg in steps[pos:]:
            pos += 1
            if not ch.alive:
                return
            if app == "socket" and self.socket_app is not None:
                ch.dialplan_pos = pos  # when that session ends, the dialplan goes on after it
                self.socket_app(ch, None, arg)
                return
            if app == "set":
                k, _, v = arg.partition("=")
                ch.set_var(k, v)
            elif app == "hangup":
                self.hangup(ch, arg or "NORMAL_CLEARING")
                return
            elif app == "park":
                self.park(ch)
                return
        if ch.alive:
            self.hangup(ch, "NORMAL_CLEARING")

    def leave_socket(self, ch: Channel) -> None:
        """The socket app returns (bridge, resume or close): UNPARK, EXECUTE_COMPLETE socket."""
        if not ch.in_socket:
            return
        ch.in_socket = False
        self.unpark(ch)
        resp = ch.vars.get("current_application_response", "_none_")
        self.fire_chan("CHANNEL_EXECUTE_COMPLETE", ch, C_EXEC_DONE, post=[
            ("Application", "socket"), ("Application-Data", ch.vars.get("socket_data", "")),
            ("Application-Response", resp), ("Application-UUID", ch.vars.get("socket_app_uuid", ""))])

    def socket_closed(self, ch: Channel, resume: bool, parked: bool) -> None:
        """The dispatcher closed the outbound socket of member *ch* (§2.5)."""
        if not ch.alive or not ch.in_socket:
            return
        rec = ch.record
        if not parked:
            if isinstance(rec, CallRecord):
                rec.stuck = True
            return
        if resume:
            self.interrupt_apps(ch)
            self.leave_socket(ch)
            self.later(self.t.tick, self._continue_if_alive, ch)
        elif not ch.app_stack:
            self.later(self.t.tick, self._leave_and_continue, ch)
        else:
            ch.socket_gone = True   # leave when the running application ends

    def _leave_and_continue(self, ch: Channel) -> None:
        if ch.alive and ch.in_socket:
            self.leave_socket(ch)
            self.continue_dialplan(ch)

    def _continue_if_alive(self, ch: Channel) -> None:
        if ch.alive:
            self.continue_dialplan(ch)

    # -- applications (sendmsg execute) ------------------------------------------------------
    def queue_msg(self, ch: Channel, msg: ExecMsg) -> None:
        """A `sendmsg` was accepted: it is executed on the channel's next media tick."""
        self.later(self.t.tick, self._deliver_msg, ch, msg)

    def _deliver_msg(self, ch: Channel, msg: ExecMsg) -> None:
        if not ch.alive:
            return
        top = ch.current_app()
        if ch.msg_queue or (top is not None and top.event_lock):
            ch.msg_queue.append(msg)
        else:
            self.run_app_now(ch, msg)

    def run_app_now(self, ch: Channel, msg: ExecMsg) -> None:
        from . import apps
        apps.start(self, ch, msg)

    def app_done(self, ch: Channel, app: RunningApp, response: str) -> None:
        from . import apps
        apps.complete(self, ch, app, response)

    def drain_queue(self, ch: Channel) -> None:
        while ch.alive and ch.msg_queue:
            top = ch.current_app()
            if top is not None and top.event_lock:
                return
            self.run_app_now(ch, ch.msg_queue.pop(0))
        if ch.alive and not ch.app_stack and getattr(ch, "socket_gone", False) and ch.in_socket:
            self.later(self.t.tick, self._leave_and_continue, ch)

    def interrupt_apps(self, ch: Channel) -> None:
        """Bridge or resume interrupts running media apps with `PLAYBACK ERROR`."""
        from . import apps
        apps.interrupt_all(self, ch)

    # -- bridge ----------------------------------------------------------------------------
    def uuid_bridge(self, a: Channel, b: Channel) -> None:
        self.stats["bridges"] += 1
        self.later(self.t.tick, self._bridge_step1, a, b)

    def _bridge_step1(self, a: Channel, b: Channel) -> None:
        if not (a.alive and b.alive):
            return
        epoch = int(time.time())
        for ch, peer, role in ((a, b, "originatee"), (b, a, "originator")):
            ts = f"{epoch}:{new_uuid()}:uuid_br:{peer.uuid}"
            ch.transfer_source = ts
            ch.other, ch.other_type = peer, role
            ch.set_vars([("transfer_history", ts), ("transfer_source", ts)])
            ch.touch_profile()
            ch._other_block = None
        self.interrupt_apps(a)
        if a.in_socket:
            self.leave_socket(a)
            for st in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
                self.set_state_event(a, st)
        else:
            self.unpark(a)
            a.set_state("CS_SOFT_EXECUTE")
        # the B leg leaves its park
        if b.parked:
            self.unpark(b)
            b.app_stack.clear()
            self.fire_chan("CHANNEL_EXECUTE_COMPLETE", b, C_EXEC_DONE, post=[
                ("Application", "park"), ("Application-Response", "_none_"),
                ("Application-UUID", b.vars.get("park_app_uuid", ""))])
        else:
            self.interrupt_apps(b)
        if not b.answered:
            self.later(self.t.tick, self.hangup, b, "DESTINATION_OUT_OF_ORDER")
            self.later(self.t.tick, self.hangup, a, "ORIGINATOR_CANCEL")
            return
        b.set_state("CS_EXECUTE", 4)
        self.fire_chan("CHANNEL_EXECUTE", b, C_EXEC_BRIDGE,
                       post=[("Application", "uuid_bridge"), ("Application-Data", a.uuid)])
        self.later(self.t.tick, self._bridge_step2, a, b)

    def _bridge_step2(self, a: Channel, b: Channel) -> None:
        if not (a.alive and b.alive):
            return
        from .channel import now_us
        t = now_us()
        a.bridged, b.bridged = b, a
        a.bridge_a, b.bridge_a = True, False
        a.other, a.other_type = b, "originatee"
        b.other, b.other_type = a, "originator"
        a.bridged_us = b.bridged_us = t
        a.touch_profile()
        b.touch_profile()
        a._other_block = b._other_block = None
        a.set_vars([("bridge_channel", b.name), ("bridge_uuid", b.uuid), ("signal_bond", b.uuid),
                    ("last_bridge_to", b.uuid)])
        b.set_vars([("bridge_to", a.uuid), ("last_bridge_to", a.uuid), ("bridge_channel", a.name),
                    ("bridge_uuid", a.uuid), ("signal_bond", a.uuid),
                    ("last_bridge_role", "originatee")])
        a.set_state("CS_SOFT_EXECUTE", 3)
        b.set_state("CS_EXCHANGE_MEDIA", 5)
        self.fire_chan("CHANNEL_EXECUTE", a, C_EXEC_BRIDGE,
                       post=[("Application", "uuid_bridge"), ("Application-Data", b.uuid)])
        self.fire_chan("CHANNEL_BRIDGE", a, C_BRIDGE, pre=self._bridge_ids(a, b))
        now = self.sched.now()
        for ch, peer in ((a, b), (b, a)):
            rec = ch.record
            if isinstance(rec, CallRecord) and ch.role == "member":
                rec.bridged_at = now
                rec.agent_uuid = peer.uuid
            elif isinstance(rec, LegRecord) and ch.role == "agent":
                rec.bridged_at = now
                rec.bridged_to = peer.uuid
        # talk time: who hangs up, and when, comes from the agent's profile
        agent = b if b.role == "agent" else a if a.role == "agent" else None
        prof = agent.profile_obj if agent is not None else None
        if prof is not None:
            talk = sample(prof.talk_time, self.rng)
            if talk is not None:
                member = a if agent is b else b
                victim = agent if prof.hangup_by == "agent" else (member.loopback_peer or member)
                agent.timers.append(self.later(talk, self.hangup, victim, "NORMAL_CLEARING"))
        self.drain_queue(a)

    # -- callers ---------------------------------------------------------------------------
    def spawn_caller(self, spec: CallerSpec) -> CallRecord:
        """Create a caller (a loopback pair) whose -b leg runs ``socket`` to the listener."""
        self.stats["callers"] += 1
        ext = spec.extension
        a = self.new_channel(new_uuid(), f"loopback/{ext}-a", direction="outbound",
                             destination=ext, context=spec.context, cid_name=spec.cid_name,
                             cid_number=spec.cid_number, source="mod_loopback",
                             hit_dialplan=False)
        m = self.new_channel(new_uuid(), f"loopback/{ext}-b", direction="inbound",
                             destination=ext, context=spec.context, cid_name=spec.cid_name,
                             cid_number=spec.cid_number, source="mod_loopback",
                             hit_dialplan=True)
        a.role, m.role = "caller", "member"
        a.loopback_peer, m.loopback_peer = m, a
        ov = [("origination_caller_id_number", spec.cid_number),
              ("origination_caller_id_name", spec.cid_name)]
        a.set_vars(self._base_vars(a, True) + ov + [
            ("originate_early_media", "false"), ("originate_endpoint", "loopback"),
            ("other_loopback_leg_uuid", m.uuid), ("loopback_leg", "A")])
        m.set_vars(self._base_vars(m, False) + ov + [
            ("other_loopback_leg_uuid", a.uuid), ("loopback_leg", "B"), ("call_uuid", m.uuid),
            ("cc_queue", spec.queue)])
        m.set_vars(spec.variables.items())
        m.caller_spec = spec
        rec = CallRecord(m.uuid, a.uuid, spec.queue, self.sched.now())
        self.calls[m.uuid] = rec
        m.record = a.record = rec
        self.fire_chan("CHANNEL_CREATE", a, C_CREATE)
        self.fire_chan("CHANNEL_CREATE", m, C_CREATE)
        m.set_state("CS_EXECUTE", 4)
        m.call_state = "RINGING"
        a.set_state("CS_CONSUME_MEDIA", 7)
        if spec.patience is not None:
            m.timers.append(self.later(spec.patience, self._abandon, m))
        if self.dialer is not None:
            self.dialer(m, spec)
        return rec

    def _abandon(self, m: Channel) -> None:
        if m.alive and m.bridged is None:
            rec = m.record
            if isinstance(rec, CallRecord):
                rec.abandoned = True
            peer = m.loopback_peer
            self.hangup(peer if peer is not None and peer.alive else m, "NORMAL_CLEARING")

    def send_dtmf(self, ch: Channel, digits: str) -> None:
        for d in digits:
            self.fire_chan("DTMF", ch, C_DTMF, post=[
                ("DTMF-Digit", d), ("DTMF-Duration", "2000"), ("DTMF-Source", "APP")])
        rec = ch.record
        if isinstance(rec, CallRecord):
            rec.dtmf_sent.append(digits)

    # -- lookups ---------------------------------------------------------------------------
    def get(self, uuid: str) -> Channel | None:
        ch = self.channels.get(uuid)
        return ch if ch is not None and ch.alive else None


_C_FLOWS = ("fire_chan", "set_state_event", "park", "unpark", "mark_answered", "hangup", "leave_socket",
            ("_final_vars", "final_vars"), ("_bridge_step1", "bridge_step1"), ("_bridge_step2", "bridge_step2"),
            ("_bridged_a_after", "bridged_a_after"), "run_app_now")
_PY_FLOWS = {(f if isinstance(f, str) else f[0]): getattr(Switch, f if isinstance(f, str) else f[0])
             for f in _C_FLOWS}
if Channel is not PyChannel:    # the typed channel is built: these flows run in C (_chan.pyx)
    from . import _chan

    _chan.bind_switch(globals())
    for _f in _C_FLOWS:
        _name, _cname = (_f, _f) if isinstance(_f, str) else _f
        setattr(Switch, _name, getattr(_chan, _cname))


class PySwitch(Switch):
    """The switch with the reference (Python) channel, event path and flows, for tests
    comparing it with the typed one."""

    channel_type = PyChannel


for _name, _fn in _PY_FLOWS.items():
    setattr(PySwitch, _name, _fn)
