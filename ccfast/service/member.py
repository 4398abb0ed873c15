"""One caller in a queue: mod_callcenter's ``callcenter`` application over outbound ESL.

Reference §3: the join sequence (§3.2), the wait with hold music, announcements and exit keys
(§3.3, §3.4), and the exit (§3.5). The timers of §3.4 are decided by the core and delivered here by
``timeout()``; offers report ``agent_answered()``/``bridged()``. The session ends its socket after
``resume`` so a caller that was not bridged continues in the dialplan after ``socket``.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

import trio

from .. import strings as S
from ..esl.inbound import CommandFailed
from ..params import atoi
from .expand import channel_variable, expand

if TYPE_CHECKING:
    from .app import Service
    from .ports import Box, MemberLink

log = logging.getLogger("ccfast.member")

HANGUP_GRACE = 2.0  # seconds to wait for CHANNEL_HANGUP_COMPLETE before closing a dead session
DECLINE_CONFIRM = 2.0  # seconds to wait for the channel to run our `log` before closing anyway
PLAYBACK_STOP_RESPONSES = ("FILE PLAYED", "PLAYBACK ERROR", "FILE NOT FOUND")


class MemberSession:
    """State of one member channel while ccfast serves it."""

    def __init__(self, service: Service, link: MemberLink, box: Box) -> None:
        self.service = service
        self.link = link
        self.box = box
        self.session_uuid = link.uuid
        self.queue = ""
        self.member_uuid = ""
        self.joined_epoch = 0
        self.t_called = 0
        self.reason: str | None = None
        self.exit_key: str | None = None
        self.agent_found = False
        self.is_bridged = False  # cc_agent_bridged: the offer confirmed the bridge
        self.channel_bridged = False  # the member channel reported CHANNEL_BRIDGE
        self.gone = False
        self.moh: str | None = None
        self._changed = trio.Event()
        self._settled: trio.Event | None = None

    # -- notifications from the dispatcher and offers --------------------------------------
    def timeout(self, reason: str) -> None:
        """The core decided a max-wait timeout (§3.4)."""
        if self.reason is None:
            self.reason = reason
        self._poke()

    def agent_answered(self) -> None:
        self.agent_found = True

    def agent_lost(self) -> None:
        """The answering agent vanished before the bridge: the member simply waits on (§5.5)."""
        self.agent_found = False

    def bridged(self) -> None:
        self.is_bridged = True
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._settled_check()

    def _settled_check(self) -> None:
        if (self.channel_bridged or self.is_bridged or self.gone) and self._settled is not None:
            self._settled.set()

    async def wait_bridged_or_gone(self) -> None:
        """Until the member channel is bridged or has gone (used by the offer at bridge time)."""
        if self._settled is None:
            self._settled = trio.Event()
        self._settled_check()
        await self._settled.wait()

    @property
    def data(self):
        return self.link.data

    def variable(self, name: str) -> str | None:
        return channel_variable(self.link.data, name)

    # -- the application ---------------------------------------------------------------------
    async def run(self) -> None:
        svc = self.service
        queue = (self.variable("cc_queue") or "").strip().split(" ")[0]
        if not queue:
            await self._decline("no cc_queue set")
            return
        params = svc.resolve_queue(queue)
        if params is None:
            await self._decline(f"queue {queue!r} not found")
            return
        self.queue = queue
        if svc.cluster is not None and not svc.cluster.owns(queue):
            await self._redirect(queue)
            return
        link = self.link
        # §3.2 in one write: FreeSWITCH runs them in order; the join waits for answer's +OK
        await link.pipeline([("resume",), ("linger",), ("myevents",), ("execute", "answer", None, True)])

        now = svc.clock.now()
        self.t_called = now
        base_score = atoi(self.variable("cc_base_score"))
        join = svc.core.member_join(
            queue,
            str(uuidlib.uuid4()),
            self.session_uuid,
            self.variable("caller_id_number") or "",
            self.variable("caller_id_name") or "",
            now,
            base_score,
            now,
        )
        self.member_uuid = join.member_uuid
        self.joined_epoch = join.joined_epoch
        svc.members[self.member_uuid] = self
        svc.changed(member=self)

        try:
            moh = self.variable("cc_moh_override") or params.moh_sound
            self.moh = expand(moh, self.link.data) if moh else None
            await self._start_waiting(
                f"uuid_setvar_multi {self.session_uuid} cc_side=member;cc_member_uuid={self.member_uuid};"
                f"cc_agent_found=;cc_agent_bridged=;cc_queue_joined_epoch={now};cc_queue={queue}"
            )
            # the channel's events are handled as the socket's reader gets them: no task per caller
            self.link.on_event(self._on_link_event)
            if params.announce_sound and params.announce_frequency > 0:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._announce, params.announce_sound, params.announce_frequency)
                    await self._wait()
                    nursery.cancel_scope.cancel()
            else:
                await self._wait()
        finally:
            self.link.on_event(None)
            await self._exit()

    async def _start_waiting(self, setvars: str) -> None:
        """The member's variables, then hold music, written together (one round trip).

        A playback that FreeSWITCH refuses leaves the caller waiting in silence (as a failed
        ``_play_moh`` does); a lost socket raises."""
        if not self.moh:
            await self.link.api(setvars)
            return
        try:
            await self.link.pipeline([("api", setvars), ("execute", "playback", self.moh, False)])
        except CommandFailed as exc:
            log.debug("member %s: hold music not started: %r", self.session_uuid, exc)

    async def _wait(self) -> None:
        while not (self.reason or self.is_bridged or self.gone):
            self._changed = trio.Event()
            await self._changed.wait()

    def _on_link_event(self, event) -> None:
        """One event of the member channel, or None: the socket has closed."""
        if event is None:
            self.gone = True
            self._poke()
        else:
            self._on_event(event)

    def _on_event(self, event) -> None:
        name = event.get("Event-Name")
        if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "DISCONNECT_NOTICE"):
            self.gone = True
            self._poke()
        elif name == "DTMF":
            digit = event.get("DTMF-Digit") or ""
            keys = event.get("variable_cc_exit_keys") or self.variable("cc_exit_keys") or ""
            if digit and digit in keys and self.reason is None and not self.agent_found:
                self.exit_key = digit
                self.reason = S.CANCEL_EXIT_WITH_KEY
                self._poke()
        elif name == "CHANNEL_BRIDGE":
            self.channel_bridged = True  # the offer records the bridge, then calls bridged()
            self._settled_check()
        elif name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "playback":
            if event.get("Application-Data") == self.moh and not (self.reason or self.is_bridged or self.gone):
                response = event.get("Application-Response") or ""
                if response == "FILE PLAYED":
                    self.service.spawn(self._play_moh)  # hold music loops (§3.3)
                else:
                    self.moh = None  # unplayable: silence for the rest of the wait

    async def _play_moh(self) -> None:
        if self.moh and not (self.reason or self.is_bridged or self.gone):
            # no event-lock: later sendmsg (events, announcements) run nested inside it
            try:
                await self.link.execute("playback", self.moh)
            except Exception as exc:  # restarts run in the service nursery: never let them kill it
                log.debug("member %s: hold music not restarted: %r", self.session_uuid, exc)

    async def _announce(self, sound: str, every: int) -> None:
        while True:
            await trio.sleep(every)
            if self.reason or self.is_bridged or self.gone:
                return
            await self.box.api(f"uuid_displace {self.session_uuid} stop {sound}")
            reply = await self.box.api(f"uuid_displace {self.session_uuid} start {sound} 0")
            if reply.startswith("-ERR"):
                return  # announcements stop for this member (§3.4)

    async def _exit(self) -> None:
        """§3.5: the cancel path or the answered path, then hand the channel back."""
        svc = self.service
        with trio.CancelScope(shield=True):
            now = svc.clock.now()
            agent_found = self.is_bridged or self.agent_found
            reason = self.reason
            if reason is None and not agent_found:
                reason = S.CANCEL_BREAK_OUT
            if self.gone or (reason is not None and reason != S.CANCEL_NONE):
                for cancel in svc.core.member_cancel(self.member_uuid, reason or S.CANCEL_NONE, now):
                    svc.cancel_offer(cancel.offer_id, S.HANGUP_ORIGINATOR_CANCEL)
                svc.changed(member=self)
                if not self.gone:
                    vars_ = (f"cc_agent_found=;cc_queue_canceled_epoch={now};cc_cause={S.CC_CAUSE_CANCEL};"
                             f"cc_cancel_reason={reason}")
                    if self.exit_key:
                        vars_ += f";cc_exit_key={self.exit_key}"
                    # in order on the box link: uuid_break's reply proves the variables are set
                    # before the socket closes and the dialplan continues
                    self.box.api_nowait(f"uuid_setvar_multi {self.session_uuid} {vars_}")
                    await self._quiet_api(f"uuid_break {self.session_uuid} all")
            else:
                svc.core.member_answered_exit(self.member_uuid)
                svc.changed(member=self)
                await self._quiet_api(
                    f"uuid_setvar_multi {self.session_uuid} cc_agent_found=;cc_cause={S.CC_CAUSE_ANSWERED}")
            svc.member_left(self)
            await self._leave()

    async def _quiet_api(self, command: str) -> None:
        try:
            await self.box.api(command)
        except Exception as exc:  # the link may be down; the member's fate is already decided
            log.debug("member %s: %s failed: %r", self.session_uuid, command.split()[0], exc)

    async def _decline(self, why: str) -> None:
        """Like the app with no usable queue (§3.1): nothing answered or set, dialplan goes on.

        The socket may only be closed once the channel is parked in the socket app (closing
        earlier strands it, integration notes §2.5); a ``log`` app that has completed proves it,
        and puts the warning into FreeSWITCH's log too."""
        log.warning("member %s: %s; returning to the dialplan", self.session_uuid, why)
        link = self.link
        try:
            await link.command("resume")
            await link.command("myevents")
            await link.execute("log", f"WARNING ccfast: {why}; returning to the dialplan")
            with trio.move_on_after(DECLINE_CONFIRM):
                while True:
                    event = await link.next_event()
                    name = event.get("Event-Name")
                    if name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "log":
                        break
                    if name in ("CHANNEL_HANGUP", "DISCONNECT_NOTICE"):
                        break
        except Exception as exc:  # the caller may be gone already
            log.debug("member %s: decline: %r", self.session_uuid, exc)
        await self._leave()

    async def _redirect(self, queue: str) -> None:
        """Cluster: another node dispatches ``queue``: move the caller's channel to its
        outbound socket (FreeSWITCH runs ``socket`` again), or back to the dialplan if no live
        owner appears in time."""
        address = await self.service.cluster.redirect_address(queue)
        if address is None:
            await self._decline(f"queue {queue!r} has no live owner in the cluster")
            return
        try:
            await self.link.execute("socket", f"{address} async full")
        except Exception as exc:
            log.debug("member %s: redirect to %s failed: %r", self.session_uuid, address, exc)
        await self._leave()

    async def _leave(self) -> None:
        with trio.move_on_after(HANGUP_GRACE if self.gone else 0.5):
            await self.link.aclose()
