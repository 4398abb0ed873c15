"""One caller in a queue: mod_callcenter's ``callcenter`` application over outbound ESL.

Reference §3: the join sequence (§3.2), the wait with hold music, announcements and exit keys
(§3.3, §3.4), and the exit (§3.5). The timers of §3.4 are decided by the core and delivered here by
``timeout()``; offers report ``agent_answered()``/``bridged()``. The session ends its socket after
``resume`` so a caller that was not bridged continues in the dialplan after ``socket``.

The session is a state machine driven by its socket's replies and events (delivered by the
:class:`~ccfast.esl.hub.OutboundHub`'s task) and by the dispatcher and the offers: a waiting caller
costs no trio task. Only the rare paths (a caller that cannot join, announcements, a cluster
redirect) run as tasks.
"""

from __future__ import annotations

import logging
from .. import uuids
from typing import TYPE_CHECKING, Any

import trio

from .. import strings as S
from ..esl import _commands as C
from ..esl._events import ChannelData, CommandReply, DisconnectNotice
from ..params import atoi
from .chanvars import ChannelVars
from .expand import channel_variable, expand

if TYPE_CHECKING:
    from ..esl.hub import HubConnection
    from .app import Service
    from .ports import Box

log = logging.getLogger("ccfast.member")

DECLINE_CONFIRM = 2.0  # seconds to wait for the channel to run our `log` before closing anyway

# §3.2 in one write: FreeSWITCH runs them in order; the join waits for answer's +OK
_CONNECT = C.Connect()
_JOIN = (C.Resume(), C.Linger(None), C.MyEvents(None, None))
_ANSWER = C.SendMsg.execute(None, "answer", None, event_lock=True)
# Only the member events the session acts on (filters are OR-ed, integration notes §7.4): the
# others (CHANNEL_EXECUTE, _STATE, _PARK, _ANSWER, _UNBRIDGE, ...) are ~5 KB each to render, send,
# decode and fold for nothing. Their replies are not checked: without them the session still works.
_FILTERS = tuple(C.Filter("Event-Name", name) for name in (
    "CHANNEL_HANGUP", "DTMF", "CHANNEL_BRIDGE", "CHANNEL_EXECUTE_COMPLETE"))
_GONE_EVENTS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"})

CONNECTING, JOINING, WAITING, EXITING, DONE = range(5)


def _reply_text(reply: Any) -> str:
    if isinstance(reply, CommandReply):
        return reply.reply_text
    return getattr(reply, "body", "") or ""


class MemberSession:
    """State of one member channel while ccfast serves it."""

    __slots__ = ("service", "conn", "box", "session_uuid", "data", "queue", "member_uuid", "joined_epoch",
                 "t_called", "reason", "exit_key", "agent_found", "is_bridged", "channel_bridged", "gone",
                 "moh", "phase", "on_settled", "_params", "_join_left", "_join_error", "_announcer")

    def __init__(self, service: Service, conn: HubConnection) -> None:
        self.service = service
        self.conn = conn
        self.box: Box | None = None
        self.session_uuid = ""
        self.data: ChannelVars = ChannelVars()
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
        self.phase = CONNECTING
        self._params = None
        self._join_left = 0
        self._join_error: str | None = None
        self.on_settled = None  # the offer confirming the bridge: called when bridged or gone
        self._announcer: trio.CancelScope | None = None

    def start(self) -> None:
        """Ask for the channel data; everything else follows from the replies."""
        self.conn.handler = self._on_message
        self.conn.post(_CONNECT, self._connected)

    # -- notifications from the dispatcher and offers --------------------------------------
    def timeout(self, reason: str) -> None:
        """The core decided a max-wait timeout (§3.4)."""
        if self.reason is None:
            self.reason = reason
        self.service.soon(self._poke)

    def agent_answered(self) -> None:
        self.agent_found = True

    def agent_lost(self) -> None:
        """The answering agent vanished before the bridge: the member simply waits on (§5.5)."""
        self.agent_found = False

    def bridged(self) -> None:
        self.is_bridged = True
        self._settled_check()
        self.service.soon(self._poke)

    def _poke(self) -> None:
        self._settled_check()
        if self.phase == WAITING and (self.reason or self.is_bridged or self.gone):
            self._exit()

    def _settled_check(self) -> None:
        if (self.channel_bridged or self.is_bridged or self.gone) and self.on_settled is not None:
            self.on_settled()

    def variable(self, name: str) -> str | None:
        return channel_variable(self.data, name)

    # -- joining (§3.1, §3.2) ----------------------------------------------------------------
    def _connected(self, reply: Any) -> None:
        if not isinstance(reply, ChannelData):
            if not isinstance(reply, BaseException):
                log.debug("outbound %s: connect refused: %r", self.conn.peer, reply)
            self.conn.close()
            return
        svc = self.service
        self.data = ChannelVars(reply.headers)
        self.session_uuid = reply.get("Unique-ID") or ""
        self.box = svc.box_for(self.data)
        queue = (self.variable("cc_queue") or "").strip().split(" ")[0]
        if not queue:
            svc.spawn(self._decline, "no cc_queue set")
            return
        params = svc.resolve_queue(queue)
        if params is None:
            svc.spawn(self._decline, f"queue {queue!r} not found")
            return
        self.queue = queue
        if svc.cluster is not None and not svc.cluster.owns(queue):
            svc.spawn(self._redirect, queue)
            return
        self._start_join(params)

    def _start_join(self, params) -> None:
        """§3.2 in one write; the join itself follows answer's +OK (``_join_reply``)."""
        self._params = params
        self.phase = JOINING
        self._join_left = len(_JOIN) + 1
        post, on_reply = self.conn.post, self._join_reply
        for command in _JOIN:
            post(command, on_reply)
        for command in _FILTERS:
            post(command)
        post(_ANSWER, on_reply)

    def _join_reply(self, reply: Any) -> None:
        if isinstance(reply, BaseException):
            self._join_error = self._join_error or repr(reply)
        elif self._join_error is None and not _reply_text(reply).startswith("+OK"):
            self._join_error = _reply_text(reply)
        self._join_left -= 1
        if self._join_left or self.conn.closed:
            return
        if self._join_error is not None:
            log.debug("member %s: join refused: %s", self.session_uuid, self._join_error)
            self.conn.close()
            return
        self._join()

    def _join(self) -> None:
        svc, params = self.service, self._params
        self._params = None
        now = svc.clock.now()
        self.t_called = now
        join = svc.core.member_join(
            self.queue, uuids.uuid4(), self.session_uuid,
            self.variable("caller_id_number") or "", self.variable("caller_id_name") or "",
            now, atoi(self.variable("cc_base_score")), now,
        )
        self.member_uuid = join.member_uuid
        self.joined_epoch = join.joined_epoch
        svc.members[self.member_uuid] = self
        self.phase = WAITING
        svc.changed(member=self)
        svc.push()  # its offer (if an agent is free) leaves now, not after the hub's whole batch

        moh = self.variable("cc_moh_override") or params.moh_sound
        self.moh = expand(moh, self.data) if moh else None
        setvars = C.Api(
            f"uuid_setvar_multi {self.session_uuid} cc_side=member;cc_member_uuid={self.member_uuid};"
            f"cc_agent_found=;cc_agent_bridged=;cc_queue_joined_epoch={now};cc_queue={self.queue}")
        self.conn.post(setvars)
        if self.moh:
            # a playback FreeSWITCH refuses leaves the caller waiting in silence
            self.conn.post(C.SendMsg.execute(None, "playback", self.moh), self._moh_reply)
        if params.announce_sound and params.announce_frequency > 0:
            svc.spawn(self._announce, params.announce_sound, params.announce_frequency)
        self._poke()  # hung up or pressed an exit key while joining

    def _moh_reply(self, reply: Any) -> None:
        if not isinstance(reply, BaseException) and not _reply_text(reply).startswith("+OK"):
            log.debug("member %s: hold music not started: %s", self.session_uuid, _reply_text(reply))

    # -- the wait (§3.3, §3.4) ---------------------------------------------------------------
    def _on_message(self, msg: Any) -> None:
        """One event or notice of the member channel; None: the socket has closed."""
        if msg is None or isinstance(msg, DisconnectNotice):
            self.gone = True
            self._poke()
            return
        if self.phase == CONNECTING:
            return  # no myevents yet: nothing of this channel is expected before its data
        headers = msg.headers
        # keep the channel's variables current: mod_callcenter reads them live (exit keys,
        # announcements, caller id, exported variables can change while the caller waits)
        self.data.update_from(headers)
        name = msg.name
        if name in _GONE_EVENTS:
            self.gone = True
            self._poke()
        elif name == "DTMF":
            digit = headers.get("DTMF-Digit") or ""
            keys = headers.get("variable_cc_exit_keys") or self.variable("cc_exit_keys") or ""
            if digit and digit in keys and self.reason is None and not self.agent_found:
                self.exit_key = digit
                self.reason = S.CANCEL_EXIT_WITH_KEY
                self._poke()
        elif name == "CHANNEL_BRIDGE":
            self.channel_bridged = True  # the offer records the bridge, then calls bridged()
            self._settled_check()
        elif name == "CHANNEL_EXECUTE_COMPLETE" and headers.get("Application") == "playback":
            if headers.get("Application-Data") == self.moh and not (self.reason or self.is_bridged or self.gone):
                if headers.get("Application-Response") == "FILE PLAYED":
                    # hold music loops (§3.3); no event-lock: later sendmsg run nested inside it
                    self.conn.post(C.SendMsg.execute(None, "playback", self.moh))
                else:
                    self.moh = None  # unplayable: silence for the rest of the wait

    async def _announce(self, sound: str, every: int) -> None:
        with trio.CancelScope() as self._announcer:
            box = self.box
            while True:
                await trio.sleep(every)
                if self.phase != WAITING or self.reason or self.is_bridged or self.gone:
                    return
                await box.api(f"uuid_displace {self.session_uuid} stop {sound}")
                reply = await box.api(f"uuid_displace {self.session_uuid} start {sound} 0")
                if reply.startswith("-ERR"):
                    return  # announcements stop for this member (§3.4)

    # -- the exit (§3.5) ---------------------------------------------------------------------
    def _exit(self) -> None:
        """The cancel path or the answered path, then hand the channel back."""
        self.phase = EXITING
        if self._announcer is not None:
            self._announcer.cancel()
        svc, box, uuid = self.service, self.box, self.session_uuid
        now = svc.clock.now()
        reason = self.reason
        if reason is None and not (self.is_bridged or self.agent_found):
            reason = S.CANCEL_BREAK_OUT
        if self.gone or (reason is not None and reason != S.CANCEL_NONE):
            for cancel in svc.core.member_cancel(self.member_uuid, reason or S.CANCEL_NONE, now):
                svc.cancel_offer(cancel.offer_id, S.HANGUP_ORIGINATOR_CANCEL)
            svc.changed(member=self)
            if self.gone:
                self._finish(None)
                return
            vars_ = (f"cc_agent_found=;cc_queue_canceled_epoch={now};cc_cause={S.CC_CAUSE_CANCEL};"
                     f"cc_cancel_reason={reason}")
            if self.exit_key:
                vars_ += f";cc_exit_key={self.exit_key}"
            # in order on the box link: uuid_break's reply proves the variables are set before
            # the socket closes and the dialplan continues
            box.api_nowait(f"uuid_setvar_multi {uuid} {vars_}")
            box.api_then(f"uuid_break {uuid} all", self._finish)
        else:
            svc.core.member_answered_exit(self.member_uuid)
            svc.changed(member=self)
            box.api_then(f"uuid_setvar_multi {uuid} cc_agent_found=;cc_cause={S.CC_CAUSE_ANSWERED}", self._finish)

    def _finish(self, _reply: Any) -> None:
        if self.phase == DONE:
            return
        self.phase = DONE
        self.service.member_left(self)
        self.conn.close()

    # -- rare paths, as tasks ----------------------------------------------------------------
    async def _decline(self, why: str) -> None:
        """Like the app with no usable queue (§3.1): nothing answered or set, dialplan goes on.

        The socket may only be closed once the channel is parked in the socket app (closing
        earlier strands it, integration notes §2.5); a ``log`` app that has completed proves it,
        and puts the warning into FreeSWITCH's log too."""
        log.warning("member %s: %s; returning to the dialplan", self.session_uuid, why)
        conn, settled = self.conn, trio.Event()

        def watch(msg: Any) -> None:
            if msg is None or isinstance(msg, DisconnectNotice):
                settled.set()
            elif msg.name == "CHANNEL_HANGUP" or (
                    msg.name == "CHANNEL_EXECUTE_COMPLETE" and msg.headers.get("Application") == "log"):
                settled.set()

        conn.handler = watch
        try:
            await conn.request(C.Resume())
            await conn.request(C.MyEvents(None, None))
            await conn.request(C.SendMsg.execute(None, "log", f"WARNING ccfast: {why}; returning to the dialplan"))
            with trio.move_on_after(DECLINE_CONFIRM):
                await settled.wait()
        except Exception as exc:  # the caller may be gone already
            log.debug("member %s: decline: %r", self.session_uuid, exc)
        conn.close()

    async def _redirect(self, queue: str) -> None:
        """Cluster: another node dispatches ``queue``: move the caller to that node's outbound socket.

        ``socket <owner> async full`` runs as an application *inside* this socket session (no
        ``resume`` was sent, so closing our socket leaves the running app alone, integration notes
        §2.5): the owner's session gets the channel with its variables; when the owner is done with
        it, the nested app returns and the dialplan continues after the original ``socket``, as on a
        single node. We close only once FreeSWITCH reports that app running — closing before the
        sendmsg ran would let the dialplan continue and end the call (§2.5). If the queue became this
        node's while waiting for an owner, the caller joins here; with no live owner in time, back to
        the dialplan (``_decline``)."""
        svc = self.service
        address = await svc.cluster.redirect_address(queue)
        if address is None:
            if svc.cluster.owns(queue) and (params := svc.resolve_queue(queue)) is not None:
                self._start_join(params)  # the failover completed here: join as _connected would
            else:
                await self._decline(f"queue {queue!r} has no live owner in the cluster")
            return
        conn, started = self.conn, trio.Event()
        arg = f"{address} async full"

        def watch(msg: Any) -> None:
            if msg is None or isinstance(msg, DisconnectNotice):
                started.set()
            elif msg.name == "CHANNEL_HANGUP" or (
                    msg.name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")
                    and msg.headers.get("Application") == "socket"):
                started.set()

        conn.handler = watch
        try:
            await conn.request(C.MyEvents(None, None))
            await conn.request(C.SendMsg.execute(None, "socket", arg))
            with trio.move_on_after(DECLINE_CONFIRM):
                await started.wait()
        except Exception as exc:  # the caller may be gone already
            log.debug("member %s: redirect to %s failed: %r", self.session_uuid, address, exc)
        conn.close()

