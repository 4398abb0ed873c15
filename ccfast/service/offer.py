"""One agent leg of one offer: mod_callcenter's offer thread over inbound ESL (reference §5).

Callback agents are originated on the member's own box with our ``origination_uuid`` and
``Job-UUID``; uuid-standby agents are used in place. On answer the core settles the race (ring-all
and ring-progressively), the member is bridged with ``uuid_bridge <member> <agent>`` (member first),
and the bridged call is watched until the agent leg hangs up (uuid-standby: until it is no longer
bridged) or ``callcenter_break`` releases it.

Every path ends with exactly one result reported to the core, chosen by how far the offer got
(``phase``): ringing → ``offer_failed``, answered → ``offer_bridge_failed``, bridged →
``offer_ended``. That holds also when the task is cancelled or the box link drops, so an agent
always returns to a definite state. A cancelled ringing leg is killed at once, and again as soon
as FreeSWITCH has created it if the first ``uuid_kill`` came too early: no zombie agent calls.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections import ChainMap
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from .. import strings as S
from .expand import expand_fully
from .originate import export_vars, originate_command

if TYPE_CHECKING:
    from .app import Service
    from .member import MemberSession

log = logging.getLogger("ccfast.offer")

BRIDGE_CONFIRM_TIMEOUT = 3.0  # §5.5 step 8
LINK_ERROR = "-ERR link"  # what _kill returns when the command could not reach the box
LOST_LEG_CLEANUP = 300.0  # how long a leg orphaned by a lost link is remembered for cleanup
ANNOUNCE_TIMEOUT = 60.0
KILL_RETRY = 0.05  # seconds between uuid_kill attempts on a leg FreeSWITCH has not created yet

RINGING, ANSWERED, BRIDGED, DONE = "ringing", "answered", "bridged", "done"


class OfferTask:
    """Carries out one ``Offer`` from the core."""

    def __init__(self, service: Service, offer) -> None:
        self.service = service
        self.offer = offer
        self.leg_uuid: str | None = None
        self.cancel_cause: str | None = None
        self.break_requested = trio.Event()
        self.phase = RINGING
        self._job_pending = False
        self._job_done = trio.Event()
        self.claimed = False  # cluster: this offer holds the agent's claim

    @property
    def _finished(self) -> bool:
        return self.phase == DONE

    # -- control from elsewhere ----------------------------------------------------------------
    def cancel(self, cause: str) -> None:
        """Hang up the ringing leg (caller left, another leg won, agent status changed)."""
        if self.cancel_cause is None and self.phase == RINGING:
            self.cancel_cause = cause
            if self.leg_uuid is not None and self._job_pending:
                self.service.spawn(self._kill_ringing, self._box(), self.leg_uuid, cause)

    def _box(self):
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
            with trio.move_on_after(KILL_RETRY):
                await self._job_done.wait()
            if not self._job_pending:
                return  # the job's result decides (an answered leg is killed by run())

    # -- the offer thread ------------------------------------------------------------------------
    async def run(self) -> None:
        svc, offer = self.service, self.offer
        member = svc.members.get(offer.member_uuid)
        if member is None or member.gone:
            self.phase = DONE
            svc.core.offer_member_gone(offer.offer_id, svc.clock.now())
            svc.offer_done(self)
            return
        box = member.box
        try:
            if svc.cluster is not None and not await self._claim():
                return
            await self._member_pointer_vars(member, box)
            agent_type = offer.agent_type.lower()
            if agent_type == S.TYPE_CALLBACK.lower():
                await self._callback(member, box)
            elif agent_type == S.TYPE_UUID_STANDBY.lower():
                await self._standby(member, box)
            else:
                self._failed(S.HANGUP_USER_NOT_REGISTERED)
        except BaseException as exc:
            if not self._finished:
                ringing = self.phase == RINGING and self.leg_uuid is not None
                # link lost or cancelled: the agent must not stay Receiving / In a queue call
                with trio.CancelScope(shield=True):
                    self._abort()
                if ringing and isinstance(exc, Exception):
                    # the leg may still ring on the box: hang it up once the link is back
                    svc.spawn(self._kill_after_reconnect, box, self.leg_uuid)
            raise

    async def _claim(self) -> bool:
        """Cluster: claim the agent before anything reaches FreeSWITCH; on failure the offer is
        withdrawn without penalty (the member waits on, the agent is not offered here)."""
        svc = self.service
        if await svc.cluster.claim(self.offer):
            self.claimed = True
            return True
        self.phase = DONE
        svc.core.offer_withdrawn(self.offer.offer_id, svc.clock.now())
        svc.offer_done(self)
        return False

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

    async def _member_pointer_vars(self, member: MemberSession, box) -> None:
        """§5.1 steps 2-3: the member variables mod_callcenter sets when it offers."""
        offer, strategy = self.offer, self.offer.strategy.lower()
        if strategy == S.RING_PROGRESSIVELY:
            self._quiet(box, f"uuid_setvar {member.session_uuid} cc_last_originated_call "
                                   f"{self.service.clock.now()}")
        elif strategy == S.TOP_DOWN:
            self._quiet(box, f"uuid_setvar_multi {member.session_uuid} "
                                   f"cc_last_agent_tier_position={offer.position};"
                                   f"cc_last_agent_tier_level={offer.level}")

    def _abort(self) -> None:
        svc, now = self.service, self.service.clock.now()
        phase, self.phase = self.phase, DONE
        try:
            if phase == RINGING:
                svc.core.offer_failed(self.offer.offer_id, self.cancel_cause or S.HANGUP_ORIGINATOR_CANCEL, now)
            elif phase == ANSWERED:
                member = svc.members.get(self.offer.member_uuid)
                svc.core.offer_bridge_failed(self.offer.offer_id, member is None or member.gone, now)
            elif phase == BRIDGED:
                svc.core.offer_ended(self.offer.offer_id, now)
        finally:
            svc.offer_done(self)

    def _failed(self, cause: str) -> None:
        svc = self.service
        self.phase = DONE
        svc.core.offer_failed(self.offer.offer_id, cause, svc.clock.now())
        svc.offer_done(self)

    async def _callback(self, member: MemberSession, box) -> None:
        svc, offer = self.service, self.offer
        leg = self.leg_uuid = str(uuidlib.uuid4())
        member_vars = await _member_vars(member, box)
        command = originate_command(
            leg_uuid=leg,
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
            with trio.move_on_after(svc.settings.agent_originate_timeout):
                await box.wait_up()
        if self.cancel_cause is not None:
            self._failed(self.cancel_cause)
            return
        with box.router.watch(leg) as watch:
            svc.metrics_originate_sent(offer)
            self._job_pending = True
            try:
                body = await box.bgapi("originate " + command, str(uuidlib.uuid4()))
            finally:
                self._job_pending = False
                self._job_done.set()
            if not body.startswith("+OK"):
                cause = body[4:].strip() if body.startswith("-ERR") else S.HANGUP_NONE
                # a leg we cancelled reports our cause (ORIGINATOR_CANCEL / LOSE_RACE)
                self._failed(self.cancel_cause or cause or S.HANGUP_NONE)
                return
            if self.cancel_cause is not None:
                # answered just as it was cancelled: it must not stay up as a zombie call
                await self._kill(box, leg, self.cancel_cause)
                self._failed(self.cancel_cause)
                return
            await self._answered(member, box, watch)

    async def _standby(self, member: MemberSession, box) -> None:
        """§5.4: the agent's own channel (``agents.uuid``) is used in place."""
        svc, offer = self.service, self.offer
        self.leg_uuid = offer.agent_uuid
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
        with box.follow(member.session_uuid), box.router.watch(offer.agent_uuid) as watch, \
                box.router.watch(member.session_uuid) as member_watch:
            await self._answered(member, box, watch, member_watch)

    async def _answered(self, member: MemberSession, box, watch, member_watch=None) -> None:
        """§5.5 – §5.6."""
        svc, offer, leg = self.service, self.offer, self.leg_uuid
        callback = member_watch is None
        answer = svc.core.offer_answered(offer.offer_id, leg, svc.clock.now())
        if not answer.won:
            self.phase = DONE
            svc.offer_done(self)
            if callback:
                await self._kill(box, leg, S.HANGUP_LOSE_RACE)  # W7: the loser is not left connected
            return
        self.phase = ANSWERED
        svc.changed()
        for cancel in answer.cancel:
            svc.cancel_offer(cancel.offer_id, S.HANGUP_LOSE_RACE)
        member.agent_answered()
        if callback:
            self._quiet(box, f"uuid_setvar {leg} cc_member_pre_answer_uuid")  # §5.5 step 1: unset
        params = svc.core.queue_params(offer.queue)
        if params is not None and params.record_template:
            path = await expand_fully(params.record_template, member.data, box)
            await box.api(f"uuid_setvar {member.session_uuid} cc_record_filename {path}")
            await box.api(f"uuid_record {member.session_uuid} start {path}")
        announce = member.variable("cc_outbound_announce")
        if announce:
            await self._play_to_agent(box, watch, announce)
        # queued before uuid_bridge on the same link, so set before the bridge runs
        self._quiet(box, f"uuid_setvar_multi {member.session_uuid} cc_agent_found=true;cc_agent_uuid={leg}")

        outcome = await self._bridge(member, box, watch)
        now = svc.clock.now()
        if outcome == "member-gone":
            self.phase = DONE
            svc.core.offer_bridge_failed(offer.offer_id, True, now)
            svc.offer_done(self)
            self._quiet(box, f"uuid_setvar {leg} cc_agent_bridged false")
            failed_announce = member.variable("cc_bridge_failed_outbound_announce")
            if failed_announce:
                await self._play_to_agent(box, watch, failed_announce)
            if callback:
                await self._kill(box, leg, S.HANGUP_ORIGINATOR_CANCEL)
            return
        if outcome == "agent-gone":
            self.phase = DONE
            svc.core.offer_bridge_failed(offer.offer_id, False, now)
            svc.offer_done(self)
            # the member waits again (W8 fix): it is no longer "agent found"
            member.agent_lost()
            self._quiet(box, f"uuid_setvar {member.session_uuid} cc_agent_found")
            if callback:
                # "gone" may only mean the bridge was refused: never leave the leg up unbridged
                await self._kill(box, leg, S.HANGUP_ORIGINATOR_CANCEL)
            return
        self.phase = BRIDGED
        svc.core.offer_bridged(offer.offer_id, now)
        svc.changed()
        member.bridged()
        self._quiet(box, f"uuid_setvar {leg} cc_agent_bridged true")
        self._quiet(
            box,
            f"uuid_setvar_multi {member.session_uuid} cc_agent_bridged=true;cc_agent={offer.agent};"
            f"cc_queue_answered_epoch={now}",
        )
        await self._watch_bridge(watch, member_watch)
        now = svc.clock.now()
        self.phase = DONE
        svc.core.offer_ended(offer.offer_id, now)
        svc.offer_done(self)
        self._quiet(box, f"uuid_setvar {member.session_uuid} cc_queue_terminated_epoch {now}")

    @staticmethod
    def _quiet(box, command: str) -> None:
        """An api command whose result changes nothing (the channel may be gone by now): queued
        in order on the box link, nobody waits for its reply (failures are counted there)."""
        box.api_nowait(command)

    async def _bridge(self, member: MemberSession, box, watch) -> str:
        """Bridge member → agent; 'bridged', 'member-gone' or 'agent-gone' (§5.5 steps 8-9)."""
        if member.gone:
            return "member-gone"
        agent_gone = False

        def saw_hangup(event) -> bool:
            return event.get("Event-Name") in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")

        # a hang-up already queued (e.g. during the announcement) settles it without a bridge
        while True:
            try:
                event = watch.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if saw_hangup(event):
                return "agent-gone"
        reply = await box.api(f"uuid_bridge {member.session_uuid} {self.leg_uuid}")
        if reply.startswith("-ERR"):
            return "member-gone" if member.gone else "agent-gone"
        with trio.move_on_after(BRIDGE_CONFIRM_TIMEOUT):
            async with trio.open_nursery() as nursery:

                async def agent_hangup() -> None:
                    nonlocal agent_gone
                    async for event in watch.receive:
                        if saw_hangup(event):
                            agent_gone = True
                            break
                    nursery.cancel_scope.cancel()

                nursery.start_soon(agent_hangup)
                await member.wait_bridged_or_gone()
                nursery.cancel_scope.cancel()
        if member.channel_bridged or member.is_bridged:
            return "bridged"
        if member.gone:
            return "member-gone"
        if agent_gone:
            return "agent-gone"
        # neither side reported: "bridge call failed but both channels up" counts as bridged (§5.5)
        return "bridged"

    async def _watch_bridge(self, watch, member_watch=None) -> None:
        """Until the agent leg hangs up, or (uuid-standby) is no longer bridged to the member, or
        callcenter_break releases it (§5.6)."""
        async with trio.open_nursery() as nursery:

            async def on_break() -> None:
                await self.break_requested.wait()
                nursery.cancel_scope.cancel()

            async def member_side() -> None:
                # CHANNEL_UNBRIDGE fires on the member (the first uuid_bridge argument) only
                async for event in member_watch.receive:
                    if event.get("Event-Name") in ("CHANNEL_UNBRIDGE", "CHANNEL_HANGUP"):
                        break
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_break)
            if member_watch is not None:
                nursery.start_soon(member_side)
            async for event in watch.receive:
                if event.get("Event-Name") in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                    break
            nursery.cancel_scope.cancel()

    async def _play_to_agent(self, box, watch, sound: str) -> None:
        """Play one file or ``ARRAY::f1::f2`` to the agent leg, one after the other, blocking
        (§5.5 step 5); the caller keeps hearing hold music. Returns early if the agent hangs up."""
        files = [f for f in sound[len("ARRAY::"):].split("::") if f] if sound.startswith("ARRAY::") else [sound]
        with trio.move_on_after(ANNOUNCE_TIMEOUT):
            for file in files:
                reply = await box.api(f"uuid_broadcast {self.leg_uuid} {file} aleg")
                if reply.startswith("-ERR"):
                    return  # the agent channel is gone
                async for event in watch.receive:
                    name = event.get("Event-Name")
                    if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                        # keep the news for _bridge
                        watch.deliver(event)
                        return
                    if (name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "playback"
                            and event.get("Application-Data") == file):
                        break  # played or unplayable (skipped): next file


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
    from .expand import channel_variable

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
