"""The dispatcher service: one trio nursery that owns the core and every task around it.

``Service.run`` starts, in one nursery: a link per FreeSWITCH box (inbound ESL), the outbound
listener for callers, the dispatch loop, and — when configured — the control port, the metrics
server and the store writer. Member sessions and offers are tasks in the same nursery. State lives
in the core; this class only routes notifications between tasks and the core, and after every change
flushes the core's events (to FreeSWITCH and control subscribers) and journal (to the store).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from .. import strings as S
from ..esl._steps import STEPS, close_step, open_step
from ..esl._throttle import FailureLog
from .ccevents import encode_event, encode_presence, encode_sendevent, render
from .clock import Clock
from .dispatcher import Dispatcher
from .caller import MemberSession
from .offer import OfferTask
from .ports import Box

log = logging.getLogger("ccfast.service")

PRESENCE_PREFIX = "callcenter+"  # PRESENCE_PROBE `to` of a queue subscription (§6.3)
READOPT_CHECK_DELAY = 5.0  # seconds after a restart before absent callers are no longer waited for


class Timer:
    """A pending ``Service.call_later``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] | None = fn

    def cancel(self) -> None:
        self.fn = None


class Service:
    """Everything between the core and the sockets."""

    def __init__(self, core, settings, *, clock: Clock | None = None, config=None) -> None:
        self.core = core
        self.settings = settings
        self.config = config
        self.clock = clock or Clock()
        self.boxes: dict[str, Box] = {}
        self.members: dict[str, MemberSession] = {}
        self.offers: dict[int, OfferTask] = {}
        self._departed: dict[str, MemberSession] = {}  # answered members whose call is still up
        self.event_listeners: list[Callable[[str, list[tuple[str, str]]], None]] = []
        # listeners that want events only while wanted() is true (the control port's subscribers):
        # no header list is rendered for nobody
        self.optional_listeners: list[tuple[Callable[[str, list[tuple[str, str]]], None], Callable[[], bool]]] = []
        self.journal_sink: Callable[[list], None] | None = None
        self.events_sink: Callable[[list, float], None] | None = None  # metrics.observe_events
        self.stats = {"offers_started": 0, "members_joined": 0, "members_left": 0, "events_fired": 0}
        self.on_originate: Callable[[Any], None] | None = None
        self.cluster = None  # ports.ClusterHooks when several nodes share the database
        # metrics hooks (serve.py wires them to ccfast.metrics; None = off, nothing tracked)
        self.on_dispatch_latency: Callable[[float, str], None] | None = None  # (seconds, trigger)
        self.on_member_hung_up: Callable[[str], None] | None = None  # before its end event flushes
        self._member_ready: dict[str, float] = {}  # member uuid -> trio time it joined
        self._offer_ready: dict[int, tuple[float, str]] = {}  # offer id -> (ready trio time, trigger)
        self._nursery: trio.Nursery | None = None
        self._soon: list[Callable[[], Any]] = []
        self._soon_wake = trio.Event()
        self._soon_held = False  # a release runs the soon-list at the current step's end
        self._timers: list = []  # heap of (deadline, seq, Timer)
        self._timer_seq = itertools.count()
        self._timer_wake = trio.Event()
        self.failure_log = FailureLog(log)
        self.dispatcher = Dispatcher(
            core, self.clock,
            start_offer=self.start_offer,
            member_timeout=self.member_timeout,
            after_pass=self.flush,
            poll_interval=getattr(core, "poll_interval", None),  # the oracle baseline polls
        )
        self.dispatcher.after_offers = self.push

    # -- tasks ------------------------------------------------------------------------------
    def spawn(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the service nursery; its failure is logged, never fatal.

        One caller's or one offer's trouble (a socket that died, a command refused) must not
        take the dispatcher and every other call down with it.
        """
        assert self._nursery is not None, "service not running"
        self._nursery.start_soon(self._guarded, fn, args)

    async def _guarded(self, fn, args) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            self.stats["task_failures"] = self.stats.get("task_failures", 0) + 1
            # rate-limited: when a link drops, thousands of tasks fail with the same error at once
            self.failure_log.failed(f"task {getattr(fn, '__qualname__', fn)}", exc)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._run_soon)
            nursery.start_soon(self._run_timers)
            await nursery.start(self.dispatcher.run)
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                self.failure_log.flush()

    def push(self) -> None:
        """End of a step of the hot path: a pass runs now if something changed, and what was
        queued on the box links leaves now (one non-blocking write per link) — not one scheduler
        batch later in the dispatcher's and each link writer's task."""
        self.dispatcher.run_if_poked()
        for box in self.boxes.values():
            push = getattr(box, "push", None)
            if push is not None:
                push()

    def soon(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` after the current step: at the end of the hot-path step it is called in
        (``esl._steps``), else once the current task reaches its next checkpoint (one task runs
        them), in order either way. For notifications that must not act in the middle of their
        sender's step, e.g. a member's exit after the offer that bridged it has done its part."""
        self._soon.append(fn)
        if STEPS.depth:  # in a hot-path step: run them at its end instead of in another task step
            if not self._soon_held:
                self._soon_held = True
                STEPS.held.append(self._release_soon)
        else:
            self._soon_wake.set()

    def _release_soon(self) -> None:
        self._soon_held = False
        if self._soon:
            self._run_soon_batch()

    async def _run_soon(self) -> None:
        while True:
            await self._soon_wake.wait()
            self._soon_wake = trio.Event()
            self._run_soon_batch()

    def _run_soon_batch(self) -> None:
        """The pending soon-calls, in order, as one hot-path step (ending with ``push``)."""
        batch, self._soon = self._soon, []
        open_step()
        try:
            for fn in batch:
                try:
                    fn()
                except Exception as exc:
                    self.failure_log.failed(f"soon {getattr(fn, '__qualname__', fn)}", exc)
            self.push()
        finally:
            close_step()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Timer:
        """Call ``fn()`` after ``delay`` seconds (one task runs every timer); ``cancel()`` on
        the returned timer stops it."""
        timer = Timer(fn)
        deadline = trio.current_time() + delay
        if not self._timers or deadline < self._timers[0][0]:
            self._timer_wake.set()
        heapq.heappush(self._timers, (deadline, next(self._timer_seq), timer))
        return timer

    async def _run_timers(self) -> None:
        timers = self._timers
        while True:
            now = trio.current_time()
            open_step()
            try:
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if timer.fn is not None:
                        fn, timer.fn = timer.fn, None
                        try:
                            fn()
                        except Exception as exc:
                            self.failure_log.failed(f"timer {getattr(fn, '__qualname__', fn)}", exc)
                self.push()
            finally:
                close_step()
            self._timer_wake = trio.Event()
            with trio.move_on_at(timers[0][0] if timers else math.inf):
                await self._timer_wake.wait()

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- boxes and members -------------------------------------------------------------------
    def add_box(self, box: Box) -> None:
        self.boxes[box.name] = box
        if hasattr(box, "on_presence_probe"):
            box.on_presence_probe = self.presence_probe
        client = getattr(box, "client", None)
        if client is not None:
            # an offer's events and job results may free an agent: pass and write now
            client.after_read = self.push

    async def reconcile_box(self, box: Box) -> None:
        """After a box's link came back: settle what happened while it was down.

        Offers still ringing when the link dropped were already failed (their job result is
        lost); here every leg ccfast knows on that box is checked, and a bridged agent leg that
        no longer exists ends its call as if its hangup had been seen.
        """
        for task in list(self.offers.values()):
            member = self.members.get(task.offer.member_uuid) or self._departed.get(task.offer.member_uuid)
            if task.leg_uuid is None or (member is not None and member.box is not box):
                continue
            try:
                exists = (await box.api(f"uuid_exists {task.leg_uuid}")).strip() == "true"
            except Exception:
                return  # the link dropped again; the next reconnect retries
            if not exists:
                box.router.route(task.leg_uuid, {"Event-Name": "CHANNEL_HANGUP", "Unique-ID": task.leg_uuid,
                                                 "Hangup-Cause": "NORMAL_CLEARING"})

    async def forget_gone_callers(self) -> int:
        """After a restart: callers waiting to be re-adopted whose channel no box has any more
        are forgotten (their rows stay Abandoned, as mod_callcenter leaves them) instead of being
        waited for until ``discard-abandoned-after``. Checked ``READOPT_CHECK_DELAY`` after the
        start, when callers on their way back (dialplan fallback) have had time to return.
        Returns how many were forgotten."""
        await trio.sleep(READOPT_CHECK_DELAY)
        sessions = self.core.readopt_sessions(self.clock.now())
        forgotten = 0
        for session in sessions:
            alive = False
            for box in self.boxes.values():
                try:
                    if (await box.api(f"uuid_exists {session}")).strip() == "true":
                        alive = True
                        break
                except Exception:
                    alive = True  # a box that cannot answer may hold it: keep waiting
                    break
            if not alive and self.core.readopt_forget(session):
                forgotten += 1
        if forgotten:
            log.info("recovery: %d caller(s) gone while ccfast was down; not waited for", forgotten)
        return forgotten

    def default_box(self) -> Box:
        return next(iter(self.boxes.values()))

    def box_for(self, channel_data) -> Box:
        """The box a member channel lives on: by Core-UUID, else the only/first box."""
        core_uuid = channel_data.get("Core-UUID")
        for box in self.boxes.values():
            if core_uuid and getattr(box, "core_uuid", None) == core_uuid:
                return box
        return self.default_box()

    def on_connection(self, conn) -> None:
        """A caller's outbound ESL connection (``OutboundHub``): serve it to its end."""
        MemberSession(self, conn).start()

    def resolve_queue(self, name: str):
        """The queue's params, loading it lazily from the config like mod_callcenter (§2.6)."""
        from ..config import resolve_queue

        if resolve_queue(self.core, self.config, name):
            return self.core.queue_params(name)
        return None

    def member_left(self, session: MemberSession) -> None:
        self.members.pop(session.member_uuid, None)
        self._member_ready.pop(session.member_uuid, None)
        if session.is_bridged or session.agent_found:
            self._departed[session.member_uuid] = session  # for member-queue-end's snapshot
        self.stats["members_left"] += 1

    def member_timeout(self, timeout) -> None:
        session = self.members.get(timeout.member_uuid)
        if session is not None:
            session.timeout(timeout.reason)

    # -- offers --------------------------------------------------------------------------------
    def start_offer(self, offer) -> None:
        task = OfferTask(self, offer)
        self.offers[offer.offer_id] = task
        self.stats["offers_started"] += 1
        if self.on_dispatch_latency is not None:
            self._offer_ready[offer.offer_id] = self._ready_point(offer)
        task.start()

    def _ready_point(self, offer) -> tuple[float, str]:
        """When the pair of this offer became dispatchable, and which side made it so.

        Called inside a dispatch pass. A member that joined after the previous pass began is
        seen by the core for the first time: ``member``, from its join. Otherwise the member
        was already waiting and something on the agent side made the offer possible (an agent
        freed, a status change, a wrap-up or ring timer, a failed leg): ``agent``, from the
        first change the dispatcher was poked with (or the timer it slept until)."""
        d = self.dispatcher
        joined = self._member_ready.get(offer.member_uuid)
        if joined is not None and joined >= d.prev_pass_at:
            return joined, "member"
        return d.cause_at, "agent"

    def offer_done(self, task: OfferTask) -> None:
        self.offers.pop(task.offer.offer_id, None)
        self._offer_ready.pop(task.offer.offer_id, None)
        self.changed()
        if self.cluster is not None and task.claimed:
            self.cluster.offer_finished(task.offer)
        self._departed.pop(task.offer.member_uuid, None)

    def cancel_offer(self, offer_id: int, cause: str) -> None:
        task = self.offers.get(offer_id)
        if task is not None:
            task.cancel(cause)

    def metrics_originate_sent(self, offer) -> None:
        """Right before the offer's originate is written: observe its dispatch latency."""
        ready = self._offer_ready.pop(offer.offer_id, None)
        if ready is not None and self.on_dispatch_latency is not None:
            self.on_dispatch_latency(max(0.0, trio.current_time() - ready[0]), ready[1])
        if self.on_originate is not None:
            self.on_originate(offer)

    def break_agent_channel(self, uuid: str) -> bool:
        """``callcenter_break agent <uuid>``: stop watching that agent channel (§7.5)."""
        found = False
        for task in self.offers.values():
            if task.leg_uuid == uuid:
                task.request_break()
                found = True
        return found

    # -- after every change --------------------------------------------------------------------
    def changed(self, member: MemberSession | None = None) -> None:
        """State changed outside a pass: publish what the core recorded and wake the loop.

        ``member``: the session that changed (its join, its exit); its join time is noted for
        dispatch latency, and a caller who hung up is reported before its end event flushes."""
        if member is not None:
            uuid = member.member_uuid
            if member.gone:
                # an answered caller is counted answered already: only a waiting one abandons
                if self.on_member_hung_up is not None and not (member.is_bridged or member.agent_found):
                    self.on_member_hung_up(uuid)
            elif self.on_dispatch_latency is not None and uuid not in self._member_ready and uuid in self.members:
                self._member_ready[uuid] = trio.current_time()
        self.flush()
        self.dispatcher.poke()

    def flush(self) -> None:
        events = self.core.drain_events()
        if events:
            listeners = self.event_listeners
            if self.optional_listeners:
                listeners = listeners + [fn for fn, wanted in self.optional_listeners if wanted()]
            boxes = [box for box in self.boxes.values() if box.up]
            out: list[bytes] | None = [] if boxes else None  # the sendevents, encoded once for every box
            for action, headers in events:
                self._fire(action, headers, listeners, out)
            if out:
                for box in boxes:
                    box.sendevents(out)
            if self.events_sink is not None:
                self.events_sink(events, self.clock.time())
        journal = self.core.drain_journal()
        if journal and self.journal_sink is not None:
            self.journal_sink(journal)

    def presence_probe(self, box, event) -> None:
        """``PRESENCE_PROBE`` for ``callcenter+<queue>@…`` (§6.3): answer with the queue's
        presence on that box (a queue that does not resolve gets nothing, as in the module)."""
        to = event.get("to") or ""
        if not to.lower().startswith(PRESENCE_PREFIX) or "@" not in to:
            return
        queue = to[len(PRESENCE_PREFIX):]
        if self.resolve_queue(queue) is None:
            return
        if box.up:
            box.send_presence(encode_presence(queue, self.core.member_count(queue)))

    def _fire(self, action: str, headers, listeners, out: list[bytes] | None) -> None:
        """One core event: its ``sendevent`` (and a members-count's PRESENCE_IN, §6.3) onto
        ``out`` (None: no box is up), and to ``listeners`` (fixed per flush)."""
        member_uuid = headers.get("CC-Member-UUID", "")
        member = self.members.get(member_uuid) or self._departed.get(member_uuid)
        member_channel = member.data if member is not None else None
        self.stats["events_fired"] += 1
        rendered = render(action, headers, member_channel, None) if listeners else None
        if out is not None:
            encoded = (encode_sendevent(rendered) if rendered is not None
                       else encode_event(action, headers, member_channel))
            out.append(encoded.data)
            if action == S.ACTION_MEMBERS_COUNT:
                queue = headers.get("CC-Queue")
                if queue:
                    out.append(encode_presence(queue, int(headers.get("CC-Count") or 0)).data)
        for listener in listeners:
            listener(action, rendered)
