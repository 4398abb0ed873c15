"""The cluster layer wired into one ccfast process (docs/cluster.md, "Wiring").

``ClusterGlue`` implements ``ccfast.service.ports.ClusterHooks`` on top of a ``ClusterNode`` and
does everything else a node needs besides the service's own hook calls:

* start-up (``load_state``): agents and tiers loaded fully (agents still claimed by a live node are
  loaded as they are and held; the others get §1.5's reset), no members (they come per queue when
  the queue is gained), the configuration on top, every queue suspended until this node owns it;
* the writer goes through ``FencedStore`` (``store``): member rows only under this node's generation;
* ``on_gained(queue)``: the queue's member rows are read (the takeover made them this node's:
  ``instance_id`` = node id), loaded with ``load_recovered`` (Waiting/Trying → Abandoned,
  re-adoptable by their channel for the queue's discard window: a caller coming back through the
  dialplan resumes at its place), the queue resumed, the dispatcher woken; only then does
  ``owns(queue)`` answer True;
* ``on_lost(queue)``: ``owns`` False at once, ``core.queue_suspend``, the queue's waiting callers
  ended with ``BREAK_OUT`` (their socket closes, the dialplan fallback after ``socket`` brings them
  to a node that redirects them to the new owner), their ringing offers cancelled;
* claims: ``claim(offer)`` before the originate, ``offer_finished(offer)`` releases with the agent's
  columns changed during the offer (collected from the journal the service flushes, ``tap``);
* the feed consumer: other nodes' claims hold agents here, releases apply their columns and un-hold,
  ``rows`` messages (agent/tier mutations of ``callcenter_config`` on another node) are applied
  without journal or events, ``resync`` re-reads claims, agents and tiers and re-claims this node's
  live offers;
* listings for the whole cluster (``prefetch`` before a ``callcenter_config`` listing: members of
  queues owned elsewhere and rows of agents claimed elsewhere, read from the database);
* stop: on a normal cancel (SIGTERM) the writer is flushed and the queues and claims given up at
  once; ``crash()`` (tests) drops the connections without any of that, like a killed process.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import trio

from .. import config as configmod
from .. import strings as S
from ..params import QueueParams
from ..store.base import select_sql
from ..store.schema import AGENTS, COLUMN_NAMES, MEMBERS, TIERS, quote
from .errors import ClusterUnavailable
from .feed import MAX_PAYLOAD, RESYNC, FeedMessage, encode
from .fence import FencedStore
from .keys import NS_NODE, lock_key, node_id
from .node import ClusterNode
from .pg import CLAIM_TABLE, NODE_TABLE, OWNER_TABLE, ensure_cluster_schema

log = logging.getLogger("ccfast.cluster.glue")

ROWS = "rows"  # feed kind: journal entries of agents/tiers from a callcenter_config command
QUEUE = "queue"  # feed kind: queue load/unload/reload on another node {name, op, params}
QUEUE_OPS = ("load", "unload", "reload")
TRANSIENT_AGENT_STATES = (S.STATE_RECEIVING, S.STATE_RESERVED, S.STATE_IN_A_QUEUE_CALL)
CLAIM_RETRY_DELAY = 0.5  # s: a claim the database did not answer is withdrawn after this pause
LISTING_WORDS = ("list", "count")


def start_cluster(cfg, store, clock) -> "ClusterGlue | None":
    """The glue for ``cluster = true`` (None otherwise). ``cfg.settings.cc_instance_id`` of the
    returned ``glue.cfg`` is the node id (the core must be built from it)."""
    if not getattr(cfg.ccfast, "cluster", False):
        return None
    return ClusterGlue(cfg, store, clock)


class ClusterGlue:
    """One node's cluster wiring (see the module docstring)."""

    def __init__(self, cfg, store, clock, **node_kwargs: Any) -> None:
        settings = cfg.ccfast
        target = cfg.database
        if target.engine not in ("postgres", "postgresql"):
            raise ValueError("cluster mode needs a PostgreSQL odbc-dsn")
        nid = node_id(cfg.settings.cc_instance_id)
        self.cfg = dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, cc_instance_id=nid))
        self.clock = clock
        self.raw_store = store
        address = settings.cluster_address
        self.node = ClusterNode(
            nid, address=f"{address.host}:{address.port}" if address is not None else "",
            interval=settings.cluster_interval, stale_after=settings.cluster_stale_after,
            on_gained=self._on_gained, on_lost=self._on_lost, on_message=self._on_message,
            on_reaped=self._on_reaped, **{**target.connect_kwargs, **node_kwargs})
        self.store = FencedStore(store, nid, self._generations)
        self.core = None
        self.service = None
        self.writer = None
        self.ready: set[str] = set()  # owned AND its member rows loaded: owns() is True
        self._changed = trio.Event()  # ownership moved (redirect waits on it)
        self._claimed: dict[str, int] = {}  # agent -> offer id of this node's live claim
        self._cols: dict[str, dict] = {}  # agent -> columns changed while claimed (for the release)
        self._precl: dict[str, dict] = {}  # agent -> columns the dispatch pass changed before the claim
        self._api_depth = 0
        self._api_rows: list = []
        self._api_queues: list[dict] = []  # queue commands of the command being run (published)
        self._owner_cache: dict[str, tuple[str, float]] = {}
        self._nursery: trio.Nursery | None = None
        self.crashed = False
        self.fenced_off = False  # stopping/crashed: no member row is written any more
        self._ending: dict[str, set[str]] = {}  # queue -> member uuids ended when it was lost
        self.stats = {"redirects": 0, "claims_refused": 0, "claims_unavailable": 0, "rows_published": 0,
                      "rows_applied": 0, "readopted": 0, "lost_callers": 0, "retaken": 0, "rows_forgotten": 0,
                      "queue_ops_published": 0, "queue_ops_applied": 0}

    def _generations(self) -> dict[str, int]:
        """The fence's view: owned queues whose rows are loaded (``ready``), none once stopping —
        a stopping node's cancelled callers stay Waiting in the database, so the next owner
        re-adopts them at their place. A queue gained but not loaded yet is left out: when this
        node re-takes a queue it lost, its late writes from the loss (the callers it ended) must
        not reach the rows it is about to read back."""
        if self.fenced_off:
            return {}
        ready = self.ready
        return {q: g for q, g in self.node.ownership.owned.items() if q in ready}

    @property
    def node_id(self) -> str:
        return self.node.node

    # -- start-up ----------------------------------------------------------------------------------
    async def load_state(self, core, now: int) -> None:
        """Schema, agents/tiers (no members), the configuration on top, every queue suspended."""
        store, cfg = self.raw_store, self.cfg
        self.core = core
        self.node.ownership.counters = core.queue_counters  # `queue list` on other nodes
        await store.connect_with_retry()
        await store.ensure_schema()
        await ensure_cluster_schema(self.node.locks)
        live = await self._live_claims()
        rows = await store.load_rows()
        for src in cfg.queue_sources:
            configmod.resolve_queue(core, cfg, src.name)
        agents = rows.get(AGENTS) or []
        tiers = rows.get(TIERS) or []
        used = {a["name"] for a in agents if a["name"] in live}
        # agents a live node is offering keep their row; the others return to definite states
        core.load_recovered({AGENTS: [a for a in agents if a["name"] not in used],
                             TIERS: [t for t in tiers if t["agent"] not in used]}, now, reset_agents=True)
        core.load_rows(AGENTS, [a for a in agents if a["name"] in used])
        core.load_rows(TIERS, [t for t in tiers if t["agent"] in used])
        configmod.apply_startup(core, cfg, now)
        for name in used:
            core.agent_hold(name, True)
        self.sync_queues()

    async def _live_claims(self) -> set[str]:
        """Agents claimed by a node whose node lock is held (a live node)."""
        claims = await self.node.claim_session.fetch(
            f"SELECT c.agent, c.node, n.pid FROM {CLAIM_TABLE} c LEFT JOIN {NODE_TABLE} n ON n.node = c.node")
        if not claims:
            return set()
        locks = await self.node.claim_session.fetch(
            "SELECT pid, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
            "AND objsubid = 2 AND granted", NS_NODE)
        held = {(pid, objid) for pid, objid in locks}
        return {agent for agent, node, pid in claims if node != self.node_id and (pid, lock_key(node)) in held}

    def sync_queues(self) -> None:
        """Want every loaded queue; dispatch only the ready ones (after start, queue load/unload)."""
        core = self.core
        names = core.queue_names()
        self.node.want(names)
        for name in names:
            core.queue_suspend(name, name not in self.ready)

    # -- running -------------------------------------------------------------------------------------
    async def run(self, service, writer, outbound_port: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the node beside the service until cancelled (graceful stop) or ``crash()``."""
        self.service, self.writer = service, writer
        service.cluster = self
        if not self.node.ownership.address:
            host = self.cfg.ccfast.outbound_listen.host
            self.node.ownership.address = f"{host}:{outbound_port}"
        service.journal_sink = self.tap(service.journal_sink)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.node.run)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.fenced_off = True
            if not self.crashed:
                # the writer's final flush (agents/tiers; members are fenced off now) follows when
                # serve leaves open_writer; the queues go at once so other nodes take them next tick
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self.node.shutdown()
            for s in (self.node.locks, self.node.claim_session, self.node.listen):
                s.abort()

    def crash(self) -> None:
        """Tests: die like a killed process (no release, connections cut); then cancel the serve."""
        self.crashed = self.fenced_off = True
        for s in (self.node.locks, self.node.claim_session, self.node.listen):
            s.abort()
        self.node.stop()

    def _spawn(self, fn, *args) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    # -- ClusterHooks -----------------------------------------------------------------------------------
    def owns(self, queue: str) -> bool:
        return queue in self.ready

    async def redirect_address(self, queue: str) -> str | None:
        """The owner's address; None when this node got the queue meanwhile or nobody owns it
        within ``stale_after`` + ``interval`` (a failover normally completes in one interval)."""
        own = self.node.ownership
        deadline = trio.current_time() + own.stale_after + own.interval
        while True:
            if queue in self.ready:
                return None
            cached = self._owner_cache.get(queue)
            now = trio.current_time()
            if cached is not None and cached[1] > now:
                self.stats["redirects"] += 1
                return cached[0]
            try:
                owner = await self.node.owner_of(queue)
            except ClusterUnavailable:
                owner = None
            if owner is not None and owner[0] != self.node_id and owner[1]:
                self._owner_cache[queue] = (owner[1], trio.current_time() + own.interval)
                self.stats["redirects"] += 1
                return owner[1]
            if now >= deadline:
                return None
            with trio.move_on_after(min(own.interval / 2, max(0.0, deadline - now))):
                await self._changed.wait()

    async def claim(self, offer) -> bool:
        agent = offer.agent
        core = self.core
        if self.node.held_elsewhere(agent) is not None:
            core.agent_hold(agent, True)
            self.stats["claims_refused"] += 1
            return False
        try:
            ok = await self.node.claims.claim(agent, queue=offer.queue, member_uuid=offer.member_uuid,
                                              offer_id=offer.offer_id)
        except ClusterUnavailable as exc:
            # never offer without a claim; the pause keeps a dead database from spinning the
            # dispatcher on this agent (withdrawn afterwards, journaled, no penalty)
            log.warning("cluster: claim of agent %s failed: %s", agent, exc)
            self.stats["claims_unavailable"] += 1
            await trio.sleep(CLAIM_RETRY_DELAY)
            return False
        if not ok:
            core.agent_hold(agent, True)  # the holder's release message un-holds it
            self.stats["claims_refused"] += 1
            return False
        self._claimed[agent] = offer.offer_id
        # the pass that made this offer journaled state/last_offered_call before the claim
        self._cols[agent] = self._precl.pop(agent, {})
        return True

    def offer_finished(self, offer) -> None:
        agent = offer.agent
        if self._claimed.get(agent) == offer.offer_id:
            del self._claimed[agent]
        cols = self._cols.pop(agent, None)
        self._spawn(self._release, agent, offer.offer_id, cols)

    async def _release(self, agent: str, offer_id: int, cols: dict | None) -> None:
        try:
            await self.node.claims.release(agent, offer_id=offer_id, cols=_jsonable(cols))
        except ValueError:  # columns too large for one message: release without them
            await self.node.claims.release(agent, offer_id=offer_id)

    # -- the journal the service flushes ----------------------------------------------------------
    def tap(self, sink):
        """Wrap the service's journal sink: agent columns changed during this node's claims are
        kept for the release; agent/tier changes of a ``callcenter_config`` command are published."""

        def journal(entries) -> None:
            claimed, cols, precl = self._claimed, self._cols, self._precl
            for entry in entries:
                table = entry[0]
                if table == AGENTS:
                    name = entry[2][0]
                    if name in claimed and entry[1] == "update":
                        cols.setdefault(name, {}).update(entry[3])
                        continue
                    if not self._api_depth:
                        if entry[1] == "update":
                            precl.setdefault(name, {}).update(entry[3])
                        continue
                    precl.pop(name, None)
                elif table != TIERS:
                    continue
                if self._api_depth:
                    self._api_rows.append([table, entry[1], list(entry[2]), entry[3]])
            if sink is not None:
                sink(entries)

        return journal

    def api_begin(self) -> None:
        self._api_depth += 1

    def api_end(self) -> None:
        self._api_depth -= 1
        if self._api_depth == 0:
            rows, self._api_rows = self._api_rows, []
            queues, self._api_queues = self._api_queues, []
            if rows or queues:
                self._spawn(self._publish_command, queues, rows)
            if self.core is not None:
                self.sync_queues()  # queue load/unload

    def queue_changed(self, op: str, name: str) -> None:
        """``callcenter_config queue <op> <name>`` succeeded here (the control port tells): the
        other nodes apply it too, with the parameters this node loaded (so every core has the
        same queue even if a node's configuration file lags). Published after the command, before
        its agent/tier rows — the order the command ran in."""
        if op not in QUEUE_OPS:
            raise ValueError(f"queue_changed: op must be one of {QUEUE_OPS}, got {op!r}")
        params = self.core.queue_params(name) if self.core is not None and op != "unload" else None
        self._api_queues.append({"name": name, "op": op,
                                 "params": None if params is None else _jsonable(dataclasses.asdict(params))})

    async def _publish_command(self, queues: list[dict], rows: list) -> None:
        for data in queues:
            try:
                await self.node.feed.publish(QUEUE, data)
                self.stats["queue_ops_published"] += 1
            except (ClusterUnavailable, ValueError) as exc:
                log.warning("cluster: queue %s %s not published: %s (apply it on the other nodes)",
                            data["op"], data["name"], exc)
        if rows:
            await self._publish_rows(rows)

    async def _publish_rows(self, rows: list) -> None:
        chunk: list = []
        for row in rows:
            row = _jsonable(row)
            if chunk and len(encode(self.node_id, ROWS, {"rows": chunk + [row]})) > MAX_PAYLOAD:
                await self._publish(chunk)
                chunk = []
            chunk.append(row)
        if chunk:
            await self._publish(chunk)

    async def _publish(self, chunk: list) -> None:
        try:
            await self.node.feed.publish(ROWS, {"rows": chunk})
            self.stats["rows_published"] += len(chunk)
        except (ClusterUnavailable, ValueError) as exc:
            log.warning("cluster: %d agent/tier change(s) not published: %s (other nodes resync later)",
                        len(chunk), exc)

    # -- ownership callbacks ---------------------------------------------------------------------------
    def _moved(self) -> None:
        self._owner_cache.clear()
        self._changed.set()
        self._changed = trio.Event()

    def _on_gained(self, queue: str, generation: int) -> None:
        self._moved()
        self._spawn(self._adopt, queue, generation)

    async def _adopt(self, queue: str, generation: int) -> None:
        core = self.core
        retake = core.queue_params(queue) is not None and any(m["queue"] == queue for m in core.rows(MEMBERS))
        try:
            if retake:
                await self._settle_lost_writes(queue)
            records = await self.raw_store.fetch(
                select_sql(MEMBERS) + f" WHERE {quote('queue')} = $1 ORDER BY {quote('joined_epoch')}", (queue,))
        except Exception as exc:
            log.error("cluster: members of %s not loaded (%r); giving the queue up", queue, exc)
            self.node.ownership.owned.pop(queue, None)
            self.node.locks.abort()  # frees our locks; the next tick re-takes what it can
            return
        if self.node.owns(queue) != generation:
            return  # lost again meanwhile
        names = COLUMN_NAMES[MEMBERS]
        if retake:
            # re-taken by this node after losing it: the rows it still has (the callers it ended
            # are Abandoned there) give way to the database's, which still show them Waiting with
            # their channel, so they resume at their place like after any takeover. Rows of
            # callers this node still serves (bridged, answered) stay as they are.
            service = self.service
            keep = [] if service is None else [
                s.member_uuid for s in service.members.values()
                if s.queue == queue and not s.gone and (s.agent_found or s.is_bridged)]
            if not core.queue_suspended(queue):
                core.queue_suspend(queue, True)
            forgotten = core.members_forget(queue, keep)
            self.stats["retaken"] += 1
            self.stats["rows_forgotten"] += len(forgotten)
            log.info("cluster: queue %s re-taken: %d member row(s) reloaded from the database", queue, len(forgotten))
        known = {m["uuid"] for m in core.rows(MEMBERS) if m["queue"] == queue}
        rows = [dict(zip(names, r)) for r in records]
        rows = [r for r in rows if r["uuid"] not in known]
        now = self.clock.now()
        if core.queue_params(queue) is None:
            configmod.resolve_queue(core, self.cfg, queue)
        if rows:
            out = core.load_recovered({MEMBERS: rows}, now, reset_agents=False)
            self.stats["readopted"] += out.get("readopt", 0)
        if core.queue_params(queue) is not None:
            core.queue_suspend(queue, False)
        self.ready.add(queue)
        self._moved()
        if self.service is not None:
            self.service.changed()

    async def _settle_lost_writes(self, queue: str) -> None:
        """Before a re-taken queue's rows are read: the callers this node ended when it lost the
        queue have left (bounded wait: their cancel is in the core), and every journal entry so
        far has met the fence (the queue is not ``ready``: nothing of it is written)."""
        ending = self._ending.pop(queue, set())
        service = self.service
        own = self.node.ownership
        with trio.move_on_after(own.stale_after):
            while service is not None and any(uuid in service.members for uuid in ending):
                await trio.sleep(0.01)
        if service is not None:
            service.flush()
        if self.writer is not None:
            with trio.fail_after(own.stale_after):
                await self.writer.flush()

    def _on_lost(self, queue: str, generation: int, reason: str) -> None:
        self.ready.discard(queue)
        self._moved()
        core, service = self.core, self.service
        if core is not None and core.queue_params(queue) is not None:
            core.queue_suspend(queue, True)
        if service is None:
            return
        ending = self._ending[queue] = set()
        for session in list(service.members.values()):
            if session.queue == queue and not (session.agent_found or session.is_bridged or session.gone):
                self.stats["lost_callers"] += 1
                ending.add(session.member_uuid)
                session.timeout(S.CANCEL_BREAK_OUT)
        service.changed()

    def _on_reaped(self, reaped: list[tuple[str, str]]) -> None:
        """This node's tick deleted a dead node's claims: their agents are free again. Their rows
        still show the dead node's offer (Receiving / In a queue call): set Waiting in the database
        once, here (the other nodes get the release messages and fix their cores unjournaled)."""
        core = self.core
        if core is None:
            return
        names = [agent for agent, _dead in reaped]
        for agent in names:
            core.agent_hold(agent, False)
            self._precl.pop(agent, None)
            self._free(agent)
        self._spawn(self._reset_rows, names)
        if self.service is not None:
            self.service.changed()

    def _free(self, agent: str) -> None:
        core = self.core
        try:
            if core.agent_offer(agent) is None and core.agent_get("state", agent) in TRANSIENT_AGENT_STATES:
                core.agent_apply(agent, {"state": S.STATE_WAITING})
        except Exception as exc:  # the agent was deleted meanwhile
            log.debug("cluster: freeing agent %s: %r", agent, exc)

    async def _reset_rows(self, names: list[str]) -> None:
        try:
            await self.raw_store.execute([(
                f"UPDATE {quote(AGENTS)} SET {quote('state')} = $1 WHERE {quote('name')} = ANY($2::text[]) "
                f"AND {quote('state')} = ANY($3::text[])", [(S.STATE_WAITING, names, list(TRANSIENT_AGENT_STATES))])])
        except Exception as exc:
            log.warning("cluster: rows of %d agent(s) freed from a dead node not reset: %r", len(names), exc)

    # -- the feed ---------------------------------------------------------------------------------------
    def _on_message(self, msg: FeedMessage) -> None:
        core = self.core
        if core is None:
            return
        kind, data = msg.kind, msg.data
        try:
            if kind == "claim":
                core.agent_hold(data["agent"], True)
            elif kind == "release":
                agent = data["agent"]
                self._precl.pop(agent, None)
                if data.get("cols"):
                    core.agent_apply(agent, data["cols"])
                if data.get("reaped"):
                    self._free(agent)
                if self.node.held_elsewhere(agent) is None:
                    core.agent_hold(agent, False)
            elif kind == ROWS:
                for table, op, key, cols in data.get("rows") or ():
                    self._apply_row(table, op, key, cols)
            elif kind == QUEUE:
                self._apply_queue(data["op"], data["name"], data.get("params"))
            elif kind == RESYNC:
                self._spawn(self._resync, data.get("reason") != "connected")
                return
            else:
                return
        except Exception as exc:  # one bad message must not stop the consumer
            log.warning("cluster: feed message %s from %s not applied: %r", kind, msg.origin, exc)
        if self.service is not None:
            self.service.changed()

    def _apply_queue(self, op: str, name: str, params: dict | None) -> None:
        """Another node's ``queue load/unload/reload``: the queue part only (its agent/tier
        changes come as ``rows``), as ``api._queue`` does it: reload/unload remove the queue,
        load/reload set it with the sender's parameters (counters restart at 0); an unloaded queue
        this node still has callers of is looked up again in its configuration (§2.6 quirk)."""
        core = self.core
        if op not in QUEUE_OPS:
            raise ValueError(f"unknown queue op {op!r}")
        if op != "load" and core.queue_params(name) is not None:
            core.queue_remove(name)
        if op == "unload":
            cfg = getattr(self.service, "config", None) or self.cfg
            if cfg.queue_source(name) is not None and any(
                    m["queue"] == name and m["state"] != S.MEMBER_ANSWERED for m in core.rows(MEMBERS)):
                configmod.resolve_queue(core, cfg, name)
        elif params is not None:
            core.queue_set(QueueParams(**params))
        self.stats["queue_ops_applied"] += 1
        self.sync_queues()

    def _apply_row(self, table: str, op: str, key: list, cols: dict) -> None:
        core = self.core
        self.stats["rows_applied"] += 1
        if table == AGENTS:
            name = key[0]
            self._precl.pop(name, None)
            if op == "delete":
                core.agent_apply(name, None)
                return
            cols = {k: v for k, v in cols.items() if k != "name"}
            core.agent_apply(name, cols)
            offer = core.agent_offer(name)
            status = cols.get("status")
            if offer is not None and status is not None and status not in S.CANDIDATE_STATUSES:
                # §5.10: a status change on another node cancels this node's ringing offer
                self.service.cancel_offer(offer.offer_id, S.HANGUP_ORIGINATOR_CANCEL)
        elif table == TIERS:
            queue, agent = key[0], key[1]
            if op == "delete":
                core.tier_apply(queue, agent, None)
            else:
                core.tier_apply(queue, agent, {k: v for k, v in cols.items() if k not in ("queue", "agent")})

    async def _resync(self, reread: bool = True) -> None:
        """After the feed (re)connected: claims → holds, agents/tiers from the database (not at the
        first connect: load_state has just read them), and this node's live offers claimed again (a
        database restart or a reap may have dropped them). This node's own changes are flushed
        first, so the rows read back are not older than its core."""
        core = self.core
        remote = dict(self.node.remote_claims)
        for name in core.held_agents():
            if name not in remote:
                core.agent_hold(name, False)
        for name in remote:
            core.agent_hold(name, True)
        rows: dict = {}
        if reread:
            try:
                if self.writer is not None:
                    await self.writer.flush()
                rows = await self.raw_store.load_rows()
            except Exception as exc:
                log.warning("cluster: resync could not read agents/tiers: %r", exc)
        busy = set(self._claimed)
        for a in rows.get(AGENTS) or []:
            if a["name"] in busy or core.agent_offer(a["name"]) is not None:
                continue
            try:
                core.agent_apply(a["name"], {k: v for k, v in a.items() if k != "name"})
            except Exception as exc:
                log.debug("cluster: resync agent %s: %r", a["name"], exc)
        for t in rows.get(TIERS) or []:
            if t["agent"] in busy:
                continue
            try:
                core.tier_apply(t["queue"], t["agent"], {k: v for k, v in t.items() if k not in ("queue", "agent")})
            except Exception as exc:
                log.debug("cluster: resync tier %s/%s: %r", t["queue"], t["agent"], exc)
        for agent, offer_id in list(self._claimed.items()):
            offer = core.agent_offer(agent)
            try:
                await self.node.claims.claim(agent, queue=offer.queue if offer else "",
                                             member_uuid=offer.member_uuid if offer else "", offer_id=offer_id)
            except ClusterUnavailable:
                break
        if self.service is not None:
            self.service.changed()

    # -- listings for the whole cluster ----------------------------------------------------------------
    @staticmethod
    def wants_prefetch(command: str, args: str) -> bool:
        words = (args or "").lower()
        return command.lower() in ("callcenter_config", "json") and any(w in words for w in LISTING_WORDS)

    async def prefetch(self) -> tuple[list[dict], dict[str, dict], dict[str, tuple[int, int]]]:
        """(member rows of queues this node does not own, agent rows claimed by other nodes,
        {queue: (calls_answered, calls_abandoned)} of queues owned elsewhere — the owner's
        counters as of its last heartbeat)."""
        mine = sorted(self.ready)
        records = await self.raw_store.fetch(
            select_sql(MEMBERS) + f" WHERE NOT ({quote('queue')} = ANY($1::text[])) ORDER BY {quote('joined_epoch')}",
            (mine,))
        members = [dict(zip(COLUMN_NAMES[MEMBERS], r)) for r in records]
        remote = sorted(self.node.remote_claims)
        agents: dict[str, dict] = {}
        if remote:
            recs = await self.raw_store.fetch(select_sql(AGENTS) + f" WHERE {quote('name')} = ANY($1::text[])",
                                              (remote,))
            agents = {r["name"]: r for r in (dict(zip(COLUMN_NAMES[AGENTS], rec)) for rec in recs)}
        counters = {q: (int(a), int(b)) for q, a, b in await self.node.claim_session.fetch(
            f"SELECT queue, calls_answered, calls_abandoned FROM {OWNER_TABLE} WHERE NOT (queue = ANY($1::text[]))",
            mine)}
        return members, agents, counters

    def metric_totals(self) -> dict[str, int]:
        """Counters and current values for the Prometheus scrape hook (``Metrics.watch_cluster``):
        cheap, no copies of per-agent data."""
        own, claims, feed, g = self.node.ownership, self.node.claims, self.node.feed, self.stats
        return {
            "owned_queues": len(own.owned), "live_nodes": len(own.live_nodes),
            "remote_claims": len(self.node.remote_claims),
            "queues_gained": own.stats["gained"], "queues_lost": own.stats["lost"],
            "nodes_terminated": own.stats["terminated"], "claims_reaped": own.stats["reaped_claims"],
            "claims_claimed": claims.stats["claimed"], "claims_refused": g["claims_refused"],
            "claims_unavailable": g["claims_unavailable"], "claims_released": claims.stats["released"],
            "feed_published": feed.stats["published"], "feed_received": feed.stats["received"],
            "feed_reconnects": feed.stats["reconnects"], "feed_overflows": feed.stats["overflows"],
            "redirects": g["redirects"], "callers_readopted": g["readopted"], "callers_lost": g["lost_callers"],
            "queue_retakes": g["retaken"],
        }

    def claim_latencies(self) -> tuple[int, Any]:
        """(claims timed so far, the latest round trips in seconds, oldest first; up to 4096)."""
        claims = self.node.claims
        return claims.timed, claims.recent

    def describe(self) -> dict:
        own = self.node.ownership
        return {"node": self.node_id, "address": own.address, "owned": dict(own.owned), "ready": sorted(self.ready),
                "live_nodes": list(own.live_nodes), "remote_claims": dict(self.node.remote_claims),
                "ownership": dict(own.stats), "claims": dict(self.node.claims.stats),
                "feed": dict(self.node.feed.stats), "glue": dict(self.stats)}


def _jsonable(value):
    """Journal values → JSON (they are str/int/None already; anything else as text)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
