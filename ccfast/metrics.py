"""Prometheus metrics of ccfast: every metric name, one registry, and the facade the service calls.

Contract:
- One ``Metrics`` object per process owns one ``CollectorRegistry`` (not prometheus-client's
  global one) and every metric below. ``SPECS`` lists them all (name, type, labels, help); the
  docs, the dashboard test and the exporter all read that table.
- Hot-path methods (``member_ended``, ``offer_result``, ``observe_events``, …) are synchronous and
  cheap: a cached child lookup plus prometheus-client's own per-value lock (never held across an
  await). They log nothing.
- Gauges of current state (members, agents, oldest wait, ESL links, journal backlog) and the KPI
  gauges are computed at scrape time: the service registers a snapshot provider
  (``set_snapshot_provider``) that returns a ``StateSnapshot``; nothing updates them per event.
- Label values are bounded by configuration: queue names, box names, CC-Action values, the
  outcome/result vocabularies below. No caller labels ever; agent labels only with
  ``per_agent=True`` and only on the ``ccfast_agent_*_by_agent*`` / ``ccfast_agent_state`` metrics.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from . import __version__
from . import strings as S
from .kpi import (  # re-exported: the outcome vocabulary is shared by metrics and KPIs
    OUTCOME_ABANDONED, OUTCOME_ANSWERED, OUTCOME_BREAK_OUT, OUTCOME_EXIT_KEY,
    OUTCOME_NO_AGENT_TIMEOUT, OUTCOME_TIMEOUT, OUTCOMES, KpiTracker,
)
from .params import QueueParams

PREFIX = "ccfast_"

# -- agent offer results ---------------------------------------------------------------------
RESULT_ANSWERED = "answered"
RESULT_NO_ANSWER = "no_answer"
RESULT_BUSY = "busy"
RESULT_REJECT = "reject"
RESULT_FAILED = "failed"  # the leg could not be placed (not registered, bad number, …)
RESULT_CANCELLED = "cancelled"  # ccfast hung the leg up (lost the ring-all race, caller left)
RESULTS = (RESULT_ANSWERED, RESULT_NO_ANSWER, RESULT_BUSY, RESULT_REJECT, RESULT_FAILED, RESULT_CANCELLED)

_CAUSE_RESULT = {
    S.HANGUP_LOSE_RACE: RESULT_CANCELLED,
    S.HANGUP_ORIGINATOR_CANCEL: RESULT_CANCELLED,
    S.HANGUP_USER_BUSY: RESULT_BUSY,
    S.HANGUP_NORMAL_CIRCUIT_CONGESTION: RESULT_BUSY,
    S.HANGUP_CALL_REJECTED: RESULT_REJECT,
    S.HANGUP_NO_ANSWER: RESULT_NO_ANSWER,
    S.HANGUP_ALLOTTED_TIMEOUT: RESULT_NO_ANSWER,
    S.HANGUP_NO_USER_RESPONSE: RESULT_NO_ANSWER,
    S.HANGUP_PROGRESS_TIMEOUT: RESULT_NO_ANSWER,
}


def offer_result_for_cause(cause: str) -> str:
    """The offer result label for an originate failure cause (§5.7 groups; anything that is not
    a cancel, busy, reject or a ring timeout counts as ``failed``)."""
    return _CAUSE_RESULT.get(cause, RESULT_FAILED)


_CANCEL_OUTCOME = {
    S.CANCEL_TIMEOUT: OUTCOME_TIMEOUT,
    S.CANCEL_NO_AGENT_TIMEOUT: OUTCOME_NO_AGENT_TIMEOUT,
    S.CANCEL_EXIT_WITH_KEY: OUTCOME_EXIT_KEY,
}


def outcome_for_cancel(reason: str, caller_hung_up: bool) -> str:
    """The member outcome for a ``member-queue-end`` Cancel: its CC-Cancel-Reason, except that a
    caller hang-up (which mod_callcenter reports as BREAK_OUT) is ``abandoned``."""
    outcome = _CANCEL_OUTCOME.get(reason)
    if outcome is not None:
        return outcome
    return OUTCOME_ABANDONED if caller_hung_up else OUTCOME_BREAK_OUT


# -- buckets -----------------------------------------------------------------------------------
SL_THRESHOLDS = (5, 10, 15, 20, 30, 45, 60, 120, 300)  # service-level thresholds in common use
WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
TALK_BUCKETS = (10, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600)
WRAP_BUCKETS = (0, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600)
DISPATCH_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
)
CORE_BUCKETS = (
    0.000002, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1,
)
ESL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CLAIM_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
assert set(SL_THRESHOLDS) <= set(WAIT_BUCKETS)


@dataclasses.dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # full name without the _total/_bucket/… suffixes
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str
    source: str = "event"  # event: updated by the facade; scrape: computed from a provider;
    # cluster: folded in at scrape time from a ClusterGlue (watch_cluster); 0 on a single node
    per_agent: bool = False  # exported only with Metrics(per_agent=True)
    buckets: tuple[float, ...] = ()

    def series_names(self) -> tuple[str, ...]:
        """The sample names this metric exposes in the text format."""
        if self.kind == "counter":
            return (self.name + "_total",)
        if self.kind == "histogram":
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)


def _g(name, labels, help, per_agent=False):
    return MetricSpec(PREFIX + name, "gauge", labels, help, "scrape", per_agent)


def _c(name, labels, help, per_agent=False):
    return MetricSpec(PREFIX + name, "counter", labels, help, "event", per_agent)


def _h(name, labels, help, buckets):
    return MetricSpec(PREFIX + name, "histogram", labels, help, "event", False, buckets)


def _cl(name, kind, labels, help, buckets=()):
    return MetricSpec(PREFIX + "cluster_" + name, kind, labels, help, "cluster", False, buckets)


# several nodes (docs/cluster.md): this node's view, from ClusterGlue.metric_totals at scrape time
CLUSTER_SPECS = (
    _cl("owned_queues", "gauge", (), "Queues this node owns (holds the lock of) now."),
    _cl("live_nodes", "gauge", (), "Live ccfast nodes (this one included) as of the last ownership round."),
    _cl("remote_claims", "gauge", (), "Agents another node is offering (held here)."),
    _cl("queues_gained", "counter", (), "Queues this node took (start, takeover of a dead node's, re-take)."),
    _cl("queues_lost", "counter", (), "Queues this node lost (connection lost, lease expired, taken over, released)."),
    _cl("nodes_terminated", "counter", (), "Hung nodes whose lock connection this node terminated."),
    _cl("claims_reaped", "counter", (), "Agent claims of dead nodes this node deleted."),
    _cl("claims", "counter", ("result",),
        "Agent claims before an offer (claimed; refused: held by another node; unavailable: database "
        "did not answer)."),
    _cl("claims_released", "counter", (), "Agent claims this node released."),
    _cl("claim_seconds", "histogram", (), "Round trip of one agent claim (added to an offer).", CLAIM_BUCKETS),
    _cl("feed_messages", "counter", ("direction",), "Change-feed messages published / received by this node."),
    _cl("feed_reconnects", "counter", (), "Change-feed listener reconnects (each followed by a resync)."),
    _cl("feed_overflows", "counter", (), "Times this node fell too far behind the feed (resync instead)."),
    _cl("redirects", "counter", (), "Callers moved to the node owning their queue."),
    _cl("callers_readopted", "counter", (), "Callers of a gained queue made re-adoptable at their place."),
    _cl("callers_lost", "counter", (), "Waiting callers this node ended because it lost their queue."),
    _cl("queue_retakes", "counter", (), "Queues this node gained while still holding their rows (re-take)."),
)
CLAIM_RESULTS = ("claimed", "refused", "unavailable")
FEED_DIRECTIONS = ("published", "received")

KPI_SPECS = (
    _g("queue_service_level_ratio", ("queue", "window"),
       "Answered within the queue's service level threshold / answered."),
    _g("queue_service_level_with_abandons_ratio", ("queue", "window"),
       "(Answered + abandoned within the threshold) / (answered + abandoned)."),
    _g("queue_average_speed_of_answer_seconds", ("queue", "window"), "Mean wait of answered members."),
    _g("queue_average_handle_time_seconds", ("queue", "window"),
       "Mean talk + wrap-up time of calls that ended after a bridge."),
    _g("queue_abandon_ratio", ("queue", "window"), "Abandoned (caller hung up) / members that ended."),
    _g("queue_occupancy_ratio", ("queue", "window"), "Busy agent-seconds / staffed agent-seconds."),
    _g("queue_service_level_threshold_seconds", ("queue",), "The queue's service-level-threshold param."),
)

SPECS: tuple[MetricSpec, ...] = (
    # state, computed at scrape time from the snapshot provider
    _g("queue_members", ("queue", "state"), "Member rows by queue and member state."),
    _g("queue_oldest_wait_seconds", ("queue",), "How long the longest-waiting member (Waiting or Trying) has waited."),
    _g("agents", ("status", "state"), "Agents by status and state."),
    _g("queue_agents", ("queue", "status", "state"), "Agents with a tier in the queue, by status and state."),
    _g("queue_available_agents", ("queue",), "Agents that could be offered a call of this queue now."),
    _g("esl_link_up", ("box",), "1 when the inbound ESL link to the FreeSWITCH box is connected and authenticated."),
    _g("store_journal_backlog", (), "Journal entries not yet written to the store."),
    _g("agent_state", ("agent", "status", "state"), "1 per agent with its status and state (per-agent option).",
       per_agent=True),
    *KPI_SPECS,
    # counters
    _c("queue_joins", ("queue", "kind"), "Members that entered a queue (kind: start or resume)."),
    _c("queue_calls", ("queue", "outcome"), "Members that left a queue, by outcome."),
    _c("agent_offers", ("queue", "result"), "Agent legs offered, by result."),
    _c("agent_offers_by_agent", ("agent", "result"), "Agent legs offered per agent (per-agent option).",
       per_agent=True),
    _c("events_fired", ("action",), "callcenter::info events fired, by CC-Action."),
    _c("esl_events_received", ("box",), "Events received on the inbound ESL link."),
    _c("esl_reconnects", ("box",), "Reconnections of the inbound ESL link."),
    _c("esl_overflow_drops", ("box",), "Events dropped because the ESL reader fell behind."),
    _c("store_rows_written", ("backend",), "Journal rows written to the store."),
    # histograms
    _h("queue_wait_seconds", ("queue", "outcome"), "Time from joining the queue to leaving it (answered: to the agent answering).",
       WAIT_BUCKETS),
    _h("talk_time_seconds", ("queue",), "Bridged time of queue calls.", TALK_BUCKETS),
    _h("wrap_up_seconds", ("queue",), "Wrap-up time after queue calls.", WRAP_BUCKETS),
    _h("dispatch_latency_seconds", ("trigger",), "From a member or agent becoming ready to the originate being sent.",
       DISPATCH_BUCKETS),
    _h("core_decision_seconds", ("op",), "Time spent in one dispatch-core call.", CORE_BUCKETS),
    _h("esl_command_seconds", ("box", "command"), "Round trip of an ESL command (api/bgapi reply).", ESL_BUCKETS),
    _h("store_batch_write_seconds", ("backend",), "Time to write one batch of journal rows.", STORE_BUCKETS),
    MetricSpec(PREFIX + "last_dispatch_timestamp_seconds", "gauge", (),
               "Unix time of the last dispatch pass.", "event"),
    MetricSpec(PREFIX + "build_info", "gauge", ("version",), "Always 1; the ccfast version.", "event"),
    *CLUSTER_SPECS,
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

TRIGGERS = ("member", "agent")  # dispatch latency triggers
JOIN_KINDS = ("start", "resume")


def exported_series(per_agent: bool = True) -> dict[str, MetricSpec]:
    """Every sample name ccfast can expose (suffixes included) → its spec."""
    out: dict[str, MetricSpec] = {}
    for spec in SPECS:
        if spec.per_agent and not per_agent:
            continue
        for name in spec.series_names():
            out[name] = spec
    return out


# -- the state snapshot the service provides at scrape time ------------------------------------
@dataclasses.dataclass(slots=True)
class StateSnapshot:
    """Current state, counted by the service (or ``snapshot_from_rows``) when scraped."""

    members: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)  # (queue, state)
    oldest_wait: Mapping[str, float] = dataclasses.field(default_factory=dict)  # queue → seconds
    agents: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)  # (status, state)
    queue_agents: Mapping[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)  # (queue, status, state)
    available_agents: Mapping[str, int] = dataclasses.field(default_factory=dict)  # queue → n
    queue_staffed: Mapping[str, int] = dataclasses.field(default_factory=dict)  # queue → n (occupancy)
    queue_busy: Mapping[str, int] = dataclasses.field(default_factory=dict)  # queue → n (occupancy)
    esl_links: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # box → up
    journal_backlog: int = 0
    agent_detail: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # agent → (status, state)


_BUSY_STATES = frozenset(s.lower() for s in (S.STATE_RECEIVING, S.STATE_IN_A_QUEUE_CALL, S.STATE_RESERVED))
_STAFFED_STATUSES = frozenset(s.lower() for s in (S.STATUS_AVAILABLE, S.STATUS_AVAILABLE_ON_DEMAND))
_OFFERABLE_TIER = frozenset(s.lower() for s in (S.TIER_READY, S.TIER_NO_ANSWER))
_WAITING_MEMBER = (S.MEMBER_WAITING, S.MEMBER_TRYING)


def snapshot_from_rows(
    now: float,
    queues: Iterable[QueueParams],
    agents: Iterable[Mapping],
    tiers: Iterable[Mapping],
    members: Iterable[Mapping],
    esl_links: Mapping[str, bool] | None = None,
    journal_backlog: int = 0,
    member_summary: tuple[Mapping[tuple[str, str], int], Mapping[str, int]] | None = None,
) -> StateSnapshot:
    """Count a ``StateSnapshot`` from table rows (``Core.rows(...)`` dicts). O(rows); meant for a
    scrape every few seconds, not for the hot path.

    Available = tier state Ready/No Answer, agent status exactly Available or Available (On
    Demand), state Waiting, wrap-up over, ``ready_time <= now``, and no external call when the
    queue skips those (§4.5). Busy (occupancy) = state Receiving/In a queue call/Reserved, or in
    wrap-up (``wrap_up_time > 0`` and ``now <= last_bridge_end + wrap_up_time``). Staffed = busy
    or status Available/Available (On Demand).
    """
    params = {p.name: p for p in queues}
    members_by: dict[tuple[str, str], int] = {}
    oldest: dict[str, float] = {}
    for name in params:  # known queues show zeros, not missing series
        for state in S.MEMBER_STATES:
            members_by[(name, state)] = 0
    if member_summary is not None:  # Core.member_summary(): the same counts, without the rows
        counts, starts = member_summary
        for key, n in counts.items():
            members_by[key] = members_by.get(key, 0) + n
        for queue, start in starts.items():
            oldest[queue] = max(0.0, now - start)
    for row in members:
        queue, state = row["queue"], row["state"]
        members_by[(queue, state)] = members_by.get((queue, state), 0) + 1
        if state in _WAITING_MEMBER:
            start = row.get("rejoined_epoch") or row["joined_epoch"]
            wait = max(0.0, now - start)
            if wait > oldest.get(queue, -1.0):
                oldest[queue] = wait
    for name in params:
        oldest.setdefault(name, 0.0)

    by_name: dict[str, Mapping] = {}
    agents_by: dict[tuple[str, str], int] = {}
    busy_agent: dict[str, bool] = {}
    staffed_agent: dict[str, bool] = {}
    detail: dict[str, tuple[str, str]] = {}
    for row in agents:
        name, status, state = row["name"], row["status"], row["state"]
        by_name[name] = row
        agents_by[(status, state)] = agents_by.get((status, state), 0) + 1
        wrap = int(row.get("wrap_up_time") or 0)
        end = int(row.get("last_bridge_end") or 0)
        in_wrap = wrap > 0 and end > 0 and now <= end + wrap
        busy = state.lower() in _BUSY_STATES or in_wrap
        busy_agent[name] = busy
        staffed_agent[name] = busy or status.lower() in _STAFFED_STATUSES
        detail[name] = (status, state)

    queue_agents: dict[tuple[str, str, str], int] = {}
    available = {name: 0 for name in params}
    staffed = {name: 0 for name in params}
    busy_n = {name: 0 for name in params}
    for tier in tiers:
        queue, agent = tier["queue"], tier["agent"]
        row = by_name.get(agent)
        if row is None:
            continue
        key = (queue, row["status"], row["state"])
        queue_agents[key] = queue_agents.get(key, 0) + 1
        staffed[queue] = staffed.get(queue, 0) + staffed_agent[agent]
        busy_n[queue] = busy_n.get(queue, 0) + busy_agent[agent]
        p = params.get(queue)
        skip_external = p.skip_agents_with_external_calls if p is not None else True
        if (
            tier["state"].lower() in _OFFERABLE_TIER
            and row["status"] in (S.STATUS_AVAILABLE, S.STATUS_AVAILABLE_ON_DEMAND)
            and row["state"].lower() == S.STATE_WAITING.lower()
            and int(row.get("last_bridge_end") or 0) < now - int(row.get("wrap_up_time") or 0)
            and int(row.get("ready_time") or 0) <= now
            and not (skip_external and int(row.get("external_calls_count") or 0) > 0)
        ):
            available[queue] = available.get(queue, 0) + 1
    return StateSnapshot(
        members=members_by, oldest_wait=oldest, agents=agents_by, queue_agents=queue_agents,
        available_agents=available, queue_staffed=staffed, queue_busy=busy_n,
        esl_links=dict(esl_links or {}), journal_backlog=journal_backlog, agent_detail=detail,
    )


class _ScrapeCollector(Collector):
    """The state and KPI gauges, computed from one snapshot per collect (in the caller's thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self):
        return [GaugeMetricFamily(s.name, s.help, labels=s.labels) for s in self._m._scrape_specs]

    def collect(self):
        return self._m.scrape_state()


class _Delegate(Collector):
    """Exposes another registry's metrics inside ``Metrics.registry`` (pending updates first)."""

    def __init__(self, registry: CollectorRegistry, before: Callable[[], None]) -> None:
        self._registry = registry
        self._before = before

    def describe(self):
        return []

    def collect(self):
        self._before()
        return self._registry.collect()


class _Frozen:
    """Registry-like view for one render: live event metrics + state families taken earlier."""

    def __init__(self, base: CollectorRegistry, state: list) -> None:
        self._base, self._state = base, state

    def collect(self):
        yield from self._base.collect()
        yield from self._state


def _state_families(m: Metrics, now: float) -> list:
    fams = {s.name: GaugeMetricFamily(s.name, s.help, labels=s.labels) for s in m._scrape_specs}
    snap = m.snapshot(now)
    if snap is not None:
        for (queue, state), n in snap.members.items():
            fams[PREFIX + "queue_members"].add_metric((queue, state), n)
        for queue, wait in snap.oldest_wait.items():
            fams[PREFIX + "queue_oldest_wait_seconds"].add_metric((queue,), wait)
        for (status, state), n in snap.agents.items():
            fams[PREFIX + "agents"].add_metric((status, state), n)
        for key, n in snap.queue_agents.items():
            fams[PREFIX + "queue_agents"].add_metric(key, n)
        for queue, n in snap.available_agents.items():
            fams[PREFIX + "queue_available_agents"].add_metric((queue,), n)
        for box, up in snap.esl_links.items():
            fams[PREFIX + "esl_link_up"].add_metric((box,), 1.0 if up else 0.0)
        fams[PREFIX + "store_journal_backlog"].add_metric((), snap.journal_backlog)
        if m.per_agent:
            for agent, (status, state) in snap.agent_detail.items():
                fams[PREFIX + "agent_state"].add_metric((agent, status, state), 1)
    if m.kpi is not None:
        stats = m.kpi.stats(now)
        for queue, s in stats.items():
            fams[PREFIX + "queue_service_level_threshold_seconds"].add_metric((queue,), s["threshold_s"])
            for window, summary in ((s["window"]["label"], s["window"]), ("since_start", s["since_start"])):
                for metric, key in _KPI_KEYS:
                    value = summary[key]
                    if value is not None:  # no data → no sample (not a misleading 0)
                        fams[metric].add_metric((queue, window), value)
    return list(fams.values())


_KPI_KEYS = (
    (PREFIX + "queue_service_level_ratio", "service_level"),
    (PREFIX + "queue_service_level_with_abandons_ratio", "service_level_with_abandons"),
    (PREFIX + "queue_average_speed_of_answer_seconds", "asa_s"),
    (PREFIX + "queue_average_handle_time_seconds", "aht_s"),
    (PREFIX + "queue_abandon_ratio", "abandon_rate"),
    (PREFIX + "queue_occupancy_ratio", "occupancy"),
)


class MetricsError(ValueError):
    """A facade call with a value outside the metric's vocabulary."""


_MAX_PENDING_OBS = 4096  # observations of one series kept between two reads before folding
_H_QUEUE = S.H_CC_QUEUE
_H_MEMBER = S.H_CC_MEMBER_UUID


class Metrics:
    """The metrics facade: one registry, the hot-path recording methods, scrape-time providers.

    ``kpi``: a ``KpiTracker`` fed by ``member_ended``/``call_ended`` (and exported at scrape);
    ``clock``: wall clock used only at scrape time (KPI window position, snapshot ``now``);
    ``per_agent``: also export per-agent series; ``process_metrics``: add prometheus-client's
    process/platform/GC collectors (``process_*``, ``python_*``).
    """

    def __init__(
        self,
        *,
        kpi: KpiTracker | None = None,
        per_agent: bool = False,
        process_metrics: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        disable_created_metrics()  # *_created series double the series count for no dashboard use
        # _base: metrics updated by the facade (thread-safe to render); registry: _base + scrape state
        self._base = CollectorRegistry(auto_describe=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self._scrape_specs = [s for s in SPECS if s.source == "scrape" and (per_agent or not s.per_agent)]
        self.kpi = kpi
        self.per_agent = per_agent
        self.clock = clock
        self._snapshot_provider: Callable[[float], StateSnapshot] | None = None
        self._scrape_hooks: list[Callable[[], None]] = []
        self._wrap_up_lookup: Callable[[str], float] | None = None
        self._hung_up: dict[str, None] = {}  # member uuids whose caller hung up (until their end event)
        self._answered: dict[str, None] = {}  # member uuids counted answered (until their end event)
        self._m: dict[str, Counter | Histogram | Gauge] = {}
        for spec in SPECS:
            if spec.source == "scrape" or (spec.per_agent and not per_agent):
                continue
            if spec.kind == "counter":
                metric = Counter(spec.name, spec.help, spec.labels, registry=self._base)
            elif spec.kind == "histogram":
                metric = Histogram(spec.name, spec.help, spec.labels, registry=self._base, buckets=spec.buckets)
            else:
                metric = Gauge(spec.name, spec.help, spec.labels, registry=self._base)
            self._m[spec.name] = metric
        self._m[PREFIX + "build_info"].labels(__version__).set(1)
        if process_metrics:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=self._base)
            PlatformCollector(registry=self._base)
            GCCollector(registry=self._base)
        self.registry.register(_Delegate(self._base, self.fold))
        self.registry.register(_ScrapeCollector(self))
        self._children: dict[tuple, object] = {}
        self._pend_inc: dict[tuple, float] = {}
        self._pend_obs: dict[tuple, list[float]] = {}

    # -- wiring ----------------------------------------------------------------------------
    def set_snapshot_provider(self, provider: Callable[[float], StateSnapshot] | None) -> None:
        """``provider(now) -> StateSnapshot`` is called once per scrape (and by ``kpi_stats``)."""
        self._snapshot_provider = provider

    def add_scrape_hook(self, hook: Callable[[], None]) -> None:
        """``hook()`` runs at the start of every scrape (``scrape_state``, ``render``/``text``
        without a state), in the scraping thread: it folds counters kept elsewhere (ESL client,
        store writer) into the facade's metrics, so those cost nothing on the hot path."""
        self._scrape_hooks.append(hook)

    def watch_cluster(self, glue) -> "ClusterScrape":
        """Several nodes: a scrape hook that folds ``glue.metric_totals()`` /
        ``glue.claim_latencies()`` into the ``ccfast_cluster_*`` metrics (registered always, 0 on a
        single node, so dashboards and the spec table need no special case; nothing on the hot
        path)."""
        if any(isinstance(h, ClusterScrape) for h in self._scrape_hooks):
            raise MetricsError("watch_cluster: already watching a cluster")
        hook = ClusterScrape(self, glue)
        self.add_scrape_hook(hook)
        return hook

    def _run_scrape_hooks(self) -> None:
        self.fold()
        for hook in self._scrape_hooks:
            hook()

    def set_wrap_up_lookup(self, lookup: Callable[[str], float] | None) -> None:
        """``lookup(agent_name) -> wrap-up seconds``, used by ``observe_events`` at call end."""
        self._wrap_up_lookup = lookup

    def set_queue(self, params: QueueParams) -> None:
        """A queue was loaded: its KPI threshold, and its series created at zero."""
        if self.kpi is not None:
            self.kpi.set_queue(params)
        # create the queue's series at 0 so rate()/increase() see the first call
        queue = params.name
        for outcome in OUTCOMES:
            self._child(PREFIX + "queue_calls", queue, outcome)
            self._child(PREFIX + "queue_wait_seconds", queue, outcome)
        for result in RESULTS:
            self._child(PREFIX + "agent_offers", queue, result)
        for kind in JOIN_KINDS:
            self._child(PREFIX + "queue_joins", queue, kind)
        self._child(PREFIX + "talk_time_seconds", queue)
        self._child(PREFIX + "wrap_up_seconds", queue)

    def forget_queue(self, queue: str) -> None:
        """Drop every series labelled with a queue that was unloaded."""
        self.fold()  # its pending updates go with its series
        for key in list(self._children):  # every labelled child is created through _child
            name, labels = key[0], key[1:]
            spec_labels = SPEC_BY_NAME[name].labels
            if "queue" in spec_labels and labels[spec_labels.index("queue")] == queue:
                self._m[name].remove(*labels)
                del self._children[key]
        if self.kpi is not None:
            self.kpi.remove_queue(queue)

    def snapshot(self, now: float) -> StateSnapshot | None:
        """The provider's snapshot (``None`` without a provider); feeds occupancy to the KPIs."""
        if self._snapshot_provider is None:
            return None
        snap = self._snapshot_provider(now)
        if self.kpi is not None:
            for queue, staffed in snap.queue_staffed.items():
                self.kpi.agents(queue, staffed, snap.queue_busy.get(queue, 0), now)
        return snap

    def _child(self, name: str, *labels: str):
        key = (name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._m[name].labels(*labels)
        return child

    # The hot path's counter increments and histogram observations are kept as plain numbers
    # and folded into the prometheus children when the metrics are read (every scrape, text(),
    # render(), and any collect of ``registry``): prometheus-client takes a lock and checks
    # the metric on every single update, ~25 updates per call.
    def _inc(self, key: tuple, amount: float = 1) -> None:
        pend = self._pend_inc
        pend[key] = pend.get(key, 0) + amount

    def _observe(self, key: tuple, value: float) -> None:
        values = self._pend_obs.get(key)
        if values is None:
            self._pend_obs[key] = [value]
        else:
            values.append(value)
            if len(values) >= _MAX_PENDING_OBS:  # bounded between scrapes
                self._fold_observations(key, self._pend_obs.pop(key))

    def _fold_observations(self, key: tuple, values: list) -> None:
        child = self._child(*key)
        for value in values:
            child.observe(value)

    def fold(self) -> None:
        """Apply the pending updates (called before the metrics are read; trio thread)."""
        incs, self._pend_inc = self._pend_inc, {}
        for key, amount in incs.items():
            self._child(*key).inc(amount)
        observations, self._pend_obs = self._pend_obs, {}
        for key, values in observations.items():
            self._fold_observations(key, values)

    # -- hot path: members and calls -------------------------------------------------------
    def member_joined(self, queue: str, resumed: bool = False) -> None:
        self._inc((PREFIX + "queue_joins", queue, "resume" if resumed else "start"))

    def member_ended(self, queue: str, outcome: str, wait_s: float, now: float) -> None:
        """A member left ``queue`` with ``outcome`` (one of OUTCOMES) after ``wait_s`` seconds
        (answered: join → agent answered). ``now`` feeds the KPI window."""
        if outcome not in _OUTCOME_SET:
            raise MetricsError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        self._inc((PREFIX + "queue_calls", queue, outcome))
        self._observe((PREFIX + "queue_wait_seconds", queue, outcome), wait_s)
        if self.kpi is not None:
            self.kpi.member_ended(queue, outcome, wait_s, now)

    def call_ended(self, queue: str, talk_s: float, wrap_s: float, now: float) -> None:
        """A bridged call of ``queue`` ended after ``talk_s``; the agent wraps up ``wrap_s``."""
        self._observe((PREFIX + "talk_time_seconds", queue), talk_s)
        self._observe((PREFIX + "wrap_up_seconds", queue), wrap_s)
        if self.kpi is not None:
            self.kpi.call_ended(queue, talk_s, wrap_s, now)

    def offer_result(self, queue: str, result: str, agent: str | None = None) -> None:
        if result not in _RESULT_SET:
            raise MetricsError(f"unknown offer result {result!r}; expected one of {', '.join(RESULTS)}")
        self._inc((PREFIX + "agent_offers", queue, result))
        if self.per_agent and agent:
            self._inc((PREFIX + "agent_offers_by_agent", agent, result))

    def offer_failed(self, queue: str, cause: str, agent: str | None = None) -> str:
        """Count a failed offer by its originate cause; returns the result label used."""
        result = offer_result_for_cause(cause)
        self.offer_result(queue, result, agent)
        return result

    def member_hung_up(self, member_uuid: str) -> None:
        """The member's caller hung up: its coming Cancel end event is outcome ``abandoned``."""
        self._hung_up[member_uuid] = None
        if len(self._hung_up) > _MAX_PENDING:  # a member whose end event never came: forget the oldest
            del self._hung_up[next(iter(self._hung_up))]

    def event_fired(self, action: str) -> None:
        self._inc((PREFIX + "events_fired", action))

    def observe_events(self, events: Iterable[tuple[str, Mapping[str, str]]], now: float) -> None:
        """Derive joins, outcomes, waits, offers, talk/wrap-up time and fired-event counts from
        the core's ``drain_events()`` output — use this OR the explicit methods, not both.

        Answered is counted at ``bridge-agent-start`` (wait = agent answered − member joined,
        once per member); a Cancel end after that (bridge failed) adds no second outcome; a Cancel
        end otherwise maps its CC-Cancel-Reason via ``outcome_for_cancel`` (``member_hung_up``
        turns BREAK_OUT into abandoned). Talk = leaving − answered at the Terminated end;
        wrap-up from ``set_wrap_up_lookup`` (0 without one).
        """
        for action, h in events:
            self._inc((PREFIX + "events_fired", action))
            if action == S.ACTION_MEMBER_QUEUE_START or action == S.ACTION_MEMBER_QUEUE_RESUME:
                self.member_joined(h[_H_QUEUE], action == S.ACTION_MEMBER_QUEUE_RESUME)
            elif action == S.ACTION_BRIDGE_AGENT_START:
                queue, member = h[_H_QUEUE], h[_H_MEMBER]
                self.offer_result(queue, RESULT_ANSWERED, h.get(S.H_CC_AGENT))
                if member not in self._answered:
                    self._answered[member] = None
                    wait = _seconds(h, S.H_CC_AGENT_ANSWERED_TIME, S.H_CC_MEMBER_JOINED_TIME)
                    self.member_ended(queue, OUTCOME_ANSWERED, wait, now)
                    if len(self._answered) > _MAX_PENDING:
                        del self._answered[next(iter(self._answered))]
            elif action == S.ACTION_BRIDGE_AGENT_FAIL:
                self.offer_failed(h[_H_QUEUE], h.get(S.H_CC_HANGUP_CAUSE, ""), h.get(S.H_CC_AGENT))
            elif action == S.ACTION_MEMBER_QUEUE_END:
                queue, member = h[_H_QUEUE], h[_H_MEMBER]
                hung_up = member in self._hung_up
                was_answered = member in self._answered
                self._hung_up.pop(member, None)
                self._answered.pop(member, None)
                if h.get(S.H_CC_CAUSE) == S.CAUSE_TERMINATED:
                    talk = _seconds(h, S.H_CC_MEMBER_LEAVING_TIME, S.H_CC_AGENT_ANSWERED_TIME)
                    agent = h.get(S.H_CC_AGENT, "")
                    wrap = float(self._wrap_up_lookup(agent)) if self._wrap_up_lookup and agent else 0.0
                    self.call_ended(queue, talk, wrap, now)
                elif not was_answered:
                    outcome = outcome_for_cancel(h.get(S.H_CC_CANCEL_REASON, ""), hung_up)
                    wait = _seconds(h, S.H_CC_MEMBER_LEAVING_TIME, S.H_CC_MEMBER_JOINED_TIME)
                    self.member_ended(queue, outcome, wait, now)

    # -- hot path: infrastructure ----------------------------------------------------------
    def esl_event(self, box: str, n: int = 1) -> None:
        self._child(PREFIX + "esl_events_received", box).inc(n)

    def esl_reconnect(self, box: str, n: int = 1) -> None:
        self._child(PREFIX + "esl_reconnects", box).inc(n)

    def esl_overflow(self, box: str, dropped: int = 1) -> None:
        self._child(PREFIX + "esl_overflow_drops", box).inc(dropped)

    def esl_command(self, box: str, command: str, seconds: float) -> None:
        """Round trip of one ESL command; ``command`` is its verb (originate, uuid_bridge, …)."""
        self._observe((PREFIX + "esl_command_seconds", box, command), seconds)

    def dispatch_latency(self, seconds: float, trigger: str) -> None:
        """Member (``trigger='member'``) or agent (``'agent'``) ready → originate sent."""
        if trigger not in TRIGGERS:
            raise MetricsError(f"unknown dispatch trigger {trigger!r}; expected one of {', '.join(TRIGGERS)}")
        self._observe((PREFIX + "dispatch_latency_seconds", trigger), seconds)

    def core_decision(self, seconds: float, op: str = "dispatch") -> None:
        """Time of one core call; ``op`` is the method (dispatch, member_timeouts, offer_answered…)."""
        self._observe((PREFIX + "core_decision_seconds", op), seconds)

    def dispatched(self, now: float) -> None:
        """A dispatch pass ran at ``now`` (Unix time)."""
        self._m[PREFIX + "last_dispatch_timestamp_seconds"].set(now)

    def store_batch(self, seconds: float, rows: int, backend: str) -> None:
        self._child(PREFIX + "store_batch_write_seconds", backend).observe(seconds)
        self._child(PREFIX + "store_rows_written", backend).inc(rows)

    def store_batches(self, durations: Iterable[float], rows: int, backend: str) -> None:
        """Several batches at once (folded in at scrape time from the writer's stats): each
        duration observed, ``rows`` added to the rows written (may be 0: creates the series)."""
        hist = self._child(PREFIX + "store_batch_write_seconds", backend)
        for seconds in durations:
            hist.observe(seconds)
        self._child(PREFIX + "store_rows_written", backend).inc(rows)

    # -- reading ---------------------------------------------------------------------------
    def kpi_stats(self, now: float | None = None, queue: str | None = None) -> dict[str, dict]:
        """KPI dict for ``ccfast ctl stats`` (see ``kpi.format_stats``), longest wait included."""
        if self.kpi is None:
            raise MetricsError("KPIs are not enabled (Metrics(kpi=None))")
        now = self.clock() if now is None else now
        snap = self.snapshot(now)
        return self.kpi.stats(now, queue, snap.oldest_wait if snap is not None else None)

    def scrape_state(self, now: float | None = None) -> list:
        """The scrape-time gauge families (state snapshot + KPIs). Calls the snapshot provider,
        so call it where the dispatcher state may be read (the trio thread). Scrape hooks run first."""
        self._run_scrape_hooks()
        return _state_families(self, self.clock() if now is None else now)

    def render(self, accept: str = "", state: list | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type for an ``Accept`` header.

        With ``state`` (from ``scrape_state()``) it reads only thread-safe metric objects, so it
        may run in a worker thread while the trio thread keeps recording; without, it collects
        the state itself (same thread as the provider)."""
        encoder, content_type = choose_encoder(accept)
        if state is None:
            self._run_scrape_hooks()  # before the registry's facade metrics are read
            return encoder(self.registry), content_type
        return encoder(_Frozen(self._base, state)), content_type

    def text(self) -> str:
        self._run_scrape_hooks()
        return generate_latest(self.registry).decode()


class ClusterScrape:
    """Scrape hook of ``Metrics.watch_cluster``: the glue keeps plain totals anyway; each scrape
    sets the gauges and adds the counters' deltas since the previous scrape, and observes the
    claim round trips timed since then (from the claims' last 4,096: with more claims than that
    between two scrapes the oldest are missing from the histogram, as for store batches)."""

    _GAUGES = ("owned_queues", "live_nodes", "remote_claims")
    _COUNTERS = ("queues_gained", "queues_lost", "nodes_terminated", "claims_reaped", "claims_released",
                 "feed_reconnects", "feed_overflows", "redirects", "callers_readopted", "callers_lost",
                 "queue_retakes")

    def __init__(self, metrics: Metrics, glue) -> None:
        self.metrics, self.glue = metrics, glue
        self._seen: dict[str, int] = {}
        self._timed = 0
        m = metrics._m
        for result in CLAIM_RESULTS:  # the labelled series exist from the start
            m[PREFIX + "cluster_claims"].labels(result)
        for direction in FEED_DIRECTIONS:
            m[PREFIX + "cluster_feed_messages"].labels(direction)

    def _delta(self, key: str, total: int) -> int:
        before = self._seen.get(key, 0)
        self._seen[key] = total
        return max(0, total - before)

    def __call__(self) -> None:
        m = self.metrics._m
        t = self.glue.metric_totals()
        p = PREFIX + "cluster_"
        for key in self._GAUGES:
            m[p + key].set(t[key])
        for key in self._COUNTERS:
            m[p + key].inc(self._delta(key, t[key]))
        for result in CLAIM_RESULTS:
            m[p + "claims"].labels(result).inc(self._delta("claims_" + result, t["claims_" + result]))
        for direction in FEED_DIRECTIONS:
            m[p + "feed_messages"].labels(direction).inc(self._delta("feed_" + direction, t["feed_" + direction]))
        timed, recent = self.glue.claim_latencies()
        new = min(timed - self._timed, len(recent))
        self._timed = timed
        if new > 0:
            hist = m[p + "claim_seconds"]
            n = len(recent)
            for i in range(n - new, n):
                hist.observe(recent[i])


_OUTCOME_SET = frozenset(OUTCOMES)
_RESULT_SET = frozenset(RESULTS)
_MAX_PENDING = 200_000


def _seconds(h: Mapping[str, str], end: str, start: str) -> float:
    """``h[end] - h[start]`` as non-negative seconds (0 when a header is missing)."""
    try:
        return max(0.0, float(h[end]) - float(h[start]))
    except (KeyError, ValueError):
        return 0.0


__all__ = [
    "Metrics", "MetricsError", "MetricSpec", "SPECS", "CLUSTER_SPECS", "ClusterScrape", "SPEC_BY_NAME", "KPI_SPECS", "StateSnapshot",
    "snapshot_from_rows", "exported_series", "offer_result_for_cause", "outcome_for_cancel",
    "OUTCOMES", "RESULTS", "TRIGGERS", "SL_THRESHOLDS", "WAIT_BUCKETS", "PREFIX",
    "OUTCOME_ANSWERED", "OUTCOME_ABANDONED", "OUTCOME_TIMEOUT", "OUTCOME_NO_AGENT_TIMEOUT",
    "OUTCOME_EXIT_KEY", "OUTCOME_BREAK_OUT", "RESULT_ANSWERED", "RESULT_NO_ANSWER", "RESULT_BUSY",
    "RESULT_REJECT", "RESULT_FAILED", "RESULT_CANCELLED",
]
