"""Route channel events from an ESL link to the offers watching those channels.

One inbound link carries the events of every channel on its box. Offers ``watch_cb(uuid, fn)``
the channels they care about; the link's reader hands each event to ``fn`` synchronously, in wire
order (no buffer, no task). Events of channels nobody watches are dropped here. After a link
outage ``Service.reconcile_box`` re-checks watched legs with ``uuid_exists``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("ccfast.router")


class CallbackWatch:
    """A watch that hands each event to ``fn(event)`` from the link's routing task (no buffer,
    no task on the watching side). ``fn`` must not block; its exceptions are its own to handle."""

    __slots__ = ("uuid", "fn", "_router")

    def __init__(self, router: ChannelRouter, uuid: str, fn) -> None:
        self.uuid, self.fn, self._router = uuid, fn, router

    def deliver(self, event) -> None:
        try:
            self.fn(event)
        except Exception:  # one watcher's bug must not stop the link's routing
            log.exception("watch of %s failed", self.uuid)

    def close(self) -> None:
        """Stop watching; idempotent."""
        router, self._router = self._router, None
        if router is not None:
            router._remove(self)


class ChannelRouter:
    """uuid → watches. Events for channels nobody watches are dropped here."""

    def __init__(self) -> None:
        self._watches: dict[str, list[CallbackWatch]] = {}

    def watch_cb(self, uuid: str, fn) -> CallbackWatch:
        """Deliver ``uuid``'s events to ``fn(event)`` until the returned watch is closed."""
        watch = CallbackWatch(self, uuid, fn)
        self._watches.setdefault(uuid, []).append(watch)
        return watch

    def _remove(self, watch) -> None:
        watches = self._watches.get(watch.uuid)
        if watches is not None and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.uuid]

    def route(self, uuid: str | None, event) -> bool:
        """Deliver ``event`` to every watch of ``uuid``; True if anyone watched."""
        if not uuid:
            return False
        watches = self._watches.get(uuid)
        if not watches:
            return False
        for watch in tuple(watches):  # a callback may close its watch
            watch.deliver(event)
        return True

    def __len__(self) -> int:
        return len(self._watches)
