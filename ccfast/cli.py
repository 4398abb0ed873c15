"""The ``ccfast`` command line: ``serve``, ``ctl`` and ``demo``.

Each sub-command imports what it needs only when it runs, so ``ccfast ctl`` starts fast.

Exit statuses: 0 success; 1 an error reply (``ctl``) or a forced stop; 2 a configuration that
cannot work or no connection to the control port (``ctl``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
STOP_GRACE_S = 15.0  # after the first SIGTERM/SIGINT: how long the flush may take before a forced exit
DEMO_CPS, DEMO_AGENTS, DEMO_DRAIN = 4.0, 50, 20.0

log = logging.getLogger("ccfast.cli")


# -- ccfast serve --------------------------------------------------------------------------------
def _run_serve(args: argparse.Namespace) -> int:
    from . import config as configmod
    from .logs import setup_logging

    try:
        setup_logging(args.log_level, args.log_json)
    except ValueError as exc:
        print(f"ccfast serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg = configmod.load_config(args.config, args.ccfast_config)
    except configmod.ConfigError as exc:
        print(f"ccfast serve: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in cfg.warnings:
        log.warning("config: %s", warning)

    import trio

    from .ctl import leaf_error
    from .esl.inbound import AuthenticationFailed

    try:
        return trio.run(serve_until_signal, cfg)
    except BaseException as raw:  # noqa: BLE001 - known start-up failures get one clear line
        exc = leaf_error(raw)
        if isinstance(exc, configmod.ConfigError):  # config-source = database: rows that cannot work
            print(f"ccfast serve: configuration error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(exc, AuthenticationFailed):
            print(f"ccfast serve: a FreeSWITCH box refused the connection: {exc} "
                  f"(check the box password in ccfast's <boxes>)", file=sys.stderr)
        elif isinstance(exc, OSError):
            print(f"ccfast serve: {exc} (is another process using the port?)", file=sys.stderr)
        else:
            raise
        return EXIT_FAILED


class _Started:
    """A ``task_status`` for awaiting ``serve.run`` directly: keeps the ``Running`` it reports."""

    def __init__(self) -> None:
        self.running = None

    def started(self, value=None) -> None:
        self.running = value


async def serve_until_signal(cfg, *, signals=(signal.SIGTERM, signal.SIGINT)) -> int:
    """Run ``serve.run(cfg)`` until the first signal, then stop it cleanly (the journal is
    flushed when the service's nursery is left). A signal that arrives before the service is
    up (e.g. while it waits for a FreeSWITCH box) cancels the start. A second signal, or a flush
    that takes longer than ``STOP_GRACE_S``, cancels everything: exit status 1. Returns the exit
    status."""
    import trio

    from . import serve

    status = _Started()
    serving = trio.CancelScope()
    forced = False

    async def watch_signals(receiver) -> None:
        nonlocal forced
        stopping = False
        async for signum in receiver:
            name = signal.Signals(signum).name
            if stopping:
                log.warning("%s received again: stopping now without waiting for the flush", name)
                forced = True
                serving.cancel()
                return
            stopping = True
            if status.running is None:
                log.info("%s received before the service was up: stopping", name)
                serving.cancel()
                return
            log.info("%s received: stopping (flushing the journal)", name)
            status.running.stop()
            serving.deadline = trio.current_time() + STOP_GRACE_S

    with trio.open_signal_receiver(*signals) as receiver:
        log.info("ccfast starting (config %s); SIGTERM/SIGINT stop it", cfg.path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, receiver)
            with serving:
                await serve.run(cfg, task_status=status)
            nursery.cancel_scope.cancel()  # the service is done: stop watching signals
    timed_out = serving.cancelled_caught and status.running is not None and trio.current_time() >= serving.deadline
    if timed_out and not forced:
        log.error("the service did not stop within %.0f s; exiting anyway", STOP_GRACE_S)
    log.info("ccfast stopped")
    return EXIT_FAILED if forced or timed_out else EXIT_OK


# -- ccfast ctl ------------------------------------------------------------------------------------
def _run_ctl(args: argparse.Namespace) -> int:
    from . import ctl

    return ctl.run(args)


# -- ccfast demo -----------------------------------------------------------------------------------
def _run_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccfast", description="ccfast: a call-center queue dispatcher for FreeSWITCH")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the dispatcher (reads callcenter.conf.xml)",
                           description="Run the dispatcher. SIGTERM/SIGINT stop it cleanly (journal flushed, exit 0).")
    serve.add_argument("--config", required=True, help="the operator's callcenter.conf.xml (read unchanged)")
    serve.add_argument("--ccfast-config", default=None, help="ccfast's own settings (ccfast.conf.xml); optional")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    serve.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    serve.set_defaults(func=_run_serve)

    from . import ctl

    ctl_parser = sub.add_parser(
        "ctl", help="send a callcenter_config command (or stats / break) to the control port",
        description="Send one command to the control port and print the reply. "
                    "Examples: `ccfast ctl queue list`, `ccfast ctl stats support@default --json`, "
                    "`ccfast ctl break <uuid>`. Exit status 1 on -ERR/-USAGE replies, 2 when it cannot connect.")
    ctl.add_arguments(ctl_parser)
    ctl_parser.set_defaults(func=_run_ctl)

    demo = sub.add_parser(
        "demo", help="run the simulator and the dispatcher with a sample call center",
        description="Start a simulated FreeSWITCH and ccfast on loopback with the sample call center "
                    "(examples/demo/callcenter.conf.xml) and a traffic profile; show a live view.")
    demo.add_argument("--duration", type=float, default=None,
                      help="seconds of traffic, then drain and summary (default: until Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="headless: print one JSON summary at the end")
    demo.add_argument("--cps", type=float, default=DEMO_CPS, help=f"peak calls per second (default {DEMO_CPS:g})")
    demo.add_argument("--agents", type=int, default=DEMO_AGENTS, help=f"number of agents (default {DEMO_AGENTS})")
    demo.add_argument("--seed", type=int, default=1, help="random seed of traffic and agent behaviour (default 1)")
    demo.add_argument("--drain", type=float, default=DEMO_DRAIN,
                      help=f"at the end: seconds to let calls finish before hanging up the rest (default {DEMO_DRAIN:g})")
    demo.add_argument("--config", default=None,
                      help="run with this callcenter.conf.xml instead of the generated sample (agents use sim/ contacts)")
    demo.add_argument("--quick", action="store_true", help="a short run (same as --duration 10)")
    demo.set_defaults(func=_run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
