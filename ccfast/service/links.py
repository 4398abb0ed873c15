"""``BoxLink``: an ``ccfast.esl`` inbound connection as the service's ``Box`` port.

``BoxLink`` owns one ``InboundClient``: it subscribes to the channel events the offers need plus
BACKGROUND_JOB, routes each event to the watchers of its ``Unique-ID``, learns the box's Core-UUID
(to place callers on their own box), and fires ccfast's events with ``sendevent`` without waiting
for their replies (the link writes all commands of one scheduler tick together), so the hot path
never waits on the socket.
"""

from __future__ import annotations

import logging
import time

import trio

from .. import strings as S
from ..esl.inbound import CommandFailed, ConnectionLost, InboundClient
from .router import ChannelRouter

log = logging.getLogger("ccfast.links")

START_WAIT = 5.0  # seconds serve waits for a box at start before opening its listeners anyway

# what the offers act on: job results, hangups, announcement ends, a standby member's unbridge
# (an answer arrives as the job result; the bridge is confirmed on the member's own socket;
# CHANNEL_HANGUP always precedes CHANNEL_HANGUP_COMPLETE, a ~5 KB event not needed as well)
BOX_EVENTS = (
    "BACKGROUND_JOB", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE",
    "PRESENCE_PROBE",  # a phone subscribed to a queue's presence (§6.3)
)
# FreeSWITCH OR-s filters (integration notes §7.4): only agent legs (tagged cc_side=agent in the
# originate, or by uuid_setvar on a uuid-standby channel) and job results reach the link. The
# member channels' events come over their own outbound sockets; decoding them here again was a
# third of the link's traffic. Channels an offer must follow otherwise get a temporary
# Unique-ID filter (BoxLink.follow).
AGENT_SIDE = ("variable_cc_side", "agent")
BOX_FILTERS = (AGENT_SIDE, ("Event-Name", "BACKGROUND_JOB"), ("Event-Name", "PRESENCE_PROBE"))


class BoxLink:
    """One FreeSWITCH box over inbound ESL (implements ``ports.Box``)."""

    def __init__(self, name: str, host: str, port: int, password: str, *, on_reconnect=None, on_state=None) -> None:
        self.name = name
        self.router = ChannelRouter()
        self.core_uuid: str | None = None
        self.client = InboundClient(
            host, port, password, events=BOX_EVENTS, filters=BOX_FILTERS, on_reconnect=on_reconnect,
            on_state=on_state,
        )
        self.client.on_event = self._on_event  # routed from the reader: no queue, no task hop
        self.on_presence_probe = None  # (box, event): set by the service
        self.events_dropped = 0
        self.commands_failed = 0  # fire-and-forget commands whose reply was -ERR or never came
        # on_command(verb, seconds): round trip of each awaited api/bgapi (metrics); None = off
        self.on_command = None

    @property
    def up(self) -> bool:
        return self.client.is_up

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up. Reports started once the box answered and told its Core-UUID, or
        after ``START_WAIT`` seconds without it: a box that is down at start must not keep
        ccfast's listeners (and the other boxes' callers) waiting; it joins when it answers."""
        identified = trio.Event()

        async def identify() -> None:
            await self.client.wait_up()
            await self._learn_identity()
            identified.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.client.run)
            nursery.start_soon(identify)
            with trio.move_on_after(START_WAIT):
                await identified.wait()
            if not identified.is_set():
                log.warning("box %s (%s:%s) does not answer yet (%s); serving without it until it does",
                            self.name, self.client.host, self.client.port,
                            getattr(self.client, "last_error", None) or "no reply")
            task_status.started(self)

    async def wait_up(self) -> None:
        await self.client.wait_up()

    async def _learn_identity(self) -> None:
        """The box's Core-UUID, which callers' channel data carry (to place them on their box)."""
        try:
            value = (await self.client.api("global_getvar", "core_uuid")).strip()
        except (ConnectionLost, CommandFailed):
            return
        if value and not value.startswith("-"):
            self.core_uuid = value

    def _on_event(self, event) -> None:
        """From the link's reader, in wire order (after each chunk ``client.after_read`` runs)."""
        if self.core_uuid is None:
            self.core_uuid = event.get("Core-UUID")
        if event.get("Event-Name") == "PRESENCE_PROBE":
            if self.on_presence_probe is not None:
                self.on_presence_probe(self, event)
            return
        self.router.route(event.get("Unique-ID"), event)

    def push(self) -> None:
        """Write the commands queued so far now (the end of a step of the hot path), instead of
        when the link's writer task next runs."""
        self.client.flush_nowait()

    async def api(self, command: str) -> str:
        """``api <command>``'s body; its round trip goes to ``on_command`` (commands that got a
        reply; a lost link or a cancel is not a round trip)."""
        if self.on_command is None:
            return await self.client.api(command)
        t0 = time.perf_counter()
        reply = await self.client.api(command)
        self.on_command(command.split(" ", 1)[0], time.perf_counter() - t0)
        return reply

    def follow_cb(self, uuid: str) -> "_Closer":
        """This (non-agent) channel's events reach the router too until the returned object's
        ``close()`` (a temporary ``filter Unique-ID <uuid>``, queued before any later command)."""
        self.client.add_filter("Unique-ID", uuid)
        return _Closer(lambda: self.client.remove_filter("Unique-ID", uuid))

    def bgapi_then(self, command: str, job_uuid: str, on_result) -> None:
        """``bgapi <command>`` with our Job-UUID; ``on_result(body or exception)`` once the
        BACKGROUND_JOB arrived, the command was refused (CommandFailed) or the link failed
        (called at once when the link is down). Timed into ``on_command`` like ``bgapi``."""
        done = self._timed_callback(command, on_result, "job")
        try:
            self.client.bgapi_nowait(command, job_uuid=job_uuid, on_result=done)
        except ConnectionLost as exc:
            done(exc)

    def api_nowait(self, command: str) -> None:
        """``api <command>`` whose reply nobody awaits (queued in order; failures counted)."""
        try:
            self.client.api_nowait(command, on_reply=self._count_failure)
        except ConnectionLost as exc:
            self.commands_failed += 1
            log.debug("box %s: %s not sent: %r", self.name, command.split(" ", 1)[0], exc)

    def api_then(self, command: str, on_reply) -> None:
        """``api <command>`` queued in order; ``on_reply(body or exception)`` once its reply
        came or the link failed (called at once, with the exception, when the link is down)."""
        done = self._timed_callback(command, on_reply, "reply")
        try:
            self.client.api_nowait(command, on_reply=done)
        except ConnectionLost as exc:
            self.commands_failed += 1
            on_reply(exc)

    def _timed_callback(self, command: str, callback, kind: str):
        """The link-side callback of ``api_then``/``bgapi_then``: times the round trip into
        ``on_command``, hands ``callback`` the reply's body (a job result is already one) or the
        exception, and logs what ``callback`` raises (the link would swallow it silently)."""
        timed = self.on_command
        t0 = time.perf_counter() if timed is not None else 0.0

        def done(result) -> None:
            failed = isinstance(result, BaseException)
            if timed is not None and not failed:
                timed(command.split(" ", 1)[0], time.perf_counter() - t0)
            try:
                callback(result if failed or isinstance(result, str) else getattr(result, "body", ""))
            except Exception:
                log.exception("box %s: %s callback of %s failed", self.name, kind, command.split(" ", 1)[0])
        return done

    def _count_failure(self, reply) -> None:
        if isinstance(reply, BaseException) or getattr(reply, "body", "").startswith("-ERR"):
            self.commands_failed += 1

    def sendevents(self, commands: list[bytes]) -> None:
        """Queue encoded ``sendevent`` commands (``ccevents``; whole frames), in order, with one
        reply slot each; never blocks (a down link or a refused event counts a drop)."""
        try:
            self.client.post_many(commands, self._count_dropped_event)
        except ConnectionLost:
            self.events_dropped += len(commands)

    def send_presence(self, headers) -> None:
        """``sendevent PRESENCE_IN`` (a queue's presence, §6.3; ``headers`` may be
        ``ccevents.encode_presence``'s already encoded command); never blocks."""
        try:
            self.client.sendevent_nowait("PRESENCE_IN", headers, on_reply=self._count_dropped_event)
        except ConnectionLost:
            self.events_dropped += 1

    def _count_dropped_event(self, reply) -> None:
        if isinstance(reply, BaseException) or not getattr(reply, "ok", False):
            self.events_dropped += 1


class _Closer:
    __slots__ = ("_fn",)

    def __init__(self, fn) -> None:
        self._fn = fn

    def close(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()
