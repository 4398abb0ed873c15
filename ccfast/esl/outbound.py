"""The outbound ESL server (trio): FreeSWITCH's ``socket`` app connects to us once per call.

Usage::

    async def handler(session: OutboundSession) -> None:
        data = await session.connect()          # ChannelData: the whole channel snapshot
        await session.myevents()
        await session.linger()
        await session.resume()
        await session.execute("answer", event_lock=True)
        async for ev in session.events: ...     # this channel's events (+ notices)

    port = await nursery.start(serve_outbound, handler, "127.0.0.1", 0)

Contract: commands are FIFO-matched like on the inbound client; events and disconnect notices go
to ``session.events`` (a bounded :class:`EventQueue`, same overflow policy), or to a callback set
with ``on_events``. ``linger_notice``
is set by the ``Content-Disposition: linger`` notice (the channel hung up; events may still
follow), ``disconnect_notice`` by the ``disconnect`` one (FreeSWITCH then closes).
``hangup_complete`` is set on CHANNEL_HANGUP_COMPLETE or any notice. The connection is closed
when the handler returns (or raises); ``aclose()`` closes it earlier; ``closed`` is set once the
peer or we closed it. Pending commands fail with ConnectionLost when the socket drops.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable

import trio

from ._commands import (Api, BgApi, Command, Connect, DivertEvents, Exit, Filter, Linger,
                        MyEvents, NoLinger, Resume, SendMsg, Subscribe)
from ._events import ApiResponse, ChannelData, CommandReply, DisconnectNotice, Event
from ._throttle import FailureLog
from ._link import CommandFailed, ConnectionLost, EventQueue, _Link, _Waiter

log = logging.getLogger("ccfast.esl.outbound")

__all__ = ["serve_outbound", "OutboundSession", "ConnectionLost", "CommandFailed"]


class OutboundSession:
    """One call's outbound socket. Create through :func:`serve_outbound`."""

    def __init__(self, stream: trio.abc.Stream, *, queue_size: int = 1000,
                 overflow: str = "drop_oldest", decoder: str = "auto"):
        self.events = EventQueue(queue_size, overflow)
        self._jobs: dict[str, _Waiter] = {}
        self._link = _Link(stream, self._on_event, self._jobs, decoder=decoder)
        self.channel_data: ChannelData | None = None
        self.uuid: str | None = None
        self.linger_notice: DisconnectNotice | None = None
        self.disconnect_notice: DisconnectNotice | None = None
        self.hangup_complete = trio.Event()
        self.closed = self._link.closed
        self._handler: Callable[[Any], None] | None = None
        try:
            peer = stream.socket.getpeername()  # type: ignore[attr-defined]
            self.peer = f"{peer[0]}:{peer[1]}"
        except (AttributeError, OSError):
            self.peer = "?"

    def _on_event(self, msg: Any) -> None:
        if isinstance(msg, DisconnectNotice):
            if msg.disposition == "linger":
                self.linger_notice = msg
            else:
                self.disconnect_notice = msg
            self.hangup_complete.set()
        elif isinstance(msg, Event) and msg.name == "CHANNEL_HANGUP_COMPLETE":
            self.hangup_complete.set()
        if self._handler is not None:
            self._deliver(msg)
        else:
            self.events.put(msg)

    def on_events(self, handler: Callable[[Any], None] | None) -> None:
        """Deliver events and notices to ``handler(msg)`` from the reader, instead of queueing
        them in ``events`` (no task per connection needed to consume them); ``handler(None)``
        once the connection has closed. What was queued before is delivered first, at once.
        ``None`` switches back to queueing. The handler must not block; its exceptions are
        logged, never raised into the reader."""
        self._handler = handler
        if handler is None:
            return
        while len(self.events):
            self._deliver(self.events.get_nowait())
        if self.events._closed:
            self._deliver(None)

    def _deliver(self, msg: Any) -> None:
        try:
            self._handler(msg)  # type: ignore[misc]
        except Exception:
            log.exception("outbound event handler failed for %s", self.peer)

    def _reader_done(self) -> None:
        self.events.close()
        if self._handler is not None:
            self._deliver(None)

    # -- commands --------------------------------------------------------------------------
    async def command(self, cmd: Command) -> CommandReply | ApiResponse | ChannelData:
        return await self._link.send(cmd)

    async def send_many(self, cmds: list[Command]) -> list[CommandReply | ApiResponse | ChannelData]:
        """Pipeline: every command written at once, the replies in order (FreeSWITCH runs a
        socket's commands in order, so this equals sending them one by one, minus the waits)."""
        return await self._link.send_many(cmds)

    async def _ok(self, cmd: Command) -> str:
        r = await self.command(cmd)
        text = r.reply_text if isinstance(r, CommandReply) else getattr(r, "body", "")
        if not text.startswith("+OK"):
            raise CommandFailed(text)
        return text

    async def connect(self) -> ChannelData:
        """``connect`` → the channel data (``Unique-ID``, ``Caller-*``, ``variable_*``…)."""
        r = await self.command(Connect())
        if not isinstance(r, ChannelData):
            raise CommandFailed(getattr(r, "reply_text", repr(r)))
        self.channel_data = r
        self.uuid = r.get("Unique-ID")
        return r

    def variable(self, name: str, default: str | None = None) -> str | None:
        """A channel variable from the connect data (``variable_<name>``)."""
        if self.channel_data is None:
            return default
        return self.channel_data.get("variable_" + name, default)

    async def myevents(self, format: str | None = None) -> str:
        return await self._ok(MyEvents(None, format))

    async def subscribe(self, events: Iterable[str], subclasses: Iterable[str] = (),
                        format: str = "plain") -> str:
        return await self._ok(Subscribe(format, tuple(events), tuple(subclasses)))

    async def filter(self, header: str, value: str) -> str:
        return await self._ok(Filter(header, value))

    async def linger(self, seconds: int | None = None) -> str:
        return await self._ok(Linger(seconds))

    async def nolinger(self) -> str:
        return await self._ok(NoLinger())

    async def resume(self) -> str:
        return await self._ok(Resume())

    async def divert_events(self, on: bool = True) -> str:
        return await self._ok(DivertEvents(on))

    async def execute(self, app: str, arg: str | None = None, *, event_lock: bool = False,
                      async_: bool = False, loops: int | None = None,
                      uuid: str | None = None) -> str:
        """``sendmsg`` ``call-command: execute``; ``+OK`` only means "queued" (§2.1)."""
        return await self._ok(SendMsg.execute(uuid, app, arg, event_lock=event_lock,
                                              async_=async_, loops=loops))

    async def hangup(self, cause: str | None = None, *, uuid: str | None = None) -> str:
        """``sendmsg`` ``call-command: hangup`` (queued behind an event-locked app: prefer
        ``api("uuid_kill", …)`` to hang up at once, §2.4)."""
        return await self._ok(SendMsg.hangup(uuid, cause))

    async def api(self, command: str, args: str = "") -> str:
        r = await self.command(Api(command, args))
        return r.body if isinstance(r, ApiResponse) else getattr(r, "reply_text", "")

    async def bgapi(self, command: str, args: str = "", *, job_uuid: str | None = None) -> str:
        cmd = BgApi(command, args, job_uuid=job_uuid) if job_uuid else BgApi(command, args)
        w = _Waiter()
        self._jobs[cmd.job_uuid or ""] = w
        try:
            r = await self.command(cmd)
            if not (isinstance(r, CommandReply) and r.ok):
                raise CommandFailed(getattr(r, "reply_text", repr(r)))
            return await w.wait()
        finally:
            self._jobs.pop(cmd.job_uuid or "", None)

    async def exit(self) -> None:
        """``exit`` → ``+OK bye``; FreeSWITCH sends the disconnect notice and closes."""
        try:
            with trio.move_on_after(2.0):
                await self.command(Exit())
                await self._link.closed.wait()
        except ConnectionLost:
            pass

    async def aclose(self) -> None:
        await self._link.aclose()
        self.events.close()


async def serve_outbound(handler: Callable[[OutboundSession], Awaitable[Any]],
                         host: str = "127.0.0.1", port: int = 8040, *,
                         queue_size: int = 1000, decoder: str = "auto",
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen for FreeSWITCH ``socket`` connections; run ``handler(session)`` for each.

    ``task_status.started(port)`` with the bound port (``port=0`` picks one)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    failures = FailureLog(log)
    bound = listeners[0].socket.getsockname()[1]

    async def one(stream: trio.SocketStream) -> None:
        session = OutboundSession(stream, queue_size=queue_size, decoder=decoder)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read, session, nursery)
            try:
                await handler(session)
            except ConnectionLost:
                pass
            except Exception as exc:
                failures.failed("outbound handler", exc)  # rate-limited: one line per second
            finally:
                nursery.cancel_scope.cancel()
        await session.aclose()

    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(one, listeners, handler_nursery=nursery)


async def _read(session: OutboundSession, nursery: trio.Nursery) -> None:
    await session._link.reader()
    session._reader_done()
