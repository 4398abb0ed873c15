"""The ccfast side of ``bench.e2e``: ``ccfast.serve.run`` in its own process.

    python -m bench.e2e_ccfast CONF_XML [--dispatcher core|oracle]

Loads the configuration (its <ccfast> block names the simulator's box), listens for callers and
control on OS-chosen loopback ports, prints ``{"outbound_port", "control_port", "pid"}`` on stdout
once serving, and runs until SIGTERM/SIGINT. On exit it prints a JSON line with the oracle mode's
counters (passes, mismatches, SQL seconds) when that mode ran.

Until ``ccfast serve`` wires the dispatcher mode itself, ``--dispatcher oracle`` installs it here:
``serve.new_core`` returns ``oracle_mode.make_dispatch_core(cfg)`` and ``Dispatcher.run`` runs
``oracle_mode.polling_loop`` when the core has a ``poll_interval`` (the two lines the serve/service
owners add). Nothing else differs between the modes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import trio

from bench.e2e_sim import raise_nofile
from ccfast import config as configmod
from ccfast import oracle_mode, serve
from ccfast.service import dispatcher as dispatcher_mod


def install_dispatcher_mode() -> None:
    """Make serve honour ``cfg.ccfast.dispatcher`` if it does not yet (idempotent)."""
    serve.new_core = oracle_mode.make_dispatch_core
    original = dispatcher_mod.Dispatcher.run
    if getattr(original, "_oracle_mode", False):
        return

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        interval = getattr(self.core, "poll_interval", None)
        if interval:
            await oracle_mode.polling_loop(self, interval, task_status=task_status)
        else:
            await original(self, task_status=task_status)

    run._oracle_mode = True
    dispatcher_mod.Dispatcher.run = run


async def main(args) -> None:
    raise_nofile()
    cfg = configmod.load_config(args.conf)
    cfg.ccfast.dispatcher = args.dispatcher
    cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.control_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.metrics_listen = None
    install_dispatcher_mode()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(serve.run, cfg)
        print(json.dumps({"outbound_port": running.outbound_port, "control_port": running.control_port,
                          "pid": os.getpid()}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        core = running.service.core
        stats = dict(running.service.stats)
        if isinstance(core, oracle_mode.OracleDispatchCore):
            stats.update(passes=core.passes, mismatches=core.mismatches, sql_seconds=round(core.sql_seconds, 3),
                         mirror_seconds=round(core.mirror_seconds, 3), last_mismatch=core.last_mismatch)
        else:
            stats["passes"] = running.service.dispatcher.passes
        print(json.dumps({"stats": stats}), flush=True)
        nursery.cancel_scope.cancel()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("conf")
    p.add_argument("--dispatcher", choices=("core", "oracle"), default="core")
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    trio.run(main, parse_args())
