"""``ccfast ctl``: send one command to a running ccfast's control port and print the reply.

Usage (options before the command words)::

    ccfast ctl [--host H] [--port P] [--password PW] [--config callcenter.conf.xml [--ccfast-config F]]
               <callcenter_config arguments…>        → api callcenter_config <arguments>
    ccfast ctl stats [queue] [--json]               → api ccfast_stats [queue] [--json]
    ccfast ctl break <uuid>                         → api callcenter_break agent <uuid>

Contract:

* Address and password default to ccfast's own defaults (``control-listen``,
  ``control-password`` in ``config.CCFAST_PARAMS``); ``--config`` reads them from the same files
  ``ccfast serve`` reads instead; ``--host``/``--port``/``--password`` override either.
* Several command words are joined with spaces; a word containing a space (``'Available (On
  Demand)'`` typed with shell quotes) is quoted for FreeSWITCH's splitter so it stays one token.
  A single word is sent as written (``ccfast ctl "agent set status a 'On Break'"``, as with
  ``fs_cli -x``).
* The reply body is written to stdout exactly; a newline is added only when the body does not end
  with one. ``callcenter_break`` prints nothing on success (FreeSWITCH then replies
  ``-ERR no reply``, which ``ctl break`` treats as success and does not print).
* Exit status: 0 success; 1 the reply starts with ``-ERR`` or ``-USAGE``; 2 no connection
  (refused, timeout, authentication refused, the port closed before replying), with a message
  on stderr naming the address.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import trio

from . import config as configmod
from .esl.inbound import AuthenticationFailed, ConnectionLost, InboundClient

EXIT_OK, EXIT_ERR_REPLY, EXIT_NO_CONNECTION = 0, 1, 2
ERROR_PREFIXES = ("-ERR", "-USAGE")
NO_REPLY = "-ERR no reply"  # what FreeSWITCH (and ccfast) send for an empty api output


def default_address() -> configmod.Address:
    default, _ = configmod.CCFAST_PARAMS["control-listen"]
    address = configmod.parse_address(default, "(default)", "control-listen", allow_off=False)
    assert address is not None
    return address


def default_password() -> str:
    return configmod.CCFAST_PARAMS["control-password"][0]


def quote_word(word: str) -> str:
    """One argument as a single token for ``switch_separate_string`` (space as separator)."""
    if word and not any(c in word for c in " '\\"):
        return word
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


def join_words(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return " ".join(quote_word(w) for w in words)


def api_command(words: list[str]) -> tuple[str, str]:
    """(api command, its argument line) for the ``ctl`` command words."""
    if not words:
        return "callcenter_config", ""  # the server answers with its -USAGE text
    head = words[0].lower()
    if head == "stats":
        return "ccfast_stats", " ".join(words[1:])
    if head == "break":
        if len(words) != 2:
            raise ValueError("usage: ccfast ctl break <uuid>")
        return "callcenter_break", f"agent {words[1]}"
    return "callcenter_config", join_words(words)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    address = default_address()
    parser.add_argument("--host", default=None, help=f"control port host (default {address.host})")
    parser.add_argument("--port", type=int, default=None, help=f"control port (default {address.port})")
    parser.add_argument("--password", default=None, help="control port password (default: ccfast's default)")
    parser.add_argument("--config", default=None, help="read control-listen/control-password from this callcenter.conf.xml")
    parser.add_argument("--ccfast-config", default=None, help="... and this ccfast.conf.xml")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for connect and reply (default 10)")
    parser.add_argument("words", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="callcenter_config arguments, or: stats [queue] [--json] | break <uuid>")


def resolve_target(args: argparse.Namespace) -> tuple[str, int, str]:
    """Host, port, password from defaults, then ``--config``, then explicit options."""
    address, password = default_address(), default_password()
    if args.config is not None:
        cfg = configmod.load_config(args.config, args.ccfast_config)
        if cfg.ccfast.control_listen is None:
            raise configmod.ConfigError(args.config, "control-listen", "the control port is disabled in this configuration",
                                        "HOST:PORT")
        address, password = cfg.ccfast.control_listen, cfg.ccfast.control_password
    host = args.host if args.host is not None else address.host
    port = args.port if args.port is not None else address.port
    if args.password is not None:
        password = args.password
    return host, port, password


async def send(host: str, port: int, password: str, command: str, argline: str, timeout: float = 10.0) -> str:
    """Connect (no reconnect), authenticate, run ``api <command> <argline>``, return the body.

    Raises ``ConnectionLost`` / ``AuthenticationFailed`` / ``trio.TooSlowError``."""
    client = InboundClient(host, port, password, reconnect=False, liveness_interval=None,
                           connect_timeout=timeout)
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                return await client.api(command, argline)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await client.close()


def leaf_error(exc: BaseException) -> BaseException:
    """The single real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    words = list(args.words or [])
    if words and words[0] == "--":
        words = words[1:]
    try:
        command, argline = api_command(words)
    except ValueError as exc:
        print(f"ccfast ctl: {exc}", file=stderr)
        return EXIT_ERR_REPLY
    try:
        host, port, password = resolve_target(args)
    except configmod.ConfigError as exc:
        print(f"ccfast ctl: configuration error: {exc}", file=stderr)
        return EXIT_NO_CONNECTION
    where = f"{host}:{port}"
    try:
        reply = trio.run(send, host, port, password, command, argline, args.timeout)
    except BaseException as raw:  # noqa: BLE001 - classified below, re-raised if unknown
        exc = leaf_error(raw)
        if isinstance(exc, AuthenticationFailed):
            print(f"ccfast ctl: {where}: {exc} (check --password / control-password)", file=stderr)
        elif isinstance(exc, ConnectionLost):
            hint = "Is `ccfast serve` running there (control-listen)?"
            if "closed" in str(exc):  # the server hung up right after we connected: usually a refused password
                hint = "Was the password refused (--password / control-password)?"
            print(f"ccfast ctl: cannot talk to the control port at {where}: {exc}. {hint}", file=stderr)
        elif isinstance(exc, trio.TooSlowError):
            print(f"ccfast ctl: {where}: no reply within {args.timeout:g} s", file=stderr)
        else:
            raise
        return EXIT_NO_CONNECTION
    if command == "callcenter_break" and reply.rstrip("\n") == NO_REPLY:
        return EXIT_OK  # callcenter_break prints nothing when it worked
    stdout.write(reply if reply.endswith("\n") or not reply else reply + "\n")
    stdout.flush()
    return EXIT_ERR_REPLY if reply.startswith(ERROR_PREFIXES) else EXIT_OK
