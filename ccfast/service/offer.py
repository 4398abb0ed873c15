"""One agent leg of one offer: mod_callcenter's offer thread over inbound ESL (reference §5).

Callback agents are originated on the member's own box with our ``origination_uuid`` and
``Job-UUID``; uuid-standby agents are used in place. On answer the core settles the race (ring-all
and ring-progressively), the member is bridged with ``uuid_bridge <member> <agent>`` (member first),
and the bridged call is watched until the agent leg hangs up or ``callcenter_break`` releases it.
Every path ends with exactly one result reported to the core, so an agent always returns to a
definite state.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

import trio

from .. import strings as S
from .expand import expand
from .originate import originate_command

if TYPE_CHECKING:
    from .app import Service
    from .member import MemberSession

log = logging.getLogger("ccfast.offer")

BRIDGE_CONFIRM_TIMEOUT = 3.0  # §5.5 step 8
ANNOUNCE_TIMEOUT = 60.0


class OfferTask:
    """Carries out one ``Offer`` from the core."""

    def __init__(self, service: Service, offer) -> None:
        self.service = service
        self.offer = offer
        self.leg_uuid: str | None = None
        self.cancel_cause: str | None = None
        self.break_requested = trio.Event()
        self._finished = False

    # -- control from elsewhere ----------------------------------------------------------------
    def cancel(self, cause: str) -> None:
        """Hang up the ringing leg (caller left, another leg won, agent status changed)."""
        if self.cancel_cause is None:
            self.cancel_cause = cause
            if self.leg_uuid is not None:
                member = self.service.members.get(self.offer.member_uuid)
                box = member.box if member else self.service.default_box()
                self.service.spawn(self._kill, box, self.leg_uuid, cause)

    async def _kill(self, box, leg: str, cause: str) -> None:
        try:
            await box.api(f"uuid_kill {leg} {cause}")
        except Exception as exc:
            log.debug("offer %s: uuid_kill failed: %r", self.offer.offer_id, exc)

    # -- the offer thread ------------------------------------------------------------------------
    async def run(self) -> None:
        svc, offer = self.service, self.offer
        member = svc.members.get(offer.member_uuid)
        if member is None or member.gone:
            svc.core.offer_member_gone(offer.offer_id, svc.clock.now())
            svc.changed()
            return
        box = member.box
        try:
            agent_type = offer.agent_type.lower()
            if agent_type == S.TYPE_CALLBACK.lower():
                await self._callback(member, box)
            elif agent_type == S.TYPE_UUID_STANDBY.lower():
                await self._standby(member, box)
            else:
                self._failed(S.HANGUP_USER_NOT_REGISTERED)
        except BaseException:
            if not self._finished:
                # link lost or cancelled: the agent must not stay Receiving
                with trio.CancelScope(shield=True):
                    self._failed(self.cancel_cause or S.HANGUP_ORIGINATOR_CANCEL)
            raise

    def _failed(self, cause: str) -> None:
        svc = self.service
        self._finished = True
        svc.core.offer_failed(self.offer.offer_id, cause, svc.clock.now())
        svc.offer_done(self)

    async def _callback(self, member: MemberSession, box) -> None:
        svc, offer = self.service, self.offer
        self.leg_uuid = str(uuidlib.uuid4())
        command = originate_command(
            leg_uuid=self.leg_uuid,
            contact=offer.agent_contact or "",
            member=member.data,
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
        if self.cancel_cause is not None:
            self._failed(self.cancel_cause)
            return
        with box.router.watch(self.leg_uuid) as watch:
            svc.metrics_originate_sent(offer)
            body = await box.bgapi("originate " + command, str(uuidlib.uuid4()))
            if not body.startswith("+OK"):
                cause = body[4:].strip() if body.startswith("-ERR") else S.HANGUP_NONE
                self._failed(cause or S.HANGUP_NONE)
                return
            await self._answered(member, box, watch)

    async def _standby(self, member: MemberSession, box) -> None:
        svc, offer = self.service, self.offer
        self.leg_uuid = offer.agent_uuid
        exists = (await box.api(f"uuid_exists {offer.agent_uuid}")).strip() if offer.agent_uuid else "false"
        if exists != "true":
            now = svc.clock.now()
            svc.core.agent_set("status", offer.agent, S.STATUS_LOGGED_OUT, now)
            svc.core.agent_set("uuid", offer.agent, "", now)
            self._failed(S.HANGUP_NONE)
            return
        vars_ = (
            f"cc_side=agent;cc_queue={offer.queue};cc_agent={offer.agent};cc_agent_type={offer.agent_type};"
            f"cc_member_uuid={offer.member_uuid};cc_member_session_uuid={offer.member_session_uuid}"
        )
        await box.api(f"uuid_setvar_multi {offer.agent_uuid} {vars_}")
        with box.router.watch(offer.agent_uuid) as watch:
            await self._answered(member, box, watch)

    async def _answered(self, member: MemberSession, box, watch) -> None:
        """§5.5 – §5.6."""
        svc, offer, leg = self.service, self.offer, self.leg_uuid
        answer = svc.core.offer_answered(offer.offer_id, leg, svc.clock.now())
        svc.changed()
        if not answer.won:
            self._finished = True
            svc.offer_done(self)
            await self._kill(box, leg, S.HANGUP_LOSE_RACE)  # W7: the loser is not left connected
            return
        for cancel in answer.cancel:
            svc.cancel_offer(cancel.offer_id, S.HANGUP_LOSE_RACE)
        member.agent_answered()
        params = svc.core.queue_params(offer.queue)
        if params is not None and params.record_template:
            path = expand(params.record_template, member.data)
            await box.api(f"uuid_setvar {member.session_uuid} cc_record_filename {path}")
            await box.api(f"uuid_record {member.session_uuid} start {path}")
        announce = member.variable("cc_outbound_announce")
        if announce:
            await self._play_to_agent(box, watch, announce)
        await box.api(f"uuid_setvar_multi {member.session_uuid} cc_agent_found=true;cc_agent_uuid={leg}")

        outcome = await self._bridge(member, box, watch)
        now = svc.clock.now()
        if outcome == "member-gone":
            svc.core.offer_bridge_failed(offer.offer_id, True, now)
            self._finished = True
            svc.offer_done(self)
            failed_announce = member.variable("cc_bridge_failed_outbound_announce")
            if failed_announce:
                await self._play_to_agent(box, watch, failed_announce)
            if offer.agent_type.lower() == S.TYPE_CALLBACK.lower():
                await self._kill(box, leg, S.HANGUP_ORIGINATOR_CANCEL)
            return
        if outcome == "agent-gone":
            svc.core.offer_bridge_failed(offer.offer_id, False, now)
            self._finished = True
            svc.offer_done(self)
            return
        svc.core.offer_bridged(offer.offer_id, now)
        svc.changed()
        member.bridged()
        await box.api(f"uuid_setvar {leg} cc_agent_bridged true")
        await box.api(
            f"uuid_setvar_multi {member.session_uuid} cc_agent_bridged=true;cc_agent={offer.agent};"
            f"cc_queue_answered_epoch={now}"
        )
        await self._watch_bridge(watch)
        now = svc.clock.now()
        self._finished = True
        svc.core.offer_ended(offer.offer_id, now)
        svc.offer_done(self)
        try:
            await box.api(f"uuid_setvar {member.session_uuid} cc_queue_terminated_epoch {now}")
        except Exception:
            pass

    async def _bridge(self, member: MemberSession, box, watch) -> str:
        """Bridge member → agent; 'bridged', 'member-gone' or 'agent-gone' (§5.5 steps 8-9)."""
        if member.gone:
            return "member-gone"
        reply = await box.api(f"uuid_bridge {member.session_uuid} {self.leg_uuid}")
        if reply.startswith("-ERR"):
            return "member-gone" if member.gone else "agent-gone"
        agent_gone = False
        with trio.move_on_after(BRIDGE_CONFIRM_TIMEOUT):
            async with trio.open_nursery() as nursery:

                async def agent_hangup() -> None:
                    nonlocal agent_gone
                    async for event in watch.receive:
                        if event.get("Event-Name") == "CHANNEL_HANGUP":
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
        # neither side reported: "bridge failed but both channels up" counts as bridged (§5.5)
        return "member-gone" if member.gone else "bridged"

    async def _watch_bridge(self, watch) -> None:
        """Until the agent leg hangs up or callcenter_break releases it (§5.6)."""
        async with trio.open_nursery() as nursery:

            async def on_break() -> None:
                await self.break_requested.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_break)
            async for event in watch.receive:
                if event.get("Event-Name") in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                    break
            nursery.cancel_scope.cancel()

    async def _play_to_agent(self, box, watch, sound: str) -> None:
        files = sound[len("ARRAY::"):].split("|:") if sound.startswith("ARRAY::") else [sound]
        for file in files:
            await box.api(f"uuid_broadcast {self.leg_uuid} {file} aleg")
        # §5.5 step 5 blocks until played; the caller keeps hearing hold music meanwhile
        with trio.move_on_after(ANNOUNCE_TIMEOUT):
            done = 0
            async for event in watch.receive:
                name = event.get("Event-Name")
                if name == "CHANNEL_HANGUP":
                    return
                if name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "playback":
                    done += 1
                    if done >= len(files):
                        return
