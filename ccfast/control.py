"""The control port: an Event Socket server where operators' tools talk to ccfast.

It speaks the part of FreeSWITCH's inbound ESL that call-center tools use, so ``fs_cli -H <host>
-P <port> -p <password> -x "callcenter_config queue list"`` and ESL libraries work unchanged:
``auth``, ``api``/``bgapi`` of ``callcenter_config``, ``callcenter_break``, ``json`` (the JSON API),
``ccfast_stats`` and (several nodes) ``ccfast_cluster``, ``event plain|json … CUSTOM
callcenter::info`` subscriptions with ``filter``, ``nixevent``, ``noevents`` and ``exit``. Replies and error strings are FreeSWITCH's.

A subscriber that falls ``MAX_BACKLOG`` events behind is disconnected, as FreeSWITCH does with a
listener that stops reading; the service never waits for a subscriber.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import trio

from . import api as apimod
from . import strings as S
from .esl import (
    Api,
    Auth,
    BgApi,
    CLOSED,
    Exit,
    Filter,
    FilterDelete,
    NEED_DATA,
    NixEvent,
    NoEvents,
    ProtocolError,
    ServerProtocol,
    Subscribe,
    write_api_response,
    write_auth_request,
    write_bgapi_reply,
    write_command_reply,
    write_disconnect_notice,
    write_event_json,
    write_event_plain,
)

log = logging.getLogger("ccfast.control")

MAX_BACKLOG = 500
CORE_UUID = str(uuidlib.uuid4())  # this process's identity in the event envelope
HOSTNAME = socket.gethostname()


def envelope(sequence: int, now: float | None = None) -> list[tuple[str, str]]:
    """FreeSWITCH's standard event headers (reference §6.1) as ccfast fills them."""
    now = time.time() if now is None else now
    return [
        ("Event-Subclass", S.EVENT_SUBCLASS),
        ("Event-Name", "CUSTOM"),
        ("Core-UUID", CORE_UUID),
        ("FreeSWITCH-Hostname", HOSTNAME),
        ("FreeSWITCH-Switchname", HOSTNAME),
        ("FreeSWITCH-IPv4", "127.0.0.1"),
        ("FreeSWITCH-IPv6", "::1"),
        ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
        ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))),
        ("Event-Date-Timestamp", str(int(now * 1_000_000))),
        ("Event-Calling-File", "ccfast"),
        ("Event-Calling-Function", "callcenter"),
        ("Event-Calling-Line-Number", "0"),
        ("Event-Sequence", str(sequence)),
    ]


class _Subscriber:
    def __init__(self) -> None:
        self.format: str | None = None
        self.wants_cc = False
        self.wants_jobs = False
        self.filters: list[tuple[str, str]] = []
        self.send, self.receive = trio.open_memory_channel[bytes](MAX_BACKLOG)
        self.dropped = False

    def subscribe(self, cmd: Subscribe) -> None:
        self.format = cmd.format
        events = set(cmd.events)
        if "ALL" in events or ("CUSTOM" in events and (not cmd.subclasses or S.EVENT_SUBCLASS in cmd.subclasses)):
            self.wants_cc = True
        if "ALL" in events or "BACKGROUND_JOB" in events:
            self.wants_jobs = True

    def passes(self, headers: list[tuple[str, str]]) -> bool:
        if not self.filters:
            return True
        return any(name == fname and value == fvalue for fname, fvalue in self.filters for name, value in headers)


class ControlServer:
    """Serves the control port for one service. ``publish`` is called for every CC event."""

    def __init__(
        self,
        state: apimod.ApiState,
        password: str,
        *,
        now: Callable[[], int],
        after_command: Callable[[], None] = lambda: None,
        stats: Callable[[str | None, bool], str] | None = None,
    ) -> None:
        self.state = state
        self.password = password
        self.now = now
        self.after_command = after_command
        self.stats = stats
        self._subscribers: set[_Subscriber] = set()
        self._sequence = 0
        self.dropped_subscribers = 0

    # -- events ------------------------------------------------------------------------------
    @property
    def subscribed(self) -> bool:
        """Somebody listens for events (``publish`` is a no-op otherwise)."""
        return bool(self._subscribers)

    def publish(self, action: str, headers: list[tuple[str, str]]) -> None:
        if not self._subscribers:
            return
        self._sequence += 1
        full = envelope(self._sequence) + list(headers)
        encoded: dict[str, bytes] = {}
        for sub in list(self._subscribers):
            if not sub.wants_cc or sub.format is None or not sub.passes(full):
                continue
            data = encoded.get(sub.format)
            if data is None:
                data = write_event_json(full) if sub.format == "json" else write_event_plain(full)
                encoded[sub.format] = data
            self._push(sub, data)

    def _push(self, sub: _Subscriber, data: bytes) -> None:
        try:
            sub.send.send_nowait(data)
        except trio.WouldBlock:
            sub.dropped = True
            self.dropped_subscribers += 1
            sub.send.close()
            self._subscribers.discard(sub)
        except trio.ClosedResourceError:
            self._subscribers.discard(sub)

    # -- commands ------------------------------------------------------------------------------
    async def run_api_cluster(self, command: str, args: str) -> str:
        """``run_api``; with several nodes a listing first reads what other nodes own from the
        database (``ClusterGlue.prefetch``: members of their queues, rows of the agents they are
        offering), so every node answers for the whole cluster."""
        state = self.state
        cluster = state.cluster
        if cluster is None or not cluster.wants_prefetch(command, args):
            return self.run_api(command, args)
        try:
            members, agents, counters = await cluster.prefetch()
        except Exception as exc:  # the database is away: answer from this node's view
            log.warning("cluster listing from this node only: %r", exc)
            members, agents, counters = None, None, None
        # set and cleared around the synchronous call: no other command interleaves
        state.remote_members, state.remote_agents, state.remote_counters = members, agents, counters
        try:
            return self.run_api(command, args)
        finally:
            state.remote_members = state.remote_agents = state.remote_counters = None

    def run_api(self, command: str, args: str) -> str:
        """The output of ``api <command> <args>`` (empty output is sent as ``-ERR no reply``)."""
        name = command.lower()
        cluster = self.state.cluster
        if cluster is not None:
            cluster.api_begin()  # agent/tier changes of this command are published to the other nodes
        try:
            if name == "callcenter_config":
                out = apimod.callcenter_config(self.state, args, self.now())
            elif name == "callcenter_break":
                out = apimod.callcenter_break(self.state, args)
            elif name == "json":
                out = self._json_api(args)
            elif name == "ccfast_cluster" and self.state.cluster is not None:
                # this node's view of the cluster: owned queues, live nodes, claims, counters (JSON)
                out = json.dumps(self.state.cluster.describe(), sort_keys=True) + "\n"
            elif name == "ccfast_stats" and self.stats is not None:
                words = args.split()
                out = self.stats(next((w for w in words if not w.startswith("--")), None), "--json" in words)
            else:
                return f"-ERR {command} Command not found!\n"
        except apimod.ApiUnavailable:
            return f"-ERR {command} Command not found!\n"
        except Exception as exc:
            # one bad command must never take the control port (or the service) down
            log.exception("api %s %s failed", command, args)
            return f"-ERR {exc}\n"
        finally:
            try:
                self.after_command()
            finally:
                if cluster is not None:
                    cluster.api_end()
        return out

    def _json_api(self, args: str) -> str:
        try:
            request = json.loads(args)
        except ValueError:
            return '{"status":"error","message":"parse error"}'
        if not isinstance(request, dict) or request.get("command") != "callcenter_config":
            return '{"status":"error","message":"Invalid command"}'
        ok, text = apimod.callcenter_config_json(self.state, request.get("data"), self.now())
        if ok:
            return '{"command":"callcenter_config","status":"success","response":' + text + "}"
        body = ',"response":' + text if text else ""
        return '{"command":"callcenter_config","status":"error"' + body + "}"

    # -- connections -----------------------------------------------------------------------------
    async def serve(self, host: str, port: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.abc.Stream) -> None:
        proto = ServerProtocol()
        sub = _Subscriber()
        authed = False
        try:
            await stream.send_all(write_auth_request())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream, sub)
                while True:
                    cmd = proto.next_command()
                    if cmd is NEED_DATA:
                        data = await stream.receive_some(65536)
                        proto.receive_data(data)
                        continue
                    if cmd is CLOSED or sub.dropped:
                        break
                    if not authed:
                        if isinstance(cmd, Auth) and cmd.password == self.password:
                            authed = True
                            await self._reply(sub, write_command_reply("+OK accepted"))
                            continue
                        if isinstance(cmd, Exit):
                            await self._bye(sub)
                            break
                        await self._reply(sub, write_command_reply("-ERR invalid"))
                        if isinstance(cmd, Auth):
                            break
                        continue
                    if not await self._command(cmd, sub, nursery):
                        break
                sub.send.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
            log.debug("control connection ended: %r", exc)
        finally:
            self._subscribers.discard(sub)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _writer(self, stream, sub: _Subscriber) -> None:
        async for data in sub.receive:
            await stream.send_all(data)

    async def _reply(self, sub: _Subscriber, data: bytes) -> None:
        await sub.send.send(data)

    async def _bye(self, sub: _Subscriber) -> None:
        await self._reply(sub, write_command_reply("+OK bye"))
        await self._reply(sub, write_disconnect_notice())

    async def _command(self, cmd: Any, sub: _Subscriber, nursery: trio.Nursery) -> bool:
        if isinstance(cmd, Api):
            await self._reply(sub, write_api_response(await self.run_api_cluster(cmd.command, cmd.args)))
        elif isinstance(cmd, BgApi):
            job = cmd.job_uuid or str(uuidlib.uuid4())
            await self._reply(sub, write_bgapi_reply(job))
            body = await self.run_api_cluster(cmd.command, cmd.args) or "-ERR no reply\n"
            if sub.wants_jobs and sub.format:
                self._sequence += 1
                headers = [("Event-Name", "BACKGROUND_JOB"), ("Core-UUID", CORE_UUID),
                           ("Event-Sequence", str(self._sequence)), ("Job-UUID", job),
                           ("Job-Command", cmd.command), ("Job-Command-Arg", cmd.args)]
                write = write_event_json if sub.format == "json" else write_event_plain
                self._push(sub, write(headers, body))
        elif isinstance(cmd, Subscribe):
            sub.subscribe(cmd)
            self._subscribers.add(sub)
            await self._reply(sub, write_command_reply(f"+OK event listener enabled {cmd.format}"))
        elif isinstance(cmd, NixEvent):
            if "CUSTOM" in cmd.events or "ALL" in cmd.events:
                sub.wants_cc = False
            await self._reply(sub, write_command_reply("+OK events nixed"))
        elif isinstance(cmd, NoEvents):
            sub.wants_cc = sub.wants_jobs = False
            sub.format = None
            await self._reply(sub, write_command_reply("+OK no longer listening for events"))
        elif isinstance(cmd, Filter):
            sub.filters.append((cmd.header, cmd.value))
            await self._reply(sub, write_command_reply(f"+OK filter added. [{cmd.header}]=[{cmd.value}]"))
        elif isinstance(cmd, FilterDelete):
            sub.filters = [] if cmd.header in (None, "all") else [
                f for f in sub.filters if f[0] != cmd.header or (cmd.value is not None and f[1] != cmd.value)
            ]
            await self._reply(sub, write_command_reply("+OK filter deleted."))
        elif isinstance(cmd, Exit):
            await self._bye(sub)
            return False
        else:
            await self._reply(sub, write_command_reply("-ERR command not found"))
        return True
