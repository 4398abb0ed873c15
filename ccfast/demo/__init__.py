"""``ccfast demo``: a simulated FreeSWITCH and ccfast in one trio run, with a live view.

``run_demo(options, out, mode)`` starts the simulator (``ccfast.sim``) and the dispatcher
(``ccfast.serve.run``) on loopback with OS-chosen ports, loads the sample call center
(``scenario.sample_config``, or ``options.config``), sends callers (``scenario.Traffic``) for
``options.duration`` seconds (or until SIGINT/SIGTERM), then ends the run:

1. no new callers;
2. calls are left to finish on their own for at most ``options.drain`` seconds;
3. callers still up are hung up (counted ``cut_at_end``, not abandoned) and the service is given
   up to ``SETTLE_S`` to end every member and offer;
4. the summary is computed (``tally.summarize``): calls, answered, abandoned by cause, stuck agents,
   stuck members, caller waits (p50/p99) — returned as a dict.

``mode``: ``"tty"`` redraws a full-screen view about once a second, ``"lines"`` prints one status
line every ``LINE_INTERVAL_S`` (stdout is not a terminal), ``"json"`` prints nothing while running.
``main(args)`` is the CLI entry: exit status 0, or 1 when the run left stuck agents or members,
130 when interrupted twice.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import random
import signal
import sys
from typing import TextIO

import trio

from .. import config as configmod
from .. import dsn as dsnmod
from .. import strings as S
from ..ctl import leaf_error
from ..kpi import KpiError, KpiTracker
from ..metrics import MetricsError
from ..logs import setup_logging
from ..sim import ProfileTable, Simulator, Timings
from . import scenario, tally as tallymod, view

log = logging.getLogger("ccfast.demo")

SETTLE_S = 10.0  # after hanging up the remaining callers: time the service gets to end everything
TTY_INTERVAL_S = 1.0
LINE_INTERVAL_S = 5.0
KPI_WINDOW_S, KPI_BUCKET_S = 60, 5
SIM_PASSWORD = "ClueCon"
# FreeSWITCH drops a listener 500 events behind. Here the simulated box shares ccfast's thread (and
# the machine's cores), so its bursts are read later than a real box's would be: allow 10x more.
SIM_MAX_LAG = 5000


@dataclasses.dataclass
class DemoOptions:
    duration: float | None = None  # None: until SIGINT/SIGTERM
    cps: float = 4.0
    agents: int = 50
    seed: int = 1
    drain: float = 20.0
    config: str | None = None  # a callcenter.conf.xml instead of the generated sample

    def check(self) -> None:
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise ValueError(f"--duration must be a positive number of seconds, got {self.duration}")
        if not (self.cps > 0 and math.isfinite(self.cps)):
            raise ValueError(f"--cps must be a positive number, got {self.cps}")
        if self.agents < scenario.MIN_AGENTS:
            raise ValueError(f"--agents must be at least {scenario.MIN_AGENTS}, got {self.agents}")
        if self.drain < 0:
            raise ValueError(f"--drain must be >= 0, got {self.drain}")


class _Ctx:
    """The running demo: simulator, service and counters (what the view and the summary read)."""

    def __init__(self, options: DemoOptions, sim: Simulator, running, traffic: scenario.Traffic) -> None:
        self.options = options
        self.sim = sim
        self.running = running
        self.traffic = traffic
        self.service = running.service
        self.core = running.service.core
        self.clock = running.service.clock
        self.started = trio.current_time()
        self.traffic_end: float | None = None
        self.phase = "ramp"
        self.tally = tallymod.Tally(self.core.queue_names(), clock=trio.current_time)
        self.tally.patience_ran_out = self._patience_ran_out
        self.logs: collections.deque[str] = collections.deque(maxlen=4)
        self.footer: list[str] = []

    def _patience_ran_out(self, uuid: str) -> bool:
        rec = self.sim.switch.calls.get(uuid)
        return rec is not None and rec.abandoned

    def elapsed(self) -> float:
        return trio.current_time() - self.started


# -- start ------------------------------------------------------------------------------------
def ccfast_settings_xml(sim_port: int) -> str:
    """ccfast's settings for the demo: one box (the simulator); listeners are replaced by port 0."""
    password = configmod.CCFAST_PARAMS["control-password"][0]
    return (
        '<configuration name="ccfast.conf"><settings>'
        f'<param name="control-password" value="{password}"/>'
        '</settings><boxes>'
        f'<box name="sim" host="127.0.0.1" port="{sim_port}" password="{SIM_PASSWORD}"/>'
        "</boxes></configuration>"
    )


def load_demo_config(options: DemoOptions, sim_port: int) -> configmod.Config:
    ccfast_text = ccfast_settings_xml(sim_port)
    if options.config is not None:
        cfg = configmod.load_config(options.config, ccfast_text=ccfast_text)
    else:
        cfg = configmod.load_config("demo:callcenter.conf.xml", text=scenario.sample_config(options.agents),
                                    ccfast_text=ccfast_text)
    if not cfg.queue_sources:
        raise configmod.ConfigError(cfg.path, None, "no <queue> defined: the demo needs at least one queue")
    cfg.database = dsnmod.MEMORY  # the demo never writes to a database named in the file
    loopback = configmod.Address("127.0.0.1", 0)  # the OS picks free ports
    cfg.ccfast.outbound_listen = loopback
    cfg.ccfast.control_listen = loopback
    cfg.ccfast.metrics_listen = loopback
    return cfg


def _enable_kpis(running) -> None:
    metrics = running.metrics
    if metrics.kpi is None:
        # serve.run builds Metrics() without a KpiTracker (reported); the view needs service levels
        metrics.kpi = KpiTracker(window=KPI_WINDOW_S, bucket=KPI_BUCKET_S)
    core = running.service.core
    for name in core.queue_names():
        metrics.kpi.set_queue(core.queue_params(name))


def _guard_stats(running) -> None:
    """``api ccfast_stats <unknown queue>`` raises inside control.py and would end the whole
    service (reported); in the demo a typo in ``ccfast ctl stats`` answers -ERR instead."""
    control = running.control
    if control is None or control.stats is None:
        return
    inner = control.stats

    def stats(queue, as_json):
        try:
            return inner(queue, as_json)
        except (KpiError, MetricsError) as exc:
            return f"-ERR {exc}\n"

    control.stats = stats


# -- traffic and end of run -------------------------------------------------------------------
async def _send_callers(ctx: _Ctx, rng: random.Random) -> None:
    t0 = trio.current_time()
    t = 0.0
    i = 0
    while True:
        t += ctx.traffic.next_gap(rng, t)
        await trio.sleep_until(t0 + t)
        if ctx.phase == "ramp" and t >= ctx.traffic.ramp_s:
            ctx.phase = "steady"
        ctx.sim.spawn_caller(ctx.traffic.caller(rng, i))
        i += 1


def _live(ctx: _Ctx, role: str) -> list:
    return [ch for ch in list(ctx.sim.switch.channels.values()) if ch.alive and ch.role == role]


async def _drain(ctx: _Ctx) -> dict:
    """Steps 2 and 3 of the module docstring; returns what it did."""
    sw = ctx.sim.switch
    start = trio.current_time()
    with trio.move_on_after(ctx.options.drain):
        while _live(ctx, "member"):
            await trio.sleep(0.1)
    natural = trio.current_time() - start
    cut = 0
    for ch in _live(ctx, "member"):
        ctx.tally.cut_at_end.add(ch.uuid)
        caller = ch.loopback_peer
        sw.hangup(caller if caller is not None and caller.alive else ch, "NORMAL_CLEARING")
        cut += 1
    settled = False
    with trio.move_on_after(SETTLE_S):
        while ctx.service.members or ctx.service.offers or _live(ctx, "member") or _live(ctx, "agent"):
            await trio.sleep(0.05)
        settled = True
    await trio.sleep(0.3)  # the last state changes after hang-ups (wrap-up start, tier reset)
    left = collections.Counter(ch.role or "other" for ch in sw.channels.values() if ch.alive)
    return {
        "drain_s": round(natural, 2), "callers_hung_up_at_end": cut, "settled": settled,
        "live_channels_left": sum(left.values()), "live_channels_left_by_role": dict(left),
        "listeners_dropped_by_sim": ctx.sim.stats.get("listeners_dropped", 0),
        "service_task_failures": ctx.service.stats.get("task_failures", 0),
        "service_members_left": len(ctx.service.members), "service_offers_left": len(ctx.service.offers),
    }


def _summary(ctx: _Ctx, drained: dict) -> dict:
    sw = ctx.sim.switch
    try:
        kpi = ctx.running.metrics.kpi_stats(ctx.clock.time())
    except Exception:  # KPIs are extra; the summary must still be produced
        log.exception("KPI stats failed")
        kpi = {}
    opts = ctx.options
    traffic_s = (ctx.traffic_end or trio.current_time()) - ctx.started
    return tallymod.summarize(
        tally=ctx.tally, calls=list(sw.calls.values()), agent_rows=ctx.core.rows("agents"),
        member_rows=ctx.core.rows("members"),
        live_endpoints={rec.endpoint for rec in sw.legs.values() if rec.ended_at is None},
        channel_alive=lambda uuid: sw.get(uuid) is not None, kpi=kpi,
        options={"duration_s": opts.duration, "cps": opts.cps, "agents": len(ctx.core.rows("agents")),
                 "seed": opts.seed},
        extra={"traffic_s": round(traffic_s, 2), **drained,
               "offers_started": ctx.service.stats.get("offers_started"),
               "originates": sw.stats.get("originates")},
    )


# -- the view ---------------------------------------------------------------------------------
def collect_frame(ctx: _Ctx) -> dict:
    """The data of one view frame (see ``view``)."""
    core = ctx.core
    now = ctx.clock.time()
    try:
        kpi = ctx.running.metrics.kpi_stats(now)
    except Exception:
        kpi = {}
    waiting: collections.Counter = collections.Counter()
    for row in core.rows("members"):
        if row["state"] in tallymod.LIVE_MEMBER_STATES:
            waiting[row["queue"]] += 1
    agents: dict[str, dict[str, int]] = {}
    talking = 0
    for row in core.rows("agents"):
        states = agents.setdefault(row["status"], {})
        states[row["state"]] = states.get(row["state"], 0) + 1
        talking += row["state"] == S.STATE_IN_A_QUEUE_CALL
    order = {s: i for i, s in enumerate(S.AGENT_STATUSES)}
    agents = {k: dict(sorted(v.items())) for k, v in sorted(agents.items(), key=lambda kv: order.get(kv[0], 99))}
    queues = []
    for name in core.queue_names():
        params = core.queue_params(name)
        k = kpi.get(name, {})
        counts = ctx.tally.queues.get(name) or tallymod.QueueCounts()
        queues.append({
            "name": name, "strategy": params.strategy if params is not None else "?",
            "waiting": waiting.get(name, 0), "longest_wait": k.get("longest_wait_s"),
            "offered": counts.offered, "answered": counts.answered, "abandoned": counts.abandoned,
            "sl_window": k.get("window", {}).get("service_level"),
            "sl_total": k.get("since_start", {}).get("service_level"),
            "asa": k.get("since_start", {}).get("asa_s"), "threshold": k.get("threshold_s"),
        })
    kt = ctx.running.metrics.kpi
    return {
        "elapsed": ctx.elapsed(), "phase": ctx.phase,
        "target_cps": ctx.traffic.rate(ctx.elapsed()) if ctx.phase in ("ramp", "steady") else 0.0,
        "cps": ctx.tally.calls_per_second(trio.current_time()), "calls": ctx.sim.switch.stats["callers"],
        "queues": queues, "agents": agents, "talking": talking,
        "window_label": kt.window_label if kt is not None else "",
        "footer": ctx.footer, "logs": list(ctx.logs),
    }


async def _show(ctx: _Ctx, out: TextIO, mode: str) -> None:
    tty = mode == "tty"
    if tty:
        out.write(view.HIDE_CURSOR + "\x1b[2J")
    else:
        out.write("".join(line + "\n" for line in ctx.footer))
    try:
        while True:
            frame = collect_frame(ctx)
            out.write(view.render_tty(frame) if tty else view.status_line(frame) + "\n")
            out.flush()
            await trio.sleep(TTY_INTERVAL_S if tty else LINE_INTERVAL_S)
    finally:
        if tty:
            out.write(view.SHOW_CURSOR)
            out.flush()


class _LogTail:
    """A stream for log records while the full-screen view runs: the last lines go on screen."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=4)

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.lines.append(line[:160])
        return len(text)

    def flush(self) -> None:
        pass


# -- run ------------------------------------------------------------------------------------
async def run_demo(options: DemoOptions, out: TextIO | None = None, mode: str = "json", *,
                   handle_signals: bool = False, log_tail: _LogTail | None = None,
                   task_status=trio.TASK_STATUS_IGNORED) -> dict | None:
    """Run the demo; returns the summary (None when stopped by a second signal).

    ``task_status.started(ctx)`` once the simulator and the service are up (tests)."""
    from ..serve import run as serve_run

    options.check()
    out = out or sys.stdout
    rng = random.Random(options.seed)
    profiles = ProfileTable(scenario.agent_profiles(options.agents), default=scenario.behaviour("quick"))
    sim = Simulator(password=SIM_PASSWORD, timings=Timings(), profiles=profiles, seed=options.seed,
                    max_lag=SIM_MAX_LAG)
    summary: dict | None = None
    async with trio.open_nursery() as nursery:
        sim_port = await nursery.start(sim.serve)
        cfg = load_demo_config(options, sim_port)
        running = await nursery.start(serve_run, cfg)
        sim.dial_to = ("127.0.0.1", running.outbound_port)
        _enable_kpis(running)
        _guard_stats(running)
        traffic = scenario.traffic_for(options.cps, options.duration)
        if options.config is not None:  # the operator's queues, equal shares
            traffic.queues = tuple((name, 1.0) for name in running.service.core.queue_names())
        ctx = _Ctx(options, sim, running, traffic)
        if log_tail is not None:
            log_tail.lines.clear()  # start-up notes about the demo's fresh in-RAM database
            ctx.logs = log_tail.lines
        running.service.event_listeners.append(ctx.tally.on_event)
        ctx.footer = [
            f"control: ccfast ctl --port {running.control_port} queue list   |   "
            f"ccfast ctl --port {running.control_port} stats",
            f"metrics: http://127.0.0.1:{running.metrics_port}/metrics   |   "
            + ("Ctrl-C: stop callers, drain, summary" if options.duration is None
               else f"runs {options.duration:g} s, then drains (<= {options.drain:g} s)"),
        ]
        task_status.started(ctx)
        stop = trio.Event()
        if handle_signals:
            nursery.start_soon(_watch_signals, stop, nursery.cancel_scope)
        if mode != "json":
            nursery.start_soon(_show, ctx, out, mode)
        with trio.move_on_after(options.duration if options.duration is not None else math.inf):
            async with trio.open_nursery() as callers:
                callers.start_soon(_send_callers, ctx, rng)
                await stop.wait()
                callers.cancel_scope.cancel()
        ctx.traffic_end = trio.current_time()
        ctx.phase = "draining"
        drained = await _drain(ctx)
        summary = _summary(ctx, drained)
        nursery.cancel_scope.cancel()
    return summary


async def _watch_signals(stop: trio.Event, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not stop.is_set():
                stop.set()  # first: stop callers, drain, summarize
            else:
                everything.cancel()  # second: stop now
                return


def human_summary(s: dict) -> str:
    causes = ", ".join(f"{k} {v}" for k, v in s["abandoned_by_cause"].items() if v) or "none"
    lines = [
        f"ccfast demo: {s['calls']} callers in {s['traffic_s']:.0f} s (peak {s['cps']:g}/s, {s['agents']} agents, seed {s['seed']})",
        f"  answered {s['answered']}, abandoned {s['abandoned']} ({causes}), cut at end {s['cut_at_end']}",
        f"  wait to answer: p50 {_fmt(s['p50_wait_s'])}, p99 {_fmt(s['p99_wait_s'])}",
    ]
    for name, q in s["queues"].items():
        sl = "-" if q["service_level"] is None else f"{q['service_level'] * 100:.0f}%"
        lines.append(f"  {name:<16} offered {q['offered']:>4}  answered {q['answered']:>4}  "
                     f"abandoned {q['abandoned']:>4}  service level {sl} (<= {q['threshold_s']} s)")
    ok = not s["stuck_agents"] and not s["stuck_members"]
    lines.append(f"  stuck agents {s['stuck_agents']}, stuck members {s['stuck_members']}"
                 + ("" if ok else f"  <-- {s['stuck_agent_names']} {s['stuck_member_uuids']}"))
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def main(args) -> int:
    options = DemoOptions(
        duration=10.0 if getattr(args, "quick", False) and args.duration is None else args.duration,
        cps=args.cps, agents=args.agents, seed=args.seed, drain=args.drain, config=args.config,
    )
    try:
        options.check()
    except ValueError as exc:
        print(f"ccfast demo: {exc}", file=sys.stderr)
        return 2
    mode = "json" if args.json else ("tty" if sys.stdout.isatty() else "lines")
    tail = _LogTail() if mode == "tty" else None
    setup_logging("WARNING", stream=tail)
    try:
        summary = trio.run(lambda: run_demo(options, sys.stdout, mode, handle_signals=True, log_tail=tail))
    except BaseException as raw:  # noqa: BLE001 - a config error is reported, anything else re-raised
        exc = leaf_error(raw)
        if not isinstance(exc, configmod.ConfigError):
            raise
        print(f"ccfast demo: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        setup_logging("WARNING")  # back to stderr
    if summary is None:
        print("ccfast demo: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(human_summary(summary))
    return 1 if summary["stuck_agents"] or summary["stuck_members"] else 0
