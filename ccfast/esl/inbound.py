"""The inbound ESL client (trio): ccfast connects to FreeSWITCH's event socket (:8021).

Usage::

    client = InboundClient("127.0.0.1", 8021, "ClueCon",
                           events=["BACKGROUND_JOB", "CHANNEL_ANSWER"],
                           subclasses=["callcenter::info"], on_reconnect=reconcile)
    async with trio.open_nursery() as n:
        await n.start(client.run)          # returns once connected, authenticated, subscribed
        out = await client.api("uuid_exists", uuid)
        result = await client.bgapi("originate", "{origination_uuid=…}sim/agent/a &park()")
        async for ev in client.events: ...

Contract:

* The client always subscribes to BACKGROUND_JOB (bgapi results only reach subscribers).
* Commands issued in the same scheduler tick are written together by one writer task (one
  syscall); ``post``/``api_nowait``/``sendevent_nowait`` queue a command without awaiting its
  reply (the reply is still consumed in order; ``on_reply`` sees it).
* Replies are matched to commands in FIFO order; ``bgapi`` registers its ``Job-UUID`` waiter
  before the command is written and matches the BACKGROUND_JOB by ``Job-UUID`` (every subscriber
  gets every job, including other clients'); the event is also delivered to ``events``.
* If the link drops, every pending command and job waiter fails with :class:`ConnectionLost`;
  calls made while the link is down fail at once with it.
* Reconnects with exponential backoff (``backoff_initial`` doubling to ``backoff_max``) with
  ``jitter`` (a fraction of the delay, random), re-sends the subscriptions and filters in the
  order they were made, then awaits ``on_reconnect(client)`` (reconciliation hook).
* The reader never blocks on consumers: events go to a bounded :class:`EventQueue` (overflow
  policy and counter documented there; ``events.dropped``), or, with ``on_event`` set, to that
  callback from the reader itself (no queue, no task hop; ``events.received`` still counts).
  ``after_read`` runs after each chunk the reader routed (default: write what the replies'
  callbacks queued, ``flush_nowait``).
* A dead peer is detected by ``liveness_interval``: when nothing was received for that long an
  ``api status`` must answer within ``liveness_timeout`` or the link is dropped (and reconnected).
* ``state`` is ``"connecting"``, ``"up"``, ``"down"`` or ``"closed"``; ``on_state(state)`` is
  called on each change, ``wait_up()`` / ``wait_down()`` wait for it.
"""

from __future__ import annotations

import logging
import random
import uuid as _uuid
from typing import Any, Awaitable, Callable, Iterable

import trio

from ._commands import (Api, Auth, BgApi, Command, Exit, Filter, FilterDelete, NixEvent,
                        NoEvents, SendEvent, SendMsg, Subscribe, UserAuth)
from ._events import ApiResponse, CommandReply, Event
from ._link import (AuthenticationFailed, CommandFailed, ConnectionLost, Encoded, EventQueue, _Link,
                    _Waiter)

log = logging.getLogger("ccfast.esl.inbound")

CONNECTING, UP, DOWN, CLOSED = "connecting", "up", "down", "closed"

__all__ = ["InboundClient", "ConnectionLost", "CommandFailed", "AuthenticationFailed",
           "EventQueue", "CONNECTING", "UP", "DOWN", "CLOSED"]


class InboundClient:
    """A reconnecting inbound ESL client; see the module docstring for the contract."""

    def __init__(self, host: str, port: int = 8021, password: str | None = "ClueCon", *,
                 user: str | None = None,
                 events: Iterable[str] = (), subclasses: Iterable[str] = (),
                 format: str = "plain", filters: Iterable[tuple[str, str]] = (),
                 queue_size: int = 10_000, overflow: str = "drop_oldest",
                 on_overflow: Callable[[int], Any] | None = None,
                 reconnect: bool = True, backoff_initial: float = 0.1, backoff_max: float = 10.0,
                 jitter: float = 0.2, connect_timeout: float = 5.0,
                 liveness_interval: float | None = 5.0, liveness_timeout: float = 3.0,
                 on_reconnect: Callable[["InboundClient"], Awaitable[Any]] | None = None,
                 on_state: Callable[[str], Any] | None = None,
                 decoder: str = "auto", rng: random.Random | None = None):
        self.host = host
        self.port = port
        self.password = password
        self.user = user
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jitter = jitter
        self.connect_timeout = connect_timeout
        self.liveness_interval = liveness_interval
        self.liveness_timeout = liveness_timeout
        self.on_reconnect = on_reconnect
        self.on_state = on_state
        self.decoder = decoder
        self.rng = rng or random.Random()
        self.events = EventQueue(queue_size, overflow, on_overflow)
        # subscription commands, replayed in order after each reconnect
        self._subs: list[Command] = []
        evs, subs = list(events), list(subclasses)
        # bgapi results only reach subscribers of BACKGROUND_JOB: always subscribe to it
        if "ALL" not in evs and "BACKGROUND_JOB" not in evs:
            evs.insert(0, "BACKGROUND_JOB")
        self._subs.append(Subscribe(format, tuple(evs), tuple(subs)))
        for h, v in filters:
            self._subs.append(Filter(h, v))
        # temporary filters (add_filter/remove_filter), replayed after the subscriptions
        self._temp_filters: dict[tuple[str, str], int] = {}
        self._link: _Link | None = None
        self._jobs: dict[str, _Waiter] = {}
        # called after each chunk the reader routed (replies, job results); None: write the
        # commands their callbacks queued (flush_nowait)
        self.after_read: Callable[[], None] | None = None
        # an OutboundHub (or anything with serving/watch/unwatch) that reads the link's socket
        # from its own wake-ups while it serves (see _Link.reader); None: the reader task reads
        self.reactor: Any = None
        # events handed to this callback by the reader instead of queued in ``events`` (no task
        # hop); it must not block; its exceptions are logged, never raised into the reader
        self.on_event: Callable[[Any], None] | None = None
        self.state = DOWN
        self._up = trio.Event()
        self._down = trio.Event()
        self._down.set()
        self._closing = False
        self.connects = 0
        self.writes = 0  # send_all calls of closed links (each carries >= 1 command)
        self.commands_sent = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._cancel: trio.CancelScope | None = None
        self._conn_scope: trio.CancelScope | None = None

    # -- state -----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if state == UP:
            self._up.set()
            self._down = trio.Event()
        else:
            if self._up.is_set():
                self._up = trio.Event()
            self._down.set()
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("on_state callback failed")

    @property
    def is_up(self) -> bool:
        return self.state == UP

    async def wait_up(self) -> None:
        await self._up.wait()

    async def wait_down(self) -> None:
        await self._down.wait()

    # -- the connection manager ------------------------------------------------------------
    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Connect, keep connected (if ``reconnect``) until :meth:`close`.

        ``task_status.started()`` after the first successful connect + auth + subscribe.
        AuthenticationFailed is raised (no retry: a wrong password will not fix itself).
        Without ``reconnect`` the first failure to connect raises ConnectionLost."""
        delay = self.backoff_initial
        started = False
        with trio.CancelScope() as scope:
            self._cancel = scope
            while not self._closing:
                self._set_state(CONNECTING)
                try:
                    with trio.fail_after(self.connect_timeout):
                        stream = await trio.open_tcp_stream(self.host, self.port)
                except (OSError, trio.TooSlowError) as exc:
                    self.last_error = f"connect failed: {exc!r}"
                    self._set_state(DOWN)
                    if not self.reconnect:
                        raise ConnectionLost(self.last_error) from exc
                    await self._sleep_backoff(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                link = _Link(stream, self._deliver, self._jobs, decoder=self.decoder)
                link.after_read = self._after_read
                auth_error: AuthenticationFailed | None = None
                try:
                    async with trio.open_nursery() as nursery:
                        self._conn_scope = nursery.cancel_scope
                        nursery.start_soon(self._reader_then_cancel, link, nursery)
                        nursery.start_soon(link.writer)
                        try:
                            await self._handshake(link)
                        except (ConnectionLost, AuthenticationFailed) as exc:
                            if isinstance(exc, AuthenticationFailed):
                                auth_error = exc
                            self.last_error = str(exc)
                            nursery.cancel_scope.cancel()
                        else:
                            delay = self.backoff_initial
                            self._link = link
                            self.connects += 1
                            self.last_error = None
                            self._set_state(UP)
                            if not started:
                                started = True
                                task_status.started()
                            else:
                                self.reconnects += 1
                                if self.on_reconnect is not None:
                                    nursery.start_soon(self._run_hook)
                            if self.liveness_interval:
                                nursery.start_soon(self._liveness, link)
                finally:
                    self._conn_scope = None
                    self._link = None
                    self.writes += link.writes
                    self.commands_sent += link.commands
                    link.lost(self.last_error or "connection closed")
                    self._fail_jobs()
                    await trio.aclose_forcefully(stream)
                if auth_error is None and link.rude is not None:
                    auth_error = AuthenticationFailed(f"rejected: {link.rude.body.strip()}")
                if auth_error is not None:
                    self.last_error = str(auth_error)
                    self._set_state(CLOSED)
                    self.events.close()
                    raise auth_error
                if self._closing:
                    break
                self._set_state(DOWN)
                if not self.reconnect:
                    raise ConnectionLost(self.last_error or "connection closed")
                await self._sleep_backoff(delay)
                delay = min(delay * 2, self.backoff_max)
        self._set_state(CLOSED)
        self.events.close()

    async def _reader_then_cancel(self, link: _Link, nursery: trio.Nursery) -> None:
        await link.reader(self.reactor)
        if link.disconnect_notice is None and not self.last_error:
            self.last_error = "connection closed by peer"
        nursery.cancel_scope.cancel()

    async def _sleep_backoff(self, delay: float) -> None:
        await trio.sleep(delay * (1.0 + self.jitter * self.rng.random()))

    async def _run_hook(self) -> None:
        try:
            await self.on_reconnect(self)
        except ConnectionLost:
            pass
        except Exception:
            log.exception("reconnect hook failed")

    async def _handshake(self, link: _Link) -> None:
        with trio.move_on_after(self.connect_timeout) as sc:
            while not link.auth_request.is_set():
                if link.rude is not None:
                    raise AuthenticationFailed(f"rejected: {link.rude.body.strip()}")
                if not link.alive:
                    if link.rude is not None:
                        raise AuthenticationFailed(f"rejected: {link.rude.body.strip()}")
                    raise ConnectionLost("closed before auth/request")
                with trio.move_on_after(0.05):
                    await link.auth_request.wait()
        if sc.cancelled_caught:
            raise ConnectionLost("no auth/request from the server")
        if self.user is not None:
            cmd: Command = UserAuth(self.user, self.password or "")
        else:
            cmd = Auth(self.password or "")
        reply = await link.send(cmd)
        if not (isinstance(reply, CommandReply) and reply.ok):
            text = getattr(reply, "reply_text", repr(reply))
            raise AuthenticationFailed(f"authentication refused: {text}")
        subs = list(self._subs) + [Filter(h, v) for h, v in self._temp_filters]
        for sub, r in zip(subs, await link.send_many(subs)):
            if isinstance(r, CommandReply) and not r.ok:
                log.warning("re-subscribe %r refused: %s", sub, r.reply_text)

    async def _liveness(self, link: _Link) -> None:
        """Probe with ``api status`` when the link has been silent for ``liveness_interval``."""
        interval = self.liveness_interval or 0
        while link.alive:
            await trio.sleep_until(link.last_rx + interval)
            if trio.current_time() - link.last_rx < interval:
                continue
            with trio.move_on_after(self.liveness_timeout) as sc:
                try:
                    await link.send(Api("status"))
                except ConnectionLost:
                    return
            if sc.cancelled_caught:
                self.last_error = "peer did not answer the liveness probe"
                log.warning("%s:%s: %s", self.host, self.port, self.last_error)
                link.lost(self.last_error)
                await trio.aclose_forcefully(link.stream)
                return

    def _fail_jobs(self) -> None:
        if self._jobs:
            err = ConnectionLost("connection lost while waiting for BACKGROUND_JOB")
            for w in self._jobs.values():
                w.fail(err)
            self._jobs.clear()

    async def close(self) -> None:
        """Send ``exit`` if connected, then stop (no reconnect)."""
        self._closing = True
        link = self._link
        if link is not None and link.alive:
            with trio.move_on_after(1.0):
                try:
                    await link.send(Exit())
                except ConnectionLost:
                    pass
            await link.aclose()
        if self._cancel is not None:
            self._cancel.cancel()

    def drop(self) -> None:
        """Drop the current link (tests, operator action); reconnect logic applies."""
        link = self._link
        if link is not None:
            self.last_error = "dropped locally"
            link.lost("dropped locally")
        if self._conn_scope is not None:
            self._conn_scope.cancel()

    # -- commands --------------------------------------------------------------------------
    def _deliver(self, msg: Any) -> None:
        handler = self.on_event
        if handler is None:
            self.events.put(msg)
            return
        self.events.received += 1
        try:
            handler(msg)
        except Exception:
            log.exception("inbound %s:%s: event handler failed", self.host, self.port)

    def _after_read(self) -> None:
        if self.after_read is not None:
            self.after_read()
        else:
            self.flush_nowait()

    def flush_nowait(self) -> None:
        """Write the queued commands now if the socket takes them (see ``_Link.flush_nowait``)."""
        link = self._link
        if link is not None:
            link.flush_nowait()

    def _require(self) -> _Link:
        link = self._link
        if link is None or not link.alive:
            raise ConnectionLost(f"not connected ({self.state})")
        return link

    async def command(self, cmd: Command) -> CommandReply | ApiResponse:
        """Send any command; returns its reply (FIFO matched)."""
        return await self._require().send(cmd)

    async def _ok(self, cmd: Command) -> str:
        r = await self.command(cmd)
        text = r.reply_text if isinstance(r, CommandReply) else r.body
        if not text.startswith("+OK"):
            raise CommandFailed(text)
        return text

    async def api(self, command: str, args: str = "") -> str:
        """``api`` → the response body (``-ERR …`` bodies are returned, not raised)."""
        r = await self.command(Api(command, args))
        return r.body if isinstance(r, ApiResponse) else r.reply_text

    def post(self, cmd: Command, on_reply: Callable[[Any], Any] | None = None) -> None:
        """Queue a command without waiting for its reply (fire-and-forget, order kept).

        ``on_reply(reply_or_exception)`` is called when the reply arrives (or the link drops);
        raises ConnectionLost at once when the link is down."""
        self._require().post(cmd, on_reply)

    def post_many(self, commands: list[bytes], on_reply: Callable[[Any], Any] | None = None) -> None:
        """Queue already encoded commands (whole frames, the caller guarantees the framing)
        without waiting; ``on_reply`` gets each one's reply. ConnectionLost at once when down."""
        self._require().post_many(commands, on_reply)

    def api_nowait(self, command: str, args: str = "",
                   on_reply: Callable[[Any], Any] | None = None) -> None:
        """``api`` whose result nobody waits for (``uuid_setvar`` on a channel that may be gone)."""
        if not args and command and command[0] != " " and "\n" not in command and "\r" not in command:
            # the bytes Api(command) writes, without building and checking it (several per call)
            self.post(Encoded(b"api " + command.encode("utf-8") + b"\n\n"), on_reply)
            return
        self.post(Api(command, args), on_reply)

    def sendevent_nowait(self, name: str, headers: Any = (), body: str | bytes | None = None, *,
                         subclass: str | None = None,
                         on_reply: Callable[[Any], Any] | None = None) -> None:
        """``sendevent`` without waiting for the ``+OK <uuid>``. ``headers`` may also be an
        already encoded command (``_link.Encoded``, e.g. ``ccevents.encode_sendevent``)."""
        if isinstance(headers, Command):
            self.post(headers, on_reply)
            return
        self.post(SendEvent.custom(subclass, headers, body) if subclass else SendEvent(name, headers, body),
                  on_reply)

    def bgapi_nowait(self, command: str, args: str = "", *, job_uuid: str,
                     on_result: Callable[[Any], Any]) -> None:
        """``bgapi`` whose job result goes to ``on_result(body)``; ``on_result(exception)``
        instead when the command is refused (CommandFailed) or the link drops before the
        result (ConnectionLost). Raises ConnectionLost at once when the link is down."""
        link = self._require()
        w = _Waiter(on_result)
        self._jobs[job_uuid] = w     # registered before the command is written

        def accepted(reply: Any) -> None:
            if isinstance(reply, BaseException) or not (isinstance(reply, CommandReply) and reply.ok):
                self._jobs.pop(job_uuid, None)
                w.fail(reply if isinstance(reply, BaseException)
                       else CommandFailed(getattr(reply, "reply_text", repr(reply))))

        link.post(BgApi(command, args, job_uuid=job_uuid), accepted)

    async def bgapi(self, command: str, args: str = "", *, job_uuid: str | None = None,
                    timeout: float | None = None) -> str:
        """``bgapi`` with our own Job-UUID → the BACKGROUND_JOB body (e.g. ``+OK <uuid>\\n``)."""
        job = job_uuid or str(_uuid.uuid4())
        w = _Waiter()
        self._jobs[job] = w     # registered before the command is written
        try:
            r = await self.command(BgApi(command, args, job_uuid=job))
            if not (isinstance(r, CommandReply) and r.ok):
                raise CommandFailed(getattr(r, "reply_text", repr(r)))
            if timeout is None:
                return await w.wait()
            with trio.fail_after(timeout):
                return await w.wait()
        finally:
            self._jobs.pop(job, None)

    async def subscribe(self, events: Iterable[str] = ("ALL",), subclasses: Iterable[str] = (),
                        format: str = "plain") -> str:
        cmd = Subscribe(format, tuple(events), tuple(subclasses))
        self._subs.append(cmd)
        return await self._ok(cmd)

    async def nixevent(self, events: Iterable[str], subclasses: Iterable[str] = ()) -> str:
        cmd = NixEvent(tuple(events), tuple(subclasses))
        self._subs.append(cmd)
        return await self._ok(cmd)

    async def noevents(self) -> str:
        self._subs = [c for c in self._subs if isinstance(c, (Filter, FilterDelete))]
        return await self._ok(NoEvents())

    async def filter(self, header: str, value: str) -> str:
        cmd = Filter(header, value)
        self._subs.append(cmd)
        return await self._ok(cmd)

    def add_filter(self, header: str, value: str) -> None:
        """A temporary ``filter`` (queued, not awaited; counted per (header, value), replayed
        after a reconnect until :meth:`remove_filter` takes it back)."""
        key = (header, value)
        count = self._temp_filters.get(key, 0)
        self._temp_filters[key] = count + 1
        if count == 0 and self.is_up:
            try:
                self.post(Filter(header, value))
            except ConnectionLost:
                pass  # replayed by the next handshake

    def remove_filter(self, header: str, value: str) -> None:
        """Undo one :meth:`add_filter`; the filter is deleted when its last user is gone."""
        key = (header, value)
        count = self._temp_filters.get(key, 0)
        if count <= 1:
            self._temp_filters.pop(key, None)
            if count == 1 and self.is_up:
                try:
                    self.post(FilterDelete(header, value))
                except ConnectionLost:
                    pass  # a new connection starts without it
        else:
            self._temp_filters[key] = count - 1

    async def filter_delete(self, header: str | None = None, value: str | None = None) -> str:
        cmd = FilterDelete(header, value)
        self._subs.append(cmd)
        return await self._ok(cmd)

    async def sendevent(self, name: str, headers: Any = (), body: str | bytes | None = None,
                        *, subclass: str | None = None) -> str:
        """``sendevent``; returns the Event-UUID from ``+OK <uuid>``."""
        cmd = SendEvent.custom(subclass, headers, body) if subclass else SendEvent(name, headers, body)
        text = await self._ok(cmd)
        return text[4:].strip()

    async def sendmsg(self, uuid: str, app: str, arg: str | None = None, *,
                      event_lock: bool = False, async_: bool = False,
                      loops: int | None = None) -> str:
        """``sendmsg <uuid>`` ``call-command: execute``; raises CommandFailed on ``-ERR``."""
        return await self._ok(SendMsg.execute(uuid, app, arg, event_lock=event_lock,
                                              async_=async_, loops=loops))

    async def sendmsg_hangup(self, uuid: str, cause: str | None = None) -> str:
        return await self._ok(SendMsg.hangup(uuid, cause))

    async def exit(self) -> None:
        """``exit``; the server replies ``+OK bye`` and closes (no reconnect)."""
        await self.close()

    @property
    def stats(self) -> dict:
        return {"state": self.state, "connects": self.connects, "reconnects": self.reconnects,
                "events_received": self.events.received, "events_dropped": self.events.dropped,
                "events_queued": len(self.events), "pending_jobs": len(self._jobs)}
