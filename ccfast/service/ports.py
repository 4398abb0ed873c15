"""What the service needs from a FreeSWITCH box and from the cluster layer, as small interfaces.

``Box`` is one FreeSWITCH box reached over inbound ESL (``ccfast.service.links.BoxLink`` adapts
an ``InboundClient`` to it); a caller's own outbound socket is an ``esl.hub.HubConnection`` driven
by ``caller.MemberSession``. ``ClusterHooks`` is what the service asks when several nodes share
the database. Keeping the service's view this narrow is what lets the member and offer logic read
like the reference's step lists.
"""

from __future__ import annotations

from typing import Protocol

from .router import ChannelRouter


class Box(Protocol):
    name: str
    router: ChannelRouter  # events of this box's channels, by Unique-ID

    @property
    def up(self) -> bool: ...

    async def api(self, command: str) -> str:
        """``api <command>``; the response body."""

    def follow_cb(self, uuid: str):
        """Events of this (non-agent) channel reach ``router`` too (the link filters events to
        agent legs and job results) until the returned object's ``close()``."""

    def api_nowait(self, command: str) -> None:
        """``api <command>`` queued in order on the link; nobody waits for its reply (a later
        awaited command's reply proves it ran). Never raises (a down link counts a failure)."""

    def api_then(self, command: str, on_reply) -> None:
        """``api <command>`` queued in order; ``on_reply(body or exception)`` when it is known."""

    def bgapi_then(self, command: str, job_uuid: str, on_result) -> None:
        """``bgapi <command>`` with our Job-UUID; ``on_result(body or exception)`` when the
        BACKGROUND_JOB arrives or the command/link failed."""

    def push(self) -> None:
        """Write what is queued now (the end of a step of the hot path)."""

    async def wait_up(self) -> None:
        """Until the link is connected and authenticated."""

    def sendevents(self, commands: list[bytes]) -> None:
        """Queue these ``sendevent`` commands, already encoded whole by ``ccevents`` (a flush's
        CC events and presences, in order); never blocks (drops are counted)."""

    def send_presence(self, headers) -> None:
        """Queue ``sendevent PRESENCE_IN`` with these headers (or ``ccevents.encode_presence``'s
        encoded command); never blocks."""


class ClusterHooks(Protocol):
    """What the service asks the multi-node layer (``Service.cluster``; None when ccfast runs
    alone). Implemented by ``ccfast.cluster.glue``; see docs/cluster.md, "Wiring"."""

    def owns(self, queue: str) -> bool:
        """This node dispatches ``queue`` now (sync: asked for every caller that joins)."""

    async def redirect_address(self, queue: str) -> str | None:
        """The ``host:port`` of the queue's owner to move a caller to, or None when no live
        owner appeared within the failover wait (the caller then goes back to the dialplan)."""

    async def claim(self, offer) -> bool:
        """Claim ``offer.agent`` before its originate; False: held elsewhere or the database did
        not answer (the offer is withdrawn, no penalty)."""

    def offer_finished(self, offer) -> None:
        """The core has applied the offer's result: release the agent's claim (never blocks)."""
