"""``python -m ccfast.sim --listen 127.0.0.1:8021 --password ClueCon --dial-to 127.0.0.1:8040
--cps 10 [--total N] [--patience S] [--talk S] [--profile name=outcome:ring:talk ...]``"""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from .core import Simulator
from .profiles import OUTCOMES, AgentProfile, ProfileTable
from .switch import CallerSpec, Timings


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {s!r}")
    return host, int(port)


def _profile(s: str) -> AgentProfile:
    """``name=outcome[:ring_s[:talk_s]]``, e.g. ``a1=answer:0.5:30``, ``b=USER_BUSY``."""
    name, eq, rest = s.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"expected name=outcome[:ring[:talk]], got {s!r}")
    parts = rest.split(":")
    outcome = parts[0] or "answer"
    if outcome not in OUTCOMES and not outcome.isupper():
        raise argparse.ArgumentTypeError(f"outcome must be one of {OUTCOMES} or a CAUSE")
    try:
        ring = float(parts[1]) if len(parts) > 1 and parts[1] else 0.0
        talk = float(parts[2]) if len(parts) > 2 and parts[2] else None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return AgentProfile(name, outcome=outcome, ring_time=ring, talk_time=talk)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ccfast.sim", description=__doc__)
    ap.add_argument("--listen", type=_hostport, default=("127.0.0.1", 8021))
    ap.add_argument("--password", default="ClueCon")
    ap.add_argument("--dial-to", type=_hostport, default=None,
                    help="where simulated callers connect (the dispatcher's outbound listener)")
    ap.add_argument("--cps", type=float, default=0.0, help="callers per second (0: none)")
    ap.add_argument("--total", type=int, default=None, help="stop after N callers")
    ap.add_argument("--queue", default="support@default")
    ap.add_argument("--patience", type=float, default=None, help="callers abandon after S s")
    ap.add_argument("--talk", type=float, default=None, help="default agent talk time (s)")
    ap.add_argument("--ring", type=float, default=0.0, help="default agent ring time (s)")
    ap.add_argument("--profile", type=_profile, action="append", default=[],
                    help="agent profile name=outcome[:ring[:talk]] for sim/agent/<name>")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fast", action="store_true", help="short media tick (2 ms)")
    ap.add_argument("--acl", action="append", default=None, help="allowed client network")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING)
    default = AgentProfile("default", ring_time=a.ring, talk_time=a.talk)
    table = ProfileTable({p.name: p for p in a.profile}, default)
    sim = Simulator(password=a.password, host=a.listen[0], port=a.listen[1],
                    timings=Timings.fast() if a.fast else Timings(), profiles=table,
                    seed=a.seed, dial_to=a.dial_to, acl=a.acl)

    async def run() -> None:
        async with trio.open_nursery() as n:
            port = await n.start(sim.serve)
            print(f"ccfast.sim listening on {a.listen[0]}:{port}", file=sys.stderr, flush=True)
            if a.cps > 0:
                if a.dial_to is None:
                    raise SystemExit("--cps needs --dial-to")
                spec = lambda i: CallerSpec(queue=a.queue, cid_number=str(5550000 + i),  # noqa
                                            patience=a.patience)
                await sim.run_callers(a.cps, total=a.total, make_spec=spec)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
