"""Parsing of ``originate`` arguments and dial strings, with FreeSWITCH's quirks.

``originate <dial string> <&app(arg)|extension> [dialplan] [context] [cid name] [cid num] [timeout]``

* ``{a=1,b=2}`` before the dial string applies to every leg; ``[c=3]`` before one leg to that leg.
  When a name is in both, the ``{}`` value wins on the channel (observed, §8).
* Legs separated by ``,`` ring at once; groups separated by ``|`` are tried in turn.
* Commas inside values are escaped ``\\,``; quotes do not protect commas (``'a,b'`` → ``a``);
  quotes around a value are removed; a value with an unquoted space breaks the dial string
  (the whole originate then fails with ``DESTINATION_OUT_OF_ORDER``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# the character loops below are the reference; these shortcuts apply when none of the
# characters that make them differ from a plain split is present
_NO_NESTING = re.compile(r"[^\\\[\]{}<>]*\Z")
_BAD_ENDPOINT = re.compile(r"[{}\[\]']")


class DialStringError(ValueError):
    """The dial string cannot be parsed; ``cause`` is the hangup cause FreeSWITCH reports."""

    def __init__(self, message: str, cause: str = "DESTINATION_OUT_OF_ORDER"):
        super().__init__(message)
        self.cause = cause


@dataclass
class Leg:
    endpoint: str                     # e.g. "loopback/agent_park_1/cc", "sim/agent/a1"
    vars: dict[str, str] = field(default_factory=dict)   # [] vars of this leg


@dataclass
class Originate:
    global_vars: dict[str, str]
    groups: list[list[Leg]]           # "|"-separated groups of ","-separated legs
    app: str | None                   # "park" for "&park()"
    app_arg: str
    extension: str | None             # when the second argument is not an &app
    dialplan: str
    context: str
    cid_name: str | None
    cid_number: str | None
    timeout: float | None

    def leg_vars(self, leg: Leg) -> dict[str, str]:
        """Variables a leg's channel gets: the leg's, then the global ones (global wins)."""
        merged = dict(leg.vars)
        merged.update(self.global_vars)
        return merged


def _split_unescaped(s: str, sep: str) -> list[str]:
    if "\\" not in s:
        return s.split(sep)
    return _split_unescaped_loop(s, sep)


def _split_unescaped_loop(s: str, sep: str) -> list[str]:
    """The reference: ``\\<sep>`` is a literal separator character."""
    out, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == sep:
            cur.append(sep)
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def parse_vars(body: str) -> dict[str, str]:
    """``a=1,b='x y',c=p\\,q`` → dict. Empty pairs are skipped."""
    out: dict[str, str] = {}
    for pair in _split_unescaped(body, ","):
        if not pair:
            continue
        name, eq, value = pair.partition("=")
        name = name.strip()
        if not eq or not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif value[:1] in ("'", '"'):
            value = value[1:]
        elif value[-1:] in ("'", '"'):
            value = value[:-1]
        out[name] = value
    return out


def _split_top(s: str, seps: str) -> list[tuple[str, str]]:
    """Split on separators outside ``[]``/``{}``/``<>``; returns (piece, separator-before)."""
    if len(seps) == 1 and _NO_NESTING.match(s):
        parts = s.split(seps)
        return [(parts[0], "")] + [(p, seps) for p in parts[1:]]
    out, depth, start, before = [], 0, 0, ""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in "[{<":
            depth += 1
        elif c in "]}>":
            depth -= 1
        elif depth == 0 and c in seps:
            out.append((s[start:i], before))
            before = c
            start = i + 1
        i += 1
    out.append((s[start:], before))
    return out


def split_args(text: str) -> list[str]:
    """Split the originate argument line on spaces outside quotes and ``()``."""
    if "'" not in text and '"' not in text:
        parts = [p for p in text.split(" ") if p]
        for p in parts:
            if ("(" in p or ")" in p) and not (p.endswith("()") and p.count("(") == 1 and p.count(")") == 1):
                break
        else:
            return parts
    return _split_args_loop(text)


def _split_args_loop(text: str) -> list[str]:
    """The reference loop of ``split_args`` (quotes and ``()`` keep spaces)."""
    out, cur, quote, depth = [], [], "", 0
    for c in text:
        if quote:
            cur.append(c)
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c == "(":
            depth += 1
            cur.append(c)
        elif c == ")":
            depth = max(0, depth - 1)
            cur.append(c)
        elif c == " " and depth == 0:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        out.append("".join(cur))
    return out


try:  # the same loop, in C
    from ._render import split_args  # noqa: F811
except ImportError:  # pragma: no cover - not built
    pass


def parse_dialstring(ds: str) -> tuple[dict[str, str], list[list[Leg]]]:
    if ds.startswith("<"):
        raise DialStringError("<> variables are not supported here", "CHAN_NOT_IMPLEMENTED")
    global_vars: dict[str, str] = {}
    if ds.startswith("{"):
        end = ds.find("}")
        if end < 0:
            raise DialStringError("unterminated {")
        global_vars = parse_vars(ds[1:end])
        ds = ds[end + 1:]
    groups: list[list[Leg]] = []
    for group_text, _ in _split_top(ds, "|"):
        legs = []
        for leg_text, _ in _split_top(group_text, ","):
            leg_text = leg_text.strip()
            lv: dict[str, str] = {}
            while leg_text.startswith("["):
                end = leg_text.find("]")
                if end < 0:
                    raise DialStringError("unterminated [")
                lv.update(parse_vars(leg_text[1:end]))
                leg_text = leg_text[end + 1:]
            if leg_text.startswith("<"):
                raise DialStringError("<> variables", "CHAN_NOT_IMPLEMENTED")
            if not leg_text or "/" not in leg_text or _BAD_ENDPOINT.search(leg_text):
                raise DialStringError(f"bad endpoint {leg_text!r}")
            legs.append(Leg(leg_text, lv))
        groups.append(legs)
    return global_vars, groups


def parse_originate(arg: str) -> Originate:
    """Parse the argument of ``originate``; raises DialStringError (with a cause) or ValueError
    (usage error)."""
    args = split_args(arg.strip())
    if len(args) < 2:
        raise ValueError("-USAGE: <call url> <exten>|&<application_name>(<app_args>) "
                         "[<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]")
    global_vars, groups = parse_dialstring(args[0])
    target = args[1]
    app = extension = None
    app_arg = ""
    if target.startswith("&"):
        body = target[1:]
        if "(" in body:
            app, _, rest = body.partition("(")
            app_arg = rest[:-1] if rest.endswith(")") else rest
        else:
            app = body
    else:
        extension = target

    def opt(i: int) -> str | None:
        if len(args) > i and args[i] not in ("undef", ""):
            return args[i].strip("'\"")
        return None

    timeout = None
    if opt(6):
        try:
            timeout = float(opt(6))  # type: ignore[arg-type]
        except ValueError:
            timeout = None
    return Originate(global_vars=global_vars, groups=groups, app=app, app_arg=app_arg,
                     extension=extension, dialplan=opt(2) or "XML", context=opt(3) or "default",
                     cid_name=opt(4), cid_number=opt(5), timeout=timeout)
