"""The demo's terminal view: a full-screen ANSI frame (TTY) or one status line (pipes, logs).

``frame_lines(frame)`` and ``status_line(frame)`` are pure: ``frame`` is the dict built by
``ccfast.demo.collect_frame`` — ``elapsed``, ``phase``, ``target_cps``, ``cps``, ``calls``,
``queues`` (list of dicts: name, strategy, waiting, longest_wait, offered, answered, abandoned,
sl_window, sl_total, asa, threshold), ``agents`` ({status: {state: n}}), ``talking``,
``window_label``, ``footer`` (lines), ``logs`` (recent log lines).
No curses: cursor home, erase-line and erase-below escapes only.
"""

from __future__ import annotations

HOME, ERASE_LINE, ERASE_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


def _pct(x) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _sec(x) -> str:
    return "-" if x is None else f"{x:.0f}s" if x >= 10 else f"{x:.1f}s"


def frame_lines(frame: dict, color: bool = True) -> list[str]:
    b, d, r = (BOLD, DIM, RESET) if color else ("", "", "")
    lines = [
        f"{b}ccfast demo{r}  t={frame['elapsed']:5.0f}s  {frame['phase']:<9} "
        f"calls/s {frame['cps']:4.1f} (target {frame['target_cps']:.1f})  callers {frame['calls']}  "
        f"in a call {frame['talking']}",
        "",
        f"{b}{'queue':<16}{'strategy':<26}{'waiting':>8}{'longest':>9}{'offered':>9}{'answered':>9}"
        f"{'abandoned':>10}{'SL ' + frame['window_label']:>8}{'SL all':>8}{'ASA':>7}{r}",
    ]
    for q in frame["queues"]:
        lines.append(
            f"{q['name']:<16}{q['strategy']:<26}{q['waiting']:>8}{_sec(q['longest_wait']):>9}{q['offered']:>9}"
            f"{q['answered']:>9}{q['abandoned']:>10}{_pct(q['sl_window']):>8}{_pct(q['sl_total']):>8}{_sec(q['asa']):>7}"
        )
    lines.append(f"{d}SL = answered within the queue's service-level-threshold / answered{r}")
    lines.append("")
    lines.append(f"{b}agents{r}")
    for status, states in frame["agents"].items():
        cells = "  ".join(f"{state} {n}" for state, n in states.items())
        lines.append(f"  {status:<24}{sum(states.values()):>4}   {cells}")
    lines.append("")
    lines.extend(frame.get("footer", []))
    logs = frame.get("logs") or []
    if logs:
        lines.append("")
        lines.extend(f"{d}{line}{r}" for line in logs)
    return lines


def render_tty(frame: dict) -> str:
    """One full-screen refresh: every line overwritten in place, the rest of the screen erased."""
    return HOME + "".join(line + ERASE_LINE + "\n" for line in frame_lines(frame)) + ERASE_BELOW


def status_line(frame: dict) -> str:
    """One line for non-terminals: totals and per-queue waiting/SL."""
    queues = " ".join(f"{q['name'].split('@')[0]}={q['waiting']}w/{_pct(q['sl_total'])}" for q in frame["queues"])
    offered = sum(q["offered"] for q in frame["queues"])
    answered = sum(q["answered"] for q in frame["queues"])
    abandoned = sum(q["abandoned"] for q in frame["queues"])
    return (f"t={frame['elapsed']:.0f}s {frame['phase']} cps={frame['cps']:.1f} offered={offered} "
            f"answered={answered} abandoned={abandoned} in_call={frame['talking']} {queues}")
