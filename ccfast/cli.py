"""The ``ccfast`` command line: ``serve``, ``demo``, ``ctl`` and ``bench``.

Each sub-command lives in its own module and is imported only when used, so ``ccfast ctl``
starts fast and a missing optional piece never breaks the others.
"""

from __future__ import annotations

import argparse
import sys


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from . import demo
    except ImportError:
        # Until the service exists the main job is the core benchmark (issue 2).
        from bench import core as core_bench

        return core_bench.main(["--quick"] if args.quick else [])
    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccfast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the simulator and the dispatcher with a sample call center")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="headless: print a JSON summary at the end")
    demo.add_argument("--quick", action="store_true", help="a short run")
    demo.set_defaults(func=_run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
