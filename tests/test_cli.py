"""``ccfast ctl`` against a running service, ``ccfast serve`` as a process (config errors, SIGTERM).

``ctl.run`` calls ``trio.run`` itself, so the tests call it from a worker thread.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ccfast import cli, ctl
from ccfast import config as configmod
from ccfast import strings as S
from ccfast.sim import Simulator, Timings
from ccfast.tokenize import separate_string
from tests.e2e_harness import Q, agent, conf, open_callcenter, queue, tier

ROOT = Path(__file__).resolve().parent.parent
A1, A2 = "1000@default", "1001@default"


def _xml() -> str:
    return conf(queue(), agent(A1, "sim/agent/agent_answer") + agent(A2, "sim/agent/agent_answer"),
                tier(A1) + tier(A2))


async def run_ctl(port: int, *words: str, password: str = "secret", options: tuple = ()) -> tuple[int, str, str]:
    """``ccfast ctl --port P --password PW <words>`` in a thread: (exit status, stdout, stderr)."""
    args = cli.build_parser().parse_args(["ctl", "--port", str(port), "--password", password, "--timeout", "5",
                                          *options, *words])
    out, err = io.StringIO(), io.StringIO()
    code = await trio.to_thread.run_sync(ctl.run, args, out, err)
    return code, out.getvalue(), err.getvalue()


# -- pure parts --------------------------------------------------------------------------------
def test_defaults_come_from_the_config_module():
    default = configmod.CCFAST_PARAMS["control-listen"][0]
    assert f"{ctl.default_address().host}:{ctl.default_address().port}" == default
    assert ctl.default_password() == configmod.CCFAST_PARAMS["control-password"][0]
    args = cli.build_parser().parse_args(["ctl", "queue", "list"])
    assert ctl.resolve_target(args) == (ctl.default_address().host, ctl.default_address().port, ctl.default_password())


@pytest.mark.parametrize("words", [
    ["agent", "set", "status", A1, "Available (On Demand)"],
    ["agent", "set", "contact", A1, "[leg_timeout=10]user/1000@default"],
    ["agent", "set", "contact", A1, "it's a \\ backslash"],
    ["queue", "list"],
])
def test_words_survive_freeswitch_splitting(words):
    command, line = ctl.api_command(words)
    assert command == "callcenter_config"
    assert separate_string(line, " ", 10) == words


def test_command_mapping():
    assert ctl.api_command(["stats"]) == ("ccfast_stats", "")
    assert ctl.api_command(["stats", Q, "--json"]) == ("ccfast_stats", f"{Q} --json")
    assert ctl.api_command(["break", "u-1"]) == ("callcenter_break", "agent u-1")
    assert ctl.api_command([]) == ("callcenter_config", "")
    one = "agent set status a 'On Break'"
    assert ctl.api_command([one]) == ("callcenter_config", one)  # one word: sent as typed (fs_cli -x style)
    with pytest.raises(ValueError):
        ctl.api_command(["break"])


def test_ctl_reads_address_from_the_service_config(tmp_path):
    path = tmp_path / "cc.xml"
    path.write_text('<configuration name="callcenter.conf"><ccfast><settings>'
                    '<param name="control-listen" value="127.0.0.9:9999"/><param name="control-password" value="pw"/>'
                    "</settings></ccfast></configuration>")
    args = cli.build_parser().parse_args(["ctl", "--config", str(path), "queue", "list"])
    assert ctl.resolve_target(args) == ("127.0.0.9", 9999, "pw")
    args = cli.build_parser().parse_args(["ctl", "--config", str(path), "--port", "1234", "queue", "list"])
    assert ctl.resolve_target(args) == ("127.0.0.9", 1234, "pw")


# -- against a running service -----------------------------------------------------------------
async def test_ctl_prints_the_reply_exactly_and_sets_exit_codes():
    async with open_callcenter(_xml()) as env:
        port = env.running.control_port
        code, out, err = await run_ctl(port, "queue", "list")
        assert (code, err) == (0, "")
        assert out == await env.cc("queue list")
        assert out.startswith("name|strategy|") and Q in out

        code, out, _ = await run_ctl(port, "agent", "set", "status", A1, S.STATUS_AVAILABLE_ON_DEMAND)
        assert (code, out) == (0, "+OK\n")
        assert [r["status"] for r in env.core.rows("agents") if r["name"] == A1] == [S.STATUS_AVAILABLE_ON_DEMAND]

        code, out, _ = await run_ctl(port, "agent", "set", "status", "nobody@default", "Available")
        assert code == 1 and out.startswith("-ERR")
        code, out, _ = await run_ctl(port, "bogus")
        assert code == 1 and out.startswith("-ERR")
        code, out, _ = await run_ctl(port)
        assert code == 1 and out.startswith("-USAGE")

        code, out, _ = await run_ctl(port, "break", "no-such-uuid")
        assert (code, out) == (1, "-ERR Session not found for uuid no-such-uuid\n")

        # exit 2 either way; the message is "authentication refused" or, when the server's close wins
        # the race inside InboundClient's handshake, "connection closed by peer" (reported)
        code, out, err = await run_ctl(port, "queue", "list", password="wrong")
        assert code == 2 and out == "" and f"127.0.0.1:{port}" in err and "password" in err


async def test_ctl_cannot_connect_exit_2():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await run_ctl(port, "queue", "list")
    assert code == 2 and out == ""
    assert f"127.0.0.1:{port}" in err and "control port" in err


async def test_ctl_stats():
    async with open_callcenter(_xml()) as env:
        port = env.running.control_port
        code, out, _ = await run_ctl(port, "stats")
        assert code == 0 and f"queue {Q}" in out
        code, out, _ = await run_ctl(port, "stats", Q, "--json")
        assert code == 0 and '"queue": "' + Q + '"' in out
        code, out, _ = await run_ctl(port, "stats", "nosuch@default")  # KpiError: must not end the service
        assert code == 1 and out.startswith("-ERR")
        code, out, _ = await run_ctl(port, "queue", "list")
        assert code == 0


# -- ccfast serve as a process -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _read_all(stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(1 << 16):
        data += chunk
    return data


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_serve_config_error_exits_2_with_file_line_and_allowed_values(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<configuration name="callcenter.conf">\n<settings/>\n<ccfast>\n<settings>\n'
                   '<param name="dispatcher" value="fast"/>\n</settings>\n</ccfast>\n</configuration>\n')
    proc = subprocess.run([sys.executable, "-m", "ccfast", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:5" in proc.stderr and "dispatcher" in proc.stderr and "core | oracle" in proc.stderr


def test_serve_missing_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccfast", "serve", "--config", str(tmp_path / "nope.xml")],
                          capture_output=True, text=True, timeout=30, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2 and "nope.xml" in proc.stderr


async def test_serve_sigterm_flushes_the_journal_and_exits_0(tmp_path):
    db = tmp_path / "cc.db"
    control, outbound = _free_port(), _free_port()
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=Timings.fast())
        sim_port = await nursery.start(sim.serve)
        conf_path = tmp_path / "callcenter.conf.xml"
        conf_path.write_text(
            '<configuration name="callcenter.conf"><settings>'
            f'<param name="dbname" value="{db}"/></settings>'
            f"<queues>{queue()}</queues>"
            f"<agents>{agent(A1, 'sim/agent/agent_answer')}{agent(A2, 'sim/agent/agent_answer')}</agents>"
            f"<tiers>{tier(A1)}{tier(A2)}</tiers></configuration>")
        ccfast_path = tmp_path / "ccfast.conf.xml"
        ccfast_path.write_text(
            '<configuration name="ccfast.conf"><settings>'
            f'<param name="control-listen" value="127.0.0.1:{control}"/>'
            '<param name="control-password" value="secret"/>'
            f'<param name="outbound-listen" value="127.0.0.1:{outbound}"/>'
            '<param name="metrics-listen" value=""/>'
            '<param name="store-batch-ms" value="5000"/>'  # long: only the flush at stop writes the change
            f'</settings><boxes><box name="sim" host="127.0.0.1" port="{sim_port}"/></boxes></configuration>')
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "ccfast", "serve", "--config", str(conf_path), "--ccfast-config", str(ccfast_path),
             "--log-json"], env=_env(), cwd=str(tmp_path), stderr=subprocess.PIPE)
        try:
            with trio.fail_after(20):
                while True:  # until the control port answers
                    code, out, _ = await run_ctl(control, "queue", "list")
                    if code == 0:
                        break
                    assert proc.poll() is None, "ccfast serve exited early"
                    await trio.sleep(0.1)
            code, out, _ = await run_ctl(control, "agent", "set", "status", A2, S.STATUS_ON_BREAK)
            assert (code, out) == (0, "+OK\n")
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                rc = await proc.wait()
            stderr = (await _read_all(proc.stderr)).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert rc == 0, stderr
        assert "stopping" in stderr
        nursery.cancel_scope.cancel()
    with sqlite3.connect(db) as conn:
        agents = dict(conn.execute("SELECT name, status FROM agents").fetchall())
        tiers = conn.execute("SELECT queue, agent FROM tiers ORDER BY agent").fetchall()
    assert agents == {A1: S.STATUS_AVAILABLE, A2: S.STATUS_ON_BREAK}
    assert tiers == [(Q, A1), (Q, A2)]


async def test_serve_box_refusing_the_password_exits_1_with_a_clear_message(tmp_path):
    async with trio.open_nursery() as nursery:
        sim = Simulator(password="right", timings=Timings.fast())
        sim_port = await nursery.start(sim.serve)
        path = tmp_path / "callcenter.conf.xml"
        path.write_text(
            '<configuration name="callcenter.conf"><ccfast><settings>'
            f'<param name="outbound-listen" value="127.0.0.1:{_free_port()}"/>'
            f'<param name="control-listen" value="127.0.0.1:{_free_port()}"/><param name="metrics-listen" value=""/>'
            f'</settings><boxes><box name="fs1" host="127.0.0.1" port="{sim_port}" password="wrong"/></boxes>'
            "</ccfast></configuration>")
        proc = await trio.run_process([sys.executable, "-m", "ccfast", "serve", "--config", str(path)],
                                      env=_env(), cwd=str(tmp_path), capture_stderr=True, check=False)
        nursery.cancel_scope.cancel()
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "refused" in stderr and "password" in stderr and "Traceback" not in stderr


async def test_serve_stops_on_sigterm_while_waiting_for_freeswitch(tmp_path):
    """Nothing answers at the box address: the start waits; SIGTERM still ends it (exit 0)."""
    path = tmp_path / "callcenter.conf.xml"
    path.write_text(
        '<configuration name="callcenter.conf"><ccfast><settings>'
        f'<param name="outbound-listen" value="127.0.0.1:{_free_port()}"/>'
        f'<param name="control-listen" value="127.0.0.1:{_free_port()}"/><param name="metrics-listen" value=""/>'
        f'</settings><boxes><box name="fs1" host="127.0.0.1" port="{_free_port()}"/></boxes>'
        "</ccfast></configuration>")
    proc = await trio.lowlevel.open_process([sys.executable, "-m", "ccfast", "serve", "--config", str(path)],
                                            env=_env(), cwd=str(tmp_path), stderr=subprocess.PIPE)
    seen = b""
    try:
        with trio.fail_after(15):
            while b"ccfast starting" not in seen:  # logged once the signal handlers are installed
                seen += await proc.stderr.receive_some(4096)
        await trio.sleep(0.5)  # now retrying the box connection
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            rc = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (seen + await _read_all(proc.stderr)).decode()
    assert rc == 0, stderr
    assert "before the service was up" in stderr
