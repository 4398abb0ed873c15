"""``ccfast serve``: build the core from the database and the configuration, run every task.

``run(config)`` is the whole process, in one nursery:

1. the store (SQLite in RAM by default, a file or PostgreSQL by ``dbname``/``odbc-dsn``): schema
   created or migrated, mod_callcenter's startup reset (§1.5), rows loaded into the core;
2. the configuration applied on top as mod_callcenter loads it (queues, then XML agents, then XML
   tiers), and the resulting state written once; from then on the core's journal is written
   behind by one task. With ``config-source = database`` the queues/agents/tiers/settings come
   from the ``cc_*`` tables instead (``store.config_source``; reload commands re-read them);
3. one inbound link per FreeSWITCH box, the dispatch loop, the outbound listener for callers, the
   control port and the metrics endpoint.

``task_status`` receives a ``Running`` with the bound ports (tests and the demo use port 0).
Leaving the nursery (cancel, SIGTERM in the CLI) flushes the journal before returning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging

import trio
import trio_asyncio

from . import api as apimod
from . import config as configmod
from . import strings as S
from .control import ControlServer
from .esl.hub import OutboundHub
from .httpd import Health, serve_http
from .kpi import KpiTracker
from .metrics import Metrics, snapshot_from_rows
from .oracle_mode import make_dispatch_core
from .service import Clock, Service
from .service.links import BoxLink
from .store import TABLES, WriterConfig, open_writer, store_from_target
from .store.config_source import DbConfigSource, rereads_config
from .cluster.glue import start_cluster

log = logging.getLogger("ccfast.serve")


@dataclasses.dataclass
class Running:
    service: Service
    outbound_port: int
    control_port: int | None
    metrics_port: int | None
    control: ControlServer | None
    metrics: Metrics
    writer: object
    cancel_scope: trio.CancelScope

    def stop(self) -> None:
        self.cancel_scope.cancel()


def new_core(cfg: configmod.Config):
    """The core, or with ``dispatcher = oracle`` the baseline that pays mod_callcenter's SQL pass."""
    return make_dispatch_core(cfg)


async def load_state(store, cfg: configmod.Config, core, now: int) -> None:
    """Schema, rows → core with crash recovery, then the XML config on top (§1.4, §1.5, §2.6).

    mod_callcenter's startup reset (§1.5) is done in the core (``load_recovered``): agents and
    tiers return to definite states and this instance's callers become Abandoned, as the module
    leaves them, but a caller whose channel comes back (the dialplan fallback after ``socket``
    re-enters ccfast) within the queue's discard window is re-adopted at its old place.
    """
    await store.connect_with_retry()
    await store.ensure_schema()
    settings = cfg.settings
    await store.startup_reset(
        settings.cc_instance_id,
        truncate_agents=settings.truncate_agents_on_load,
        truncate_tiers=settings.truncate_tiers_on_load,
        reset=False,
    )
    rows = await store.load_rows()
    # queues first: re-adoption windows come from the queues' discard-abandoned-after
    for src in cfg.queue_sources:
        configmod.resolve_queue(core, cfg, src.name)
    recovered = core.load_recovered(rows, now)
    if recovered.get("readopt"):
        log.info("recovery: %s", recovered)
    configmod.apply_startup(core, cfg, now)


def core_rows(core) -> dict[str, list[dict]]:
    return {table: core.rows(table) for table in TABLES}


GC_THRESHOLD = (20_000, 50, 100)  # gen0 every 20k net allocations instead of 700


@contextlib.contextmanager
def _service_gc():
    """Fewer cyclic-GC passes while serving; the state loaded at start is frozen out of them.

    A call allocates thousands of short-lived objects (frames, events, trio's scopes); with the
    default threshold (700) the collector ran many times per call and rescanned the long-lived
    core/config objects. Measured at 200 calls/s: 3.6–3.8 -> 3.2 ms of CPU per call, same RSS.
    The previous settings are restored on exit (tests run several services in one process)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def run(cfg: configmod.Config, *, clock: Clock | None = None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with _service_gc() as freeze:
        await _run(cfg, clock, freeze, task_status)


async def load_config_source(cfg: configmod.Config) -> tuple[configmod.Config, DbConfigSource | None, object]:
    """``config-source = database``: the Config read from the ``cc_*`` tables (waiting for the
    database with retry and backoff), its source (for reloads) and the store to use; with
    ``xml``: ``(cfg, None, store)``. Raises ConfigError when the rows cannot work."""
    if cfg.ccfast.config_source != "database":
        return cfg, None, store_from_target(cfg.database)
    source = DbConfigSource.open(cfg, store_from_target)
    try:
        fresh = await source.load()
    except BaseException:
        with trio.CancelScope(shield=True):
            await source.store.close()
        raise
    for warning in fresh.warnings:
        log.warning("config: %s", warning)
    log.info("config: %d queue(s), %d agent(s), %d tier(s) read from %s", len(fresh.queue_sources),
             len(fresh.agents), len(fresh.tiers), source.label)
    return fresh, source, source.store if source.shared else store_from_target(fresh.database)


async def _run(cfg: configmod.Config, clock: Clock | None, freeze, task_status) -> None:
    async with trio_asyncio.open_loop():
        clock = clock or Clock()
        cfg, config_source, store = await load_config_source(cfg)
        cluster = start_cluster(cfg, store, clock)  # `cluster = true`: docs/cluster.md; else None
        cfg = cluster.cfg if cluster is not None else cfg  # cc-instance-id = the node id
        core = new_core(cfg)
        try:
            if cluster is not None:
                await cluster.load_state(core, clock.now())  # agents/tiers; members per gained queue
            else:
                await load_state(store, cfg, core, clock.now())
            core.drain_journal()  # the snapshot below carries this state
            core.drain_events()
            freeze()  # config, core and loaded rows live as long as the process
            writer_config = WriterConfig(
                max_delay=cfg.ccfast.store_batch_ms / 1000.0, max_batch_rows=cfg.ccfast.store_max_batch,
                max_backlog=max(100_000, cfg.ccfast.store_max_batch),
            )
            async with open_writer(cluster.store if cluster is not None else store, writer_config,
                                   resync_source=lambda: core_rows(core)) as writer:
                writer.snapshot(core_rows(core))
                await _serve(cfg, core, clock, writer, task_status, config_source=config_source, cluster=cluster)
        finally:
            with trio.CancelScope(shield=True):
                await store.close()
                if config_source is not None:
                    await config_source.close()


def _backend_label(writer) -> str:
    """``backend`` label of the store metrics: ``postgresql`` or ``sqlite``."""
    return "postgresql" if "postgres" in type(writer.store).__name__.lower() else "sqlite"


class ScrapeSync:
    """Scrape hook: folds counters the ESL clients, the dispatcher and the store writer keep
    anyway into the metrics, so the hot path pays nothing for them (runs in the trio thread,
    O(boxes)). The dispatcher: the time of its last pass.

    Per box: events received, reconnects, overflow drops (the ``InboundClient``'s own totals;
    the deltas since the last scrape are added). Store: rows written, and one histogram
    observation per batch committed since the last scrape — taken from the writer's last 1,024
    batch durations, so with more batches than that between two scrapes the oldest durations
    are missing from the histogram (its count then trails the batches; the rows stay exact)."""

    def __init__(self, metrics: Metrics, service, writer, backend: str) -> None:
        self.metrics, self.service, self.writer, self.backend = metrics, service, writer, backend
        self._esl: dict[str, tuple[int, int, int]] = {}
        self._batches = 0  # totals since the writer started (its stats start at 0)
        self._rows = 0
        metrics.store_batches((), 0, backend)  # the series exist from the start

    def __call__(self) -> None:
        m = self.metrics
        if self.service.dispatcher.passes:
            m.dispatched(self.service.dispatcher.last_pass)
        for name, box in self.service.boxes.items():
            client = getattr(box, "client", None)
            if client is None:
                continue
            now = (client.events.received, client.reconnects, client.events.dropped)
            before = self._esl.get(name)
            if before is None:
                before = (0, 0, 0)  # first scrape: everything since the client started
            self._esl[name] = now
            m.esl_event(name, now[0] - before[0])
            m.esl_reconnect(name, now[1] - before[1])
            m.esl_overflow(name, now[2] - before[2])
        st = self.writer.stats
        new_batches = st.batches - self._batches
        if new_batches or st.rows_written != self._rows:
            recent = st.recent_batch_seconds
            take = min(new_batches, len(recent))
            durations = [recent[i] for i in range(len(recent) - take, len(recent))]
            m.store_batches(durations, st.rows_written - self._rows, self.backend)
            self._batches, self._rows = st.batches, st.rows_written


async def _serve(cfg, core, clock: Clock, writer, task_status, *, config_source=None, cluster=None) -> None:
    service = Service(core, cfg.settings, clock=clock, config=cfg)
    service.journal_sink = writer.submit
    settings = cfg.ccfast
    metrics = Metrics(kpi=KpiTracker())  # per-queue KPIs for `ccfast ctl stats` and the demo
    for name in core.queue_names():
        metrics.set_queue(core.queue_params(name))
    service.events_sink = metrics.observe_events
    service.on_member_hung_up = metrics.member_hung_up
    service.on_dispatch_latency = metrics.dispatch_latency
    core_decision = metrics.core_decision

    def on_pass_time(seconds: float) -> None:
        core_decision(seconds, "dispatch")

    service.dispatcher.on_pass_time = on_pass_time  # the last pass's time is read at scrape (ScrapeSync)
    metrics.add_scrape_hook(ScrapeSync(metrics, service, writer, _backend_label(writer)))

    def snapshot(now: float):
        return snapshot_from_rows(
            now, [core.queue_params(n) for n in core.queue_names()], core.rows("agents"), core.rows("tiers"),
            (), esl_links={b.name: b.up for b in service.boxes.values()},
            journal_backlog=writer.backlog, member_summary=core.member_summary(),
        )

    metrics.set_snapshot_provider(snapshot)

    # the callers' hub; once it serves it also reads the box links (one wake-up for both)
    hub = OutboundHub(service.on_connection, after_tick=service.push)
    async with trio.open_nursery() as nursery:
        for box_cfg in settings.boxes:
            box = BoxLink(box_cfg.name, box_cfg.host, box_cfg.port, box_cfg.password,
                          on_reconnect=lambda _client, name=box_cfg.name: service.reconcile_box(service.boxes[name]))
            box.client.reactor = hub
            box.on_command = lambda verb, seconds, name=box_cfg.name: metrics.esl_command(name, verb, seconds)
            await nursery.start(box.run)
            service.add_box(box)
        await nursery.start(service.run)
        if core.readopt_sessions(clock.now()):
            service.spawn(service.forget_gone_callers)

        outbound_port = await nursery.start(hub.serve, settings.outbound_listen.host, settings.outbound_listen.port)
        if cluster is not None:  # sets service.cluster; gives its queues up when this nursery ends
            await nursery.start(cluster.run, service, writer, outbound_port)
            metrics.watch_cluster(cluster)  # ccfast_cluster_* folded in at scrape time

        control = None
        control_port = None
        if settings.control_listen is not None:
            state = apimod.ApiState(core, cfg, reload_config=_reloader(cfg, config_source, service),
                                    break_channel=service.break_agent_channel, cluster=cluster)

            def after_command() -> None:
                for cancel in state.cancels:
                    service.cancel_offer(cancel.offer_id, S.HANGUP_ORIGINATOR_CANCEL)
                state.cancels.clear()
                service.changed()

            def stats(queue: str | None, as_json: bool) -> str:
                from .kpi import format_stats

                return format_stats(metrics.kpi_stats(clock.time(), queue), as_json=as_json)

            control_class = ControlServer if config_source is None else functools.partial(ReloadingControl, source=config_source)
            control = control_class(state, settings.control_password, now=clock.now,
                                    after_command=after_command, stats=stats)
            service.optional_listeners.append((control.publish, lambda: control.subscribed))
            control_port = await nursery.start(control.serve, settings.control_listen.host, settings.control_listen.port)

        metrics_port = None
        if settings.metrics_listen is not None:

            def health() -> Health:
                stats = writer.stats
                lag = None if stats.last_write_time is None or not writer.backlog else clock.time() - stats.last_write_time
                return Health(
                    esl_links={b.name: b.up for b in service.boxes.values()},
                    store_lag_s=lag, store_backlog=writer.backlog, last_dispatch=service.dispatcher.last_pass,
                )

            listeners = await nursery.start(serve_http, settings.metrics_listen.host, settings.metrics_listen.port,
                                            metrics, health)
            metrics_port = listeners[0].socket.getsockname()[1]
        log.info("ccfast serving: outbound port %s, control port %s, metrics port %s",
                 outbound_port, control_port, metrics_port)
        task_status.started(Running(service, outbound_port, control_port, metrics_port, control, metrics,
                                    writer, nursery.cancel_scope))


# -- config-source = database: reloads ---------------------------------------------------------

def _reloader(cfg: configmod.Config, source: DbConfigSource | None, service):
    """``ApiState.reload_config``: the XML files read again, or the ``cc_*`` tables' Config that
    ``ReloadingControl`` fetched for this command (the service's lazy queue loading follows it)."""
    if source is None:
        return cfg.reload

    def reload() -> configmod.Config:
        fresh = source.reload()
        service.config = fresh
        return fresh

    return reload


class ReloadingControl(ControlServer):
    """The control port with ``config-source = database``.

    The API is synchronous, the database is not: a command that re-reads the configuration
    (``queue load|reload``, ``agent reload``, ``tier reload``) first awaits ``source.refresh()``
    in its connection's task — the trio loop, dispatch and other connections go on meanwhile —
    and then runs with exactly that Config. When the read fails (database down, bad rows) the
    command is answered ``-ERR <reason naming the table and row>`` and nothing is changed (not
    even the unload half of ``queue reload``)."""

    def __init__(self, *args, source: DbConfigSource, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source = source

    async def _command(self, cmd, sub, nursery) -> bool:
        command, args = getattr(cmd, "command", None), getattr(cmd, "args", None)
        if command is not None and rereads_config(command, args):
            await self.source.refresh()
        return await super()._command(cmd, sub, nursery)

    def run_api(self, command: str, args: str) -> str:
        if rereads_config(command, args):
            try:
                self.source.reload()
            except configmod.ConfigError as exc:
                return f"-ERR {exc}\n"
        return super().run_api(command, args)

