"""The simulator's ``socket`` application, which the cluster tests move callers with
(``ccfast/sim/apps.py``): nested by ``sendmsg execute socket`` (the first session's app keeps the
channel, the nested one completes when its session ends) and as a dialplan fallback step
(``CallerSpec.after_socket``), with a failed connection going on in the dialplan."""

from __future__ import annotations

import trio

from ccfast.sim import CallerSpec, Simulator, Timings


class Listener:
    """A bare outbound-ESL listener: records each session's ``Unique-ID``; ``script(stream)``
    drives a session after ``connect``."""

    def __init__(self, script=None) -> None:
        self.sessions: list[str] = []
        self.ended = 0
        self.script = script
        self.address: tuple[str, int] | None = None

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
        task_status.started(self)
        await trio.serve_listeners(self._session, listeners)

    async def _session(self, stream) -> None:
        buf = b""
        await stream.send_all(b"connect\n\n")
        while b"\n\n" not in buf:
            buf += await stream.receive_some(65536)
        headers = dict(line.split(": ", 1) for line in buf.split(b"\n\n")[0].decode().splitlines() if ": " in line)
        self.sessions.append(headers["Unique-ID"])
        try:
            if self.script is not None:
                await self.script(stream)
        finally:
            self.ended += 1
            await stream.aclose()


async def wait_for(pred, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.01)


def app_names(ch) -> list[str]:
    return [a.name for a in ch.app_stack]


async def test_nested_socket_keeps_the_channel_until_the_second_session_ends():
    release = trio.Event()

    async def second(stream) -> None:
        await release.wait()

    async def first(stream) -> None:
        # what ccfast's redirect sends: the channel moves to the other listener
        await stream.send_all(b"myevents\n\n")
        await stream.send_all(("sendmsg\ncall-command: execute\nexecute-app-name: socket\n"
                               f"execute-app-arg: {b_side.address[0]}:{b_side.address[1]} async full\n\n").encode())
        await trio.sleep(0.3)  # then it closes its socket without `resume`

    b_side = Listener(second)
    a_side = Listener(first)
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=Timings.fast())
        await nursery.start(sim.serve)
        await nursery.start(a_side.serve)
        await nursery.start(b_side.serve)
        sim.dial_to = a_side.address
        rec = sim.spawn_caller(CallerSpec(after_socket=[("hangup", "NORMAL_CLEARING")]))
        await wait_for(lambda: b_side.sessions == [rec.member_uuid])
        ch = sim.switch.channels[rec.member_uuid]
        assert app_names(ch) == ["socket"] and ch.vars["socket_data"] == "%s:%d async full" % b_side.address
        await wait_for(lambda: a_side.ended == 1)
        await trio.sleep(0.2)
        assert ch.alive and app_names(ch) == ["socket"]  # the first session left; the app holds on
        release.set()  # the second session ends: the app returns, the dialplan goes on (hangup)
        with trio.fail_after(5):
            await rec.done.wait()
        assert rec.continued_in_dialplan and rec.hangup_cause == "NORMAL_CLEARING"
        nursery.cancel_scope.cancel()


async def test_socket_as_dialplan_fallback_steps_in_order():
    async def short(stream) -> None:
        await trio.sleep(0.2)

    dead = trio.socket.socket()
    await dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    dead_port = dead.getsockname()[1]
    there = Listener(short)
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=Timings.fast())
        await nursery.start(sim.serve)
        await nursery.start(there.serve)
        sim.dial_to = ("127.0.0.1", dead_port)
        rec = sim.spawn_caller(CallerSpec(after_socket=[
            ("socket", f"127.0.0.1:{dead_port} async full"),  # refused as well: next step
            ("socket", "%s:%d async full" % there.address),
            ("hangup", "USER_BUSY"),
        ]))
        await wait_for(lambda: there.sessions == [rec.member_uuid])
        with trio.fail_after(5):
            await rec.done.wait()  # that session ended: the step after it runs
        assert rec.socket_failed and rec.continued_in_dialplan and rec.hangup_cause == "USER_BUSY"
        assert there.sessions == [rec.member_uuid]  # each step ran once
        nursery.cancel_scope.cancel()
    dead.close()
