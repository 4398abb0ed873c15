"""The cluster change feed: PostgreSQL LISTEN/NOTIFY between ccfast nodes.

A message is JSON ``{"o": origin node, "k": kind, "d": data}`` on channel ``ccfast_cluster``.
Kinds used by the cluster layer: ``claim`` / ``release`` (agent claims, sent in the same statement
or transaction as the claim change, so they arrive in commit order), and by the service
``agent`` (an agent's changed columns after a ``callcenter_config`` mutation or an offer),
``agent-del``, ``tier`` / ``tier-del``.

Guarantees: PostgreSQL delivers a committed notification to every session listening at commit
time, in commit order; nothing is delivered for a rolled-back transaction; payloads are limited
to 8000 bytes (``encode`` raises ``ValueError`` beyond ``MAX_PAYLOAD``). A node does not receive its
own messages. Not guaranteed: delivery across a listener reconnect — messages sent while the
listener was down are lost, so after every (re)connect the feed yields a ``resync`` message first:
the consumer must re-read what it mirrors from the database (claims, agents). A consumer that falls
``max_buffer`` messages behind gets the buffer replaced by one ``resync`` message (bounded memory).
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass
from typing import Any

import trio

from .errors import ClusterUnavailable
from .pg import PgSession

log = logging.getLogger("ccfast.cluster.feed")

CHANNEL = "ccfast_cluster"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes including the terminator
RESYNC = "resync"


@dataclass(frozen=True)
class FeedMessage:
    origin: str
    kind: str
    data: dict


def encode(origin: str, kind: str, data: dict) -> str:
    """The NOTIFY payload; ``ValueError`` if it exceeds ``MAX_PAYLOAD`` bytes."""
    text = json.dumps({"o": origin, "k": kind, "d": data}, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_PAYLOAD:
        raise ValueError(f"feed message {kind!r} is {len(text.encode())} bytes, over {MAX_PAYLOAD}")
    return text


def decode(payload: str) -> FeedMessage:
    obj = json.loads(payload)
    return FeedMessage(str(obj["o"]), str(obj["k"]), dict(obj.get("d") or {}))


class ChangeFeed:
    """Publish to and listen on the cluster channel; ``async for msg in feed`` yields FeedMessages.

    ``listen`` is a dedicated session (a LISTENing connection must not be shared with statements
    that could hold it for long); ``publish`` may be shared (e.g. with the claims session).
    """

    def __init__(self, node: str, listen: PgSession, publish: PgSession, *, channel: str = CHANNEL,
                 max_buffer: int = 10_000, retry_max: float = 5.0) -> None:
        self.node = node
        self.listen_session = listen
        self.publish_session = publish
        self.channel = channel
        self.max_buffer = max_buffer
        self.retry_max = retry_max
        self._buffer: collections.deque[FeedMessage] = collections.deque()
        self._ready = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self.listening = False
        self.stats = {"received": 0, "published": 0, "overflows": 0, "reconnects": 0, "bad": 0}

    # -- publishing ----------------------------------------------------------------------------
    async def publish(self, kind: str, data: dict) -> None:
        payload = encode(self.node, kind, data)
        await self.publish_session.execute("SELECT pg_notify($1, $2)", self.channel, payload)
        self.stats["published"] += 1

    # -- receiving -----------------------------------------------------------------------------
    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        # asyncio side: never raise here, hand the payload to trio
        token = self._token
        if token is not None:
            token.run_sync_soon(self._deliver, payload)

    def _deliver(self, payload: str) -> None:
        try:
            msg = decode(payload)
        except (ValueError, KeyError, TypeError):
            self.stats["bad"] += 1
            log.warning("cluster feed: undecodable message %.80r", payload)
            return
        if msg.origin == self.node:
            return
        self.stats["received"] += 1
        self._put(msg)

    def _put(self, msg: FeedMessage) -> None:
        if len(self._buffer) >= self.max_buffer:
            self.stats["overflows"] += 1
            self._buffer.clear()
            msg = FeedMessage(self.node, RESYNC, {"reason": "overflow"})
        self._buffer.append(msg)
        self._ready.set()

    def __aiter__(self) -> "ChangeFeed":
        return self

    async def __anext__(self) -> FeedMessage:
        while not self._buffer:
            self._ready = trio.Event()
            await self._ready.wait()
        return self._buffer.popleft()

    def pending(self) -> int:
        return len(self._buffer)

    async def _aio_listen(self, conn: Any) -> None:
        await conn.add_listener(self.channel, self._on_notify)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep a LISTEN connection; after each (re)connect put a ``resync`` message first.

        ``task_status.started()`` once the first LISTEN is active."""
        self._token = trio.lowlevel.current_trio_token()
        session = self.listen_session
        delay, started = 0.2, False
        while True:
            try:
                await session.run(self._aio_listen)
            except ClusterUnavailable as exc:
                self.listening = False
                log.error("cluster feed: %s; retrying in %.1f s", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self.listening, delay = True, 0.2
            self._put(FeedMessage(self.node, RESYNC, {"reason": "connected" if not started else "reconnected"}))
            if not started:
                task_status.started()
                started = True
            else:
                self.stats["reconnects"] += 1
            await session.lost.wait()
            self.listening = False
            log.warning("cluster feed: listener connection lost; reconnecting")
