"""The scheduler's ``io_block`` mode: a busy scheduler waits in its io source's own epoll; timers,
ready sockets and the other trio tasks are still served."""

from __future__ import annotations

import select
import socket

import trio

from ccfast.sim.sched import Scheduler


class FakeIo:
    """An io source over one socket pair (the SocketHub interface: fd, wait, poll, flush)."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(self.a.fileno(), select.EPOLLIN)
        self.fd = self.ep.fileno()
        self.got: list[bytes] = []
        self.waits = 0

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        return bool(self.ep.poll(timeout, 1))

    def poll(self) -> None:
        for _fd, _ev in self.ep.poll(0, 8):
            self.got.append(self.a.recv(100))

    def flush(self) -> None:
        pass


async def test_io_block_serves_timers_sockets_and_other_tasks():
    for block in (0.0, 0.0005):
        sched = Scheduler(resolution=0.0005)
        sched.io_block = block
        io = sched.io = FakeIo()
        fired = []

        def tick(i: int) -> None:       # keeps the scheduler busy: a timer every 0.3 ms
            fired.append(i)
            if i < 200:
                sched.call_later(0.0003, tick, i + 1)
            if i == 50:
                io.b.send(b"hello")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sched.run)
            sched.call_soon(tick, 0)
            slept = 0
            with trio.fail_after(5):
                for _ in range(5):          # another task's sleeps are not starved
                    await trio.sleep(0.002)
                    slept += 1
                while len(fired) < 201:
                    await trio.sleep(0.001)
                while not io.got:
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
        assert fired == list(range(201)) and slept == 5
        assert io.got == [b"hello"]
        assert (io.waits > 0) == bool(block)
        io.a.close(), io.b.close(), io.ep.close()
