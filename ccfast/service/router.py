"""Route channel events from an ESL link to the tasks watching those channels.

One inbound link carries the events of every channel on its box. Offer tasks and member sessions
``watch(uuid)`` the channels they care about and receive that channel's events on a private
memory channel. Routing never blocks the link's reader: each watcher has a bounded buffer, and an
event that finds it full is dropped and counted (``Watch.overflowed``). One channel produces a
handful of events per call, far below ``WATCH_BUFFER``, so a drop means a stuck watcher; after a
link outage ``Service.reconcile_box`` re-checks watched legs with ``uuid_exists`` instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio

WATCH_BUFFER = 256


class Watch:
    """The receiving side of one channel watch."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self._send, self.receive = trio.open_memory_channel(WATCH_BUFFER)
        self.overflowed = 0

    def deliver(self, event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.overflowed += 1

    def close(self) -> None:
        self._send.close()


class ChannelRouter:
    """uuid → watches. Events for channels nobody watches are dropped here."""

    def __init__(self) -> None:
        self._watches: dict[str, list[Watch]] = {}

    @contextlib.contextmanager
    def watch(self, uuid: str) -> Iterator[Watch]:
        watch = Watch(uuid)
        self._watches.setdefault(uuid, []).append(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(uuid)
            if watches is not None:
                watches.remove(watch)
                if not watches:
                    del self._watches[uuid]
            watch.close()

    def route(self, uuid: str | None, event) -> bool:
        """Deliver ``event`` to every watch of ``uuid``; True if anyone watched."""
        if not uuid:
            return False
        watches = self._watches.get(uuid)
        if not watches:
            return False
        for watch in watches:
            watch.deliver(event)
        return True

    def __len__(self) -> int:
        return len(self._watches)
