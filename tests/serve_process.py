"""A real ``python -m ccfast serve`` child process against an in-test simulated FreeSWITCH box.

The simulator (``ccfast.sim``) runs inside the test's trio loop, so the test can watch channels and
act as the dialplan; ccfast is a separate process that can be SIGKILLed and restarted.

* ``ServeProcess(conf_path, outbound_port)`` — ``await start()`` waits (with a deadline) for the
  ``ccfast serving`` log line, ``kill(sig)``, ``await wait(timeout)`` → exit status, ``lines``
  (its stderr so far). Always ``stop()`` it in ``finally``.
* ``Redialer`` — the documented dialplan fallback after ``socket`` (docs/operations.md): a caller
  whose socket ended without an agent (``cc_agent_bridged`` not ``true``, ``cc_cause`` not
  ``answered``/``cancel``) runs ``socket`` again on the SAME channel, every ``interval`` seconds,
  while ``enabled``. The simulator's callers use ``after_socket=[("park", "")]``; ``ccfast.sim``
  has no "socket again" dialplan step, so this helper re-enters the simulator's socket dialer.
* ``api_table(text)`` — a ``callcenter_config … list`` reply as a list of dicts (strings).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio

from ccfast.api import cell
from ccfast.sim import CallerSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = "ccfast serving:"


class ServeProcess:
    def __init__(self, conf_path: str, *, extra_env: dict | None = None) -> None:
        self.conf_path = conf_path
        self.env = {**os.environ, "PYTHONPATH": ROOT, **(extra_env or {})}
        self.proc: trio.Process | None = None
        self.lines: list[str] = []
        self._ready = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def start(self, nursery: trio.Nursery, *, timeout: float = 10.0, wait_ready: bool = True) -> None:
        self._ready = trio.Event()
        self.proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ccfast", "serve", "--config", self.conf_path, "--log-level", "INFO"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env, cwd=ROOT,
        )
        nursery.start_soon(self._read, self.proc)
        if wait_ready:
            await self.ready(timeout)

    async def ready(self, timeout: float = 10.0) -> None:
        with trio.move_on_after(timeout):
            await self._ready.wait()
        if not self._ready.is_set():
            raise AssertionError(f"ccfast serve not ready within {timeout} s; stderr:\n" + "\n".join(self.lines[-30:]))

    async def _read(self, proc) -> None:
        buf = b""
        async for chunk in proc.stderr:
            buf += chunk
            *done, buf = buf.split(b"\n")
            for raw in done:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if READY in line:
                    self._ready.set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        with trio.fail_after(timeout):
            return await self.proc.wait()

    async def stop(self) -> None:
        """Kill and reap (for ``finally``). With ``CCFAST_SERVE_LOG_DIR`` set, its stderr is
        appended to ``serve-<pid>.log`` there (for reading timings after a run)."""
        log_dir = os.environ.get("CCFAST_SERVE_LOG_DIR")
        if log_dir and self.proc is not None:
            with open(os.path.join(log_dir, f"serve-{self.proc.pid}.log"), "a") as f:
                f.write("\n".join(self.lines) + "\n")
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with trio.move_on_after(5), trio.CancelScope(shield=True):
                await self.proc.wait()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


class Redialer:
    """The dialplan's retry loop after ``socket`` (docs/operations.md), for simulated callers."""

    def __init__(self, sim, interval: float = 0.2) -> None:
        self.sim = sim
        self.interval = interval
        self.enabled = False
        self.redials = 0

    def wants_back(self, ch) -> bool:
        return (ch.alive and ch.role == "member" and not ch.in_socket and ch.bridged is None
                and ch.vars.get("cc_agent_bridged") != "true" and ch.vars.get("cc_cause") not in ("answered", "cancel"))

    async def run(self) -> None:
        sw = self.sim.switch
        while True:
            await trio.sleep(self.interval)
            if not self.enabled:
                continue
            for ch in list(sw.channels.values()):
                if self.wants_back(ch) and getattr(ch, "parked", False):
                    sw.unpark(ch)
                    self.redials += 1
                    self.sim._nursery.start_soon(self.sim._run_socket, ch, ch.caller_spec)


def caller(queue: str, number: str, *, park: bool = True) -> CallerSpec:
    """A caller whose dialplan parks it after ``socket`` (the Redialer sends it back), or hangs
    up there (``park=False``)."""
    return CallerSpec(queue=queue, cid_number=number, cid_name=f"caller {number}",
                      after_socket=[("park", "")] if park else [])


def api_table(text: str) -> list[dict]:
    """``a|b\\n1|2\\n+OK\\n`` → ``[{"a": "1", "b": "2"}]`` (``+OK`` alone → [])."""
    lines = [ln for ln in text.split("\n") if ln]
    assert lines and lines[-1] == "+OK", text
    if len(lines) == 1:
        return []
    header = lines[0].split("|")
    return [dict(zip(header, ln.split("|"))) for ln in lines[1:-1]]


def as_text(rows: list[dict], drop: tuple[str, ...] = ()) -> list[tuple]:
    """Rows with every value as the API prints it, sorted (for comparing the DB with the API)."""
    return sorted(tuple((k, cell(v)) for k, v in row.items() if k not in drop) for row in rows)
