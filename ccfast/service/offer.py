"""One agent leg of one offer: mod_callcenter's offer thread over inbound ESL (reference §5).

Callback agents are originated on the member's own box with our ``origination_uuid`` and
``Job-UUID``; uuid-standby agents are used in place. On answer the core settles the race (ring-all
and ring-progressively), the member is bridged with ``uuid_bridge <member> <agent>`` (member first),
and the bridged call is watched until the agent leg hangs up (uuid-standby: until it is no longer
bridged) or ``callcenter_break`` releases it.

The offer is a state machine driven by the box link's callbacks (the job result, the agent leg's
events, the bridge reply), the member session and one timer: a call costs no trio task. The steps
that must wait on something rare — a cluster claim, variables fetched from the box, a link that is
down, a recording path to expand, an announcement to the agent, a standby channel to check — run as
short tasks that hand back to the state machine.

Every path ends with exactly one result reported to the core, chosen by how far the offer got
(``phase``): ringing → ``offer_failed``, answered → ``offer_bridge_failed``, bridged →
``offer_ended``. That holds also when the box link drops, so an agent always returns to a definite
state. A cancelled ringing leg is killed at once, and again as soon as FreeSWITCH has created it if
the first ``uuid_kill`` came too early: no zombie agent calls.
"""

from __future__ import annotations

import logging
from .. import uuids
from collections import ChainMap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from .. import strings as S
from .expand import channel_variable, expand_fully
from .originate import export_vars, originate_command

if TYPE_CHECKING:
    from .app import Service
    from .caller import MemberSession

log = logging.getLogger("ccfast.offer")

BRIDGE_CONFIRM_TIMEOUT = 3.0  # §5.5 step 8
LINK_ERROR = "-ERR link"  # what _kill returns when the command could not reach the box
LOST_LEG_CLEANUP = 300.0  # how long a leg orphaned by a lost link is remembered for cleanup
ANNOUNCE_TIMEOUT = 60.0
KILL_RETRY = 0.05  # seconds between uuid_kill attempts on a leg FreeSWITCH has not created yet

RINGING, ANSWERED, BRIDGED, DONE = "ringing", "answered", "bridged", "done"
_HANGUP = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"})


class OfferTask:
    """Carries out one ``Offer`` from the core (see the module docstring)."""

    def __init__(self, service: Service, offer) -> None:
        self.service = service
        self.offer = offer
        self.leg_uuid: str | None = None
        self.cancel_cause: str | None = None
        self.phase = RINGING
        self.claimed = False  # cluster: this offer holds the agent's claim
        self._member: MemberSession | None = None
        self._box = None
        self._job_pending = False
        self._agent_hungup = False  # a hangup of the agent leg was seen
        self._watches: list = []  # router watches (and a follow) to close when done
        self._media: trio.MemorySendChannel | None = None  # agent events for a running announcement
        self._confirm = None  # bridge confirmation: (timer) while waiting
        self._standby = False
        self._break_pending = False  # callcenter_break arrived before the bridge

    # -- control from elsewhere ----------------------------------------------------------------
    def cancel(self, cause: str) -> None:
        """Hang up the ringing leg (caller left, another leg won, agent status changed)."""
        if self.cancel_cause is None and self.phase == RINGING:
            self.cancel_cause = cause
            if self.leg_uuid is not None and self._job_pending:
                self.service.spawn(self._kill_ringing, self._current_box(), self.leg_uuid, cause)

    def request_break(self) -> None:
        """``callcenter_break agent``: stop watching the bridged agent channel (§7.5)."""
        if self.phase == BRIDGED:
            self._end()
        else:
            self._break_pending = True

    def _current_box(self):
        member = self.service.members.get(self.offer.member_uuid)
        return member.box if member else self.service.default_box()

    async def _kill(self, box, leg: str, cause: str) -> str:
        try:
            return await box.api(f"uuid_kill {leg} {cause}")
        except Exception as exc:
            log.debug("offer %s: uuid_kill failed: %r", self.offer.offer_id, exc)
            return LINK_ERROR

    async def _kill_ringing(self, box, leg: str, cause: str) -> None:
        """uuid_kill until it lands or the originate has returned (the channel may not exist
        yet right after bgapi; integration notes §6)."""
        while True:
            reply = await self._kill(box, leg, cause)
            if not reply.startswith("-ERR") or not self._job_pending:
                return
            await trio.sleep(KILL_RETRY)
            if not self._job_pending:
                return  # the job's result decides (an answered leg is killed on its result)

    async def _kill_after_reconnect(self, box, leg: str) -> None:
        delay = KILL_RETRY
        with trio.move_on_after(LOST_LEG_CLEANUP):
            while True:
                await box.wait_up()
                reply = await self._kill(box, leg, S.HANGUP_ORIGINATOR_CANCEL)
                if reply != LINK_ERROR:
                    return  # killed, or the channel is gone already
                # backoff: with many orphaned legs a link that refuses commands must not spin
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- results -----------------------------------------------------------------------------
    def _done(self, keep_watching: bool = False) -> None:
        """The core has the result: stop watching (unless an announcement to the agent still
        needs its events), tell the service."""
        self.phase = DONE
        if self._confirm is not None:
            self._confirm.cancel()
            self._confirm = None
        member = self._member
        if member is not None and member.on_settled == self._bridge_check:
            member.on_settled = None
        if not keep_watching:
            self._close_watches()
        self.service.offer_done(self)

    def _close_watches(self) -> None:
        for watch in self._watches:
            watch.close()
        self._watches.clear()

    def _failed(self, cause: str) -> None:
        svc = self.service
        svc.core.offer_failed(self.offer.offer_id, cause, svc.clock.now())
        self._done()

    def _abort(self, exc: BaseException | None = None) -> None:
        """The link dropped (or a step failed): report by phase, so the agent never stays
        Receiving / In a queue call; a leg that may still ring is hung up after reconnect."""
        if self.phase == DONE:
            return
        svc, now, phase = self.service, self.service.clock.now(), self.phase
        ringing = phase == RINGING and self.leg_uuid is not None and not self._standby
        try:
            if phase == RINGING:
                svc.core.offer_failed(self.offer.offer_id, self.cancel_cause or S.HANGUP_ORIGINATOR_CANCEL, now)
            elif phase == ANSWERED:
                member = svc.members.get(self.offer.member_uuid)
                svc.core.offer_bridge_failed(self.offer.offer_id, member is None or member.gone, now)
            elif phase == BRIDGED:
                svc.core.offer_ended(self.offer.offer_id, now)
        finally:
            self._done()
        if ringing and (exc is None or isinstance(exc, Exception)):
            svc.spawn(self._kill_after_reconnect, self._box, self.leg_uuid)

    def _step(self, fn, *args) -> None:
        """Run one synchronous step; a failure ends the offer by its phase (never strands it)."""
        try:
            fn(*args)
        except Exception as exc:
            self.service.failure_log.failed(f"offer step {getattr(fn, '__name__', fn)}", exc)
            self._abort(exc)

    async def _task(self, coro_fn, *args) -> None:
        """A rare asynchronous step; the same rule as ``_step``."""
        try:
            await coro_fn(*args)
        except BaseException as exc:
            if self.phase != DONE:
                with trio.CancelScope(shield=True):
                    self._abort(exc)
            raise

    @staticmethod
    def _quiet(box, command: str) -> None:
        """An api command whose result changes nothing (the channel may be gone by now): queued
        in order on the box link, nobody waits for its reply (failures are counted there)."""
        box.api_nowait(command)

    # -- ringing (§5.1 – §5.4) ---------------------------------------------------------------
    def start(self) -> None:
        svc, offer = self.service, self.offer
        member = svc.members.get(offer.member_uuid)
        if member is None or member.gone:
            svc.core.offer_member_gone(offer.offer_id, svc.clock.now())
            self._done()
            return
        self._member, self._box = member, member.box
        if svc.cluster is not None:
            svc.spawn(self._task, self._claim)
        else:
            self._step(self._ring)

    async def _claim(self) -> None:
        """Cluster: claim the agent before anything reaches FreeSWITCH; on failure the offer is
        withdrawn without penalty (the member waits on, the agent is not offered here)."""
        svc = self.service
        if await svc.cluster.claim(self.offer):
            self.claimed = True
            self._ring()
            return
        svc.core.offer_withdrawn(self.offer.offer_id, svc.clock.now())
        self._done()

    def _ring(self) -> None:
        offer, member, box = self.offer, self._member, self._box
        strategy = offer.strategy.lower()
        # §5.1 steps 2-3: the member variables mod_callcenter sets when it offers
        if strategy == S.RING_PROGRESSIVELY:
            self._quiet(box, f"uuid_setvar {member.session_uuid} cc_last_originated_call "
                             f"{self.service.clock.now()}")
        elif strategy == S.TOP_DOWN:
            self._quiet(box, f"uuid_setvar_multi {member.session_uuid} "
                             f"cc_last_agent_tier_position={offer.position};cc_last_agent_tier_level={offer.level}")
        agent_type = offer.agent_type.lower()
        if agent_type == S.TYPE_CALLBACK.lower():
            self.leg_uuid = uuids.uuid4()
            if _missing_exports(member):
                self.service.spawn(self._task, self._fetch_then_originate)
            else:
                self._originate(member.data)
        elif agent_type == S.TYPE_UUID_STANDBY.lower():
            self._standby = True
            self.leg_uuid = offer.agent_uuid
            self.service.spawn(self._task, self._standby_check)
        else:
            self._failed(S.HANGUP_USER_NOT_REGISTERED)

    async def _fetch_then_originate(self) -> None:
        self._originate(await _member_vars(self._member, self._box))

    def _originate(self, member_vars: Mapping[str, str]) -> None:
        svc, offer, box = self.service, self.offer, self._box
        command = "originate " + originate_command(
            leg_uuid=self.leg_uuid,
            contact=offer.agent_contact or "",
            member=member_vars,
            queue=offer.queue,
            joined_epoch=offer.joined_epoch,
            member_uuid=offer.member_uuid,
            member_session_uuid=offer.member_session_uuid,
            agent=offer.agent,
            agent_type=offer.agent_type,
            cid_name=offer.cid_name,
            cid_number=offer.cid_number,
            originate_timeout=svc.settings.agent_originate_timeout,
        )
        if not box.up:
            # the box's link is down: hold the offer (the agent stays Receiving) rather than
            # failing it at once, which would make the dispatcher offer again in a tight loop
            svc.spawn(self._task, self._originate_when_up, command)
            return
        self._send_originate(command)

    async def _originate_when_up(self, command: str) -> None:
        with trio.move_on_after(self.service.settings.agent_originate_timeout):
            await self._box.wait_up()
        self._send_originate(command)

    def _send_originate(self, command: str) -> None:
        if self.cancel_cause is not None:
            self._failed(self.cancel_cause)
            return
        svc = self.service
        self._watches.append(self._box.router.watch_cb(self.leg_uuid, self._agent_event))
        svc.metrics_originate_sent(self.offer)
        self._job_pending = True
        self._box.bgapi_then(command, uuids.uuid4(), self._job_result)

    def _job_result(self, body: Any) -> None:
        self._job_pending = False
        if self.phase == DONE:
            return
        if isinstance(body, BaseException):
            self._abort(body)  # the link dropped while the leg rang
            return
        if not body.startswith("+OK"):
            cause = body[4:].strip() if body.startswith("-ERR") else S.HANGUP_NONE
            # a leg we cancelled reports our cause (ORIGINATOR_CANCEL / LOSE_RACE)
            self._failed(self.cancel_cause or cause or S.HANGUP_NONE)
            return
        if self.cancel_cause is not None:
            # answered just as it was cancelled: it must not stay up as a zombie call
            self._quiet(self._box, f"uuid_kill {self.leg_uuid} {self.cancel_cause}")
            self._failed(self.cancel_cause)
            return
        self._step(self._answered)

    async def _standby_check(self) -> None:
        """§5.4: the agent's own channel (``agents.uuid``) is used in place."""
        svc, offer, box, member = self.service, self.offer, self._box, self._member
        exists = (await box.api(f"uuid_exists {offer.agent_uuid}")).strip() if offer.agent_uuid else "false"
        if exists != "true":
            now = svc.clock.now()
            svc.core.agent_set("status", offer.agent, S.STATUS_LOGGED_OUT, now)
            svc.core.agent_set("uuid", offer.agent, "", now)
            self._failed(S.HANGUP_NONE)
            return
        pairs = [
            ("cc_side", "agent"), ("cc_queue", offer.queue), ("cc_agent", offer.agent),
            ("cc_agent_type", offer.agent_type), ("cc_member_uuid", offer.member_uuid),
            ("cc_member_session_uuid", offer.member_session_uuid),
        ]
        member_vars = await _member_vars(member, box)
        exported = export_vars(member_vars)
        exported.pop("cc_export_vars", None)  # the list itself is not copied to a standby channel
        for name in _export_names(member_vars):
            pairs.append((name, exported.get(name, "")))  # absent on the member → unset
        for name, value in pairs:  # values may hold ';' and '=': one uuid_setvar each, in order
            self._quiet(box, f"uuid_setvar {offer.agent_uuid} {name} {value}".rstrip())
        if self.phase == DONE:
            return
        self._watches.append(box.follow_cb(member.session_uuid))
        self._watches.append(box.router.watch_cb(offer.agent_uuid, self._agent_event))
        self._watches.append(box.router.watch_cb(member.session_uuid, self._member_event))
        self._answered()

    # -- events of the legs ------------------------------------------------------------------
    def _agent_event(self, event) -> None:
        name = event.get("Event-Name")
        hangup = name in _HANGUP
        if hangup:
            self._agent_hungup = True
        if self._media is not None:
            try:
                self._media.send_nowait(event)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass
        if not hangup or self._media is not None:  # an announcement is reading the events
            return
        if self.phase == ANSWERED and self._confirm is not None:
            self._step(self._bridge_check)
        elif self.phase == BRIDGED:
            self._step(self._end)

    def _member_event(self, event) -> None:
        """uuid-standby: CHANNEL_UNBRIDGE fires on the member (the first uuid_bridge argument)."""
        if self.phase == BRIDGED and event.get("Event-Name") in ("CHANNEL_UNBRIDGE", "CHANNEL_HANGUP"):
            self._step(self._end)

    # -- answered: the race, media, the bridge (§5.5) ----------------------------------------
    def _answered(self) -> None:
        svc, offer, leg, member, box = self.service, self.offer, self.leg_uuid, self._member, self._box
        answer = svc.core.offer_answered(offer.offer_id, leg, svc.clock.now())
        if not answer.won:
            self._done()
            if not self._standby:
                self._quiet(box, f"uuid_kill {leg} {S.HANGUP_LOSE_RACE}")  # W7: the loser is not left connected
            return
        self.phase = ANSWERED
        svc.changed()
        for cancel in answer.cancel:
            svc.cancel_offer(cancel.offer_id, S.HANGUP_LOSE_RACE)
        member.agent_answered()
        if not self._standby:
            self._quiet(box, f"uuid_setvar {leg} cc_member_pre_answer_uuid")  # §5.5 step 1: unset
        params = svc.core.queue_params(offer.queue)
        record = params.record_template if params is not None else None
        announce = member.variable("cc_outbound_announce")
        if record or announce:
            svc.spawn(self._task, self._media_then_bridge, record, announce)
        else:
            self._bridge()

    async def _media_then_bridge(self, record: str | None, announce: str | None) -> None:
        member, box = self._member, self._box
        if record:
            path = await expand_fully(record, member.data, box)
            await box.api(f"uuid_setvar {member.session_uuid} cc_record_filename {path}")
            await box.api(f"uuid_record {member.session_uuid} start {path}")
        if announce:
            await self._play_to_agent(announce)
        if self.phase == ANSWERED:
            self._bridge()

    def _bridge(self) -> None:
        """Bridge member → agent; then wait for the member side to confirm (§5.5 steps 7-9)."""
        member, box = self._member, self._box
        # queued before uuid_bridge on the same link, so set before the bridge runs
        self._quiet(box, f"uuid_setvar_multi {member.session_uuid} cc_agent_found=true;cc_agent_uuid={self.leg_uuid}")
        if member.gone:
            self._outcome("member-gone")
        elif self._agent_hungup:
            self._outcome("agent-gone")  # hung up already (e.g. during the announcement)
        else:
            box.api_then(f"uuid_bridge {member.session_uuid} {self.leg_uuid}", self._bridge_reply)

    def _bridge_reply(self, reply: Any) -> None:
        if self.phase != ANSWERED:
            return
        if isinstance(reply, BaseException):
            self._abort(reply)
            return
        if reply.startswith("-ERR"):
            self._outcome("member-gone" if self._member.gone else "agent-gone")
            return
        self._confirm = self.service.call_later(BRIDGE_CONFIRM_TIMEOUT, self._confirm_timeout)
        self._member.on_settled = self._bridge_check
        self._bridge_check()

    def _bridge_check(self) -> None:
        """While the bridge is being confirmed: the member's side settled or the agent hung up."""
        member = self._member
        if self.phase != ANSWERED or self._confirm is None:
            return
        if member.channel_bridged or member.is_bridged:
            self._outcome("bridged")
        elif member.gone:
            self._outcome("member-gone")
        elif self._agent_hungup:
            self._outcome("agent-gone")

    def _confirm_timeout(self) -> None:
        if self.phase == ANSWERED and self._confirm is not None:
            # neither side reported: "bridge call failed but both channels up" counts as bridged
            self._step(self._outcome, "bridged")

    def _outcome(self, outcome: str) -> None:
        svc, offer, member, box, leg = self.service, self.offer, self._member, self._box, self.leg_uuid
        if self._confirm is not None:
            self._confirm.cancel()
            self._confirm = None
        if member.on_settled == self._bridge_check:
            member.on_settled = None
        now = svc.clock.now()
        if outcome == "member-gone":
            svc.core.offer_bridge_failed(offer.offer_id, True, now)
            failed_announce = member.variable("cc_bridge_failed_outbound_announce")
            self._done(keep_watching=bool(failed_announce))
            self._quiet(box, f"uuid_setvar {leg} cc_agent_bridged false")
            if failed_announce:
                svc.spawn(self._after_member_gone, failed_announce)
            elif not self._standby:
                self._quiet(box, f"uuid_kill {leg} {S.HANGUP_ORIGINATOR_CANCEL}")
            return
        if outcome == "agent-gone":
            svc.core.offer_bridge_failed(offer.offer_id, False, now)
            self._done()
            # the member waits again (W8 fix): it is no longer "agent found"
            member.agent_lost()
            self._quiet(box, f"uuid_setvar {member.session_uuid} cc_agent_found")
            if not self._standby:
                # "gone" may only mean the bridge was refused: never leave the leg up unbridged
                self._quiet(box, f"uuid_kill {leg} {S.HANGUP_ORIGINATOR_CANCEL}")
            return
        self.phase = BRIDGED
        svc.core.offer_bridged(offer.offer_id, now)
        svc.changed()
        member.bridged()
        self._quiet(box, f"uuid_setvar {leg} cc_agent_bridged true")
        self._quiet(box, f"uuid_setvar_multi {member.session_uuid} cc_agent_bridged=true;cc_agent={offer.agent};"
                         f"cc_queue_answered_epoch={now}")
        if self._agent_hungup or self._break_pending:
            self._end()

    async def _after_member_gone(self, failed_announce: str) -> None:
        """The caller left before the bridge: tell the agent, then hang up the leg."""
        try:
            await self._play_to_agent(failed_announce)
        finally:
            self._close_watches()
        if not self._standby:
            await self._kill(self._box, self.leg_uuid, S.HANGUP_ORIGINATOR_CANCEL)

    # -- bridged (§5.6) ----------------------------------------------------------------------
    def _end(self) -> None:
        if self.phase != BRIDGED:
            return
        svc = self.service
        now = svc.clock.now()
        svc.core.offer_ended(self.offer.offer_id, now)
        self._done()
        self._quiet(self._box, f"uuid_setvar {self._member.session_uuid} cc_queue_terminated_epoch {now}")

    # -- announcements to the agent ----------------------------------------------------------
    async def _play_to_agent(self, sound: str) -> None:
        """Play one file or ``ARRAY::f1::f2`` to the agent leg, one after the other, blocking
        (§5.5 step 5); the caller keeps hearing hold music. Returns early if the agent hangs up."""
        files = [f for f in sound[len("ARRAY::"):].split("::") if f] if sound.startswith("ARRAY::") else [sound]
        box = self._box
        send, receive = trio.open_memory_channel(64)
        self._media = send
        try:
            with trio.move_on_after(ANNOUNCE_TIMEOUT):
                for file in files:
                    if self._agent_hungup:
                        return
                    reply = await box.api(f"uuid_broadcast {self.leg_uuid} {file} aleg")
                    if reply.startswith("-ERR"):
                        return  # the agent channel is gone
                    async for event in receive:
                        name = event.get("Event-Name")
                        if name in _HANGUP:
                            return  # _agent_hungup is set: the bridge step sees it
                        if (name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "playback"
                                and event.get("Application-Data") == file):
                            break  # played or unplayable (skipped): next file
        finally:
            self._media = None
            send.close()


def _missing_exports(member: MemberSession) -> bool:
    """True when ``cc_export_vars`` names a variable the connect data lacks (read live)."""
    names = member.variable("cc_export_vars")
    if not names:
        return False
    data = member.data
    return any(raw.strip() and ("variable_" + raw.strip()) not in data for raw in names.split(","))


async def _member_vars(member: MemberSession, box) -> Mapping[str, str]:
    """The member's channel data, plus the ``cc_export_vars`` it lacks read live from the box.

    The connect snapshot misses variables set later, and a name with ``:`` in it
    (``nolocal:x``) cannot be read back from an event header block; ``uuid_getvar`` can."""
    data = member.data
    names = member.variable("cc_export_vars")
    if not names:
        return data
    fetched: dict[str, str] = {}
    for raw in names.split(","):
        raw = raw.strip()
        if raw and ("variable_" + raw) not in data:
            try:
                value = await box.api(f"uuid_getvar {member.session_uuid} {raw}")
            except Exception:
                continue
            if value and value != "_undef_" and not value.startswith("-ERR"):
                fetched["variable_" + raw] = value
    return ChainMap(fetched, data) if fetched else data


def _export_names(member) -> list[str]:
    """The names listed in the member's ``cc_export_vars``, without ``nolocal:`` prefixes."""
    out = []
    for raw in (channel_variable(member, "cc_export_vars") or "").split(","):
        raw = raw.strip()
        for prefix in ("nolocal:", "_nolocal_"):
            if raw.startswith(prefix):
                raw = raw[len(prefix):]
                break
        if raw:
            out.append(raw)
    return out
