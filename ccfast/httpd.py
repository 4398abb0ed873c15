"""A small HTTP/1.1 server on trio for ``/metrics`` (Prometheus) and ``/healthz``.

Contract:
- ``serve_http`` runs in the caller's nursery (no thread, not prometheus-client's server) until
  cancelled; ``task_status.started(listeners)`` reports the bound sockets (port 0 works).
- GET and HEAD only; ``/metrics`` → the registry in the text format (OpenMetrics when the
  ``Accept`` header asks for it, gzip when accepted); ``/healthz`` → 200 JSON ``{"status": "ok"}``
  or 503 with ``reasons``; ``/`` → a short index; anything else → 404.
- Robust against bad clients: a request head larger than ``max_head_bytes`` → 431, malformed →
  400, unsupported version → 505, request bodies refused (413/501), a head not complete within
  ``head_timeout_s`` → 408 and close, an idle keep-alive connection closed after
  ``idle_timeout_s``, a response not written within ``write_timeout_s`` → connection dropped,
  more than ``max_connections`` at once → 503 and close. One client's problem never stops the
  server. Keep-alive: HTTP/1.1 unless ``Connection: close``; HTTP/1.0 only with ``keep-alive``.
- A scrape calls the snapshot provider in the trio thread (dispatcher state is not thread-safe),
  then encodes in one worker thread (prometheus-client needs ~20 µs per series: 100 queues are
  ~18,000 series, a third of a second that must not stall dispatch); ``render_in_thread=False``
  encodes inline. Numbers: bench/metrics_facade.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate

import trio

from . import __version__
from .metrics import Metrics

log = logging.getLogger("ccfast.httpd")

_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(r"^HTTP/(\d)\.(\d)$")


@dataclasses.dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 8192
    head_timeout_s: float = 10.0  # from the first byte of a request to its complete head
    idle_timeout_s: float = 15.0  # keep-alive: waiting for the next request's first byte
    write_timeout_s: float = 10.0
    max_connections: int = 32
    max_requests_per_connection: int = 10_000
    gzip_min_bytes: int = 1024
    render_in_thread: bool = True  # encode /metrics in a worker thread (see module docstring)


@dataclasses.dataclass(slots=True)
class Health:
    """What the service reports for ``/healthz`` (returned by its health provider)."""

    esl_links: Mapping[str, bool]  # box → connected and authenticated
    store_lag_s: float | None = None  # age of the oldest journal entry not yet written
    store_backlog: int = 0  # journal entries not yet written
    last_dispatch: float | None = None  # Unix time of the last dispatch pass
    problems: Sequence[str] = ()  # anything else the service considers unhealthy


def health_status(health: Health, now: float, max_store_lag_s: float = 30.0) -> tuple[bool, dict]:
    """(healthy, JSON body). Unhealthy when no ESL link is configured, any link is down, the
    store lags more than ``max_store_lag_s``, or the service lists problems. The last dispatch
    time is reported but not judged: with no polling, a quiet dispatcher is not a stuck one."""
    reasons: list[str] = []
    if not health.esl_links:
        reasons.append("no ESL link configured")
    for box, up in sorted(health.esl_links.items()):
        if not up:
            reasons.append(f"ESL link to {box} is down")
    if health.store_lag_s is not None and health.store_lag_s > max_store_lag_s:
        reasons.append(f"store lags {health.store_lag_s:.1f} s behind (limit {max_store_lag_s:g} s)")
    reasons.extend(health.problems)
    body = {
        "status": "unhealthy" if reasons else "ok",
        "reasons": reasons,
        "esl_links": dict(health.esl_links),
        "store_lag_s": health.store_lag_s,
        "store_backlog": health.store_backlog,
        "last_dispatch": health.last_dispatch,
        "last_dispatch_age_s": None if health.last_dispatch is None else round(now - health.last_dispatch, 3),
    }
    return not reasons, body


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(slots=True)
class _Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens


def parse_head(head: bytes) -> _Request:
    """Parse a request head (without the blank line). Raises ``_BadRequest`` with the status."""
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _BadRequest(400, "malformed request line")
    method, target, version_text = parts
    if not _TOKEN.match(method):
        raise _BadRequest(400, "malformed method")
    match = _VERSION.match(version_text)
    if match is None:
        raise _BadRequest(400, "malformed HTTP version")
    version = (int(match.group(1)), int(match.group(2)))
    if version[0] != 1:
        raise _BadRequest(505, f"HTTP/{version[0]}.{version[1]} is not supported")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise _BadRequest(400, "obsolete header line folding")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise _BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise _BadRequest(400, "conflicting Content-Length")
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    if "transfer-encoding" in headers:
        raise _BadRequest(501, "request bodies are not accepted")
    length = headers.get("content-length", "0").split(",")[0].strip()
    if not length.isdigit():
        raise _BadRequest(400, "malformed Content-Length")
    if int(length) > 0:
        raise _BadRequest(413, "request bodies are not accepted")
    if target.startswith(("http://", "https://")):  # absolute-form
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return _Request(method, target, version, headers)


def _accepts_gzip(value: str) -> bool:
    for item in value.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


def _response(status: int, body: bytes, content_type: str, keep_alive: bool, head_only: bool = False,
              extra: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Date: {formatdate(usegmt=True)}",
        f"Server: ccfast/{__version__}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines.extend(f"{k}: {v}" for k, v in extra)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


_INDEX = b"ccfast\n/metrics  Prometheus metrics\n/healthz  health (200 ok / 503 unhealthy, JSON)\n"


class _Server:
    def __init__(self, metrics: Metrics, health_provider: Callable[[], Health], limits: HttpLimits,
                 clock: Callable[[], float], max_store_lag_s: float) -> None:
        self.metrics = metrics
        self.health_provider = health_provider
        self.limits = limits
        self.clock = clock
        self.max_store_lag_s = max_store_lag_s
        self.slots = trio.Semaphore(limits.max_connections)
        self.render_limiter = trio.CapacityLimiter(1)  # one encoding thread at a time

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection; never lets an exception reach ``serve_listeners``."""
        try:
            if self.slots.value == 0:
                await self._send(stream, _response(503, b"too many connections\n", "text/plain", False))
                return
            async with self.slots:
                await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        except Exception:  # a bug must not take the metrics endpoint down
            log.exception("http connection failed")
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> bool:
        with trio.move_on_after(self.limits.write_timeout_s):
            await stream.send_all(data)
            return True
        return False  # slow reader: give up on this connection

    async def _read_head(self, stream: trio.abc.Stream, buf: bytearray, first: bool) -> bytes | None:
        """The next request head (bytes before the blank line), None on a clean EOF/idle close.
        Raises ``_BadRequest`` (408/431/400) when the client misbehaves."""
        limits = self.limits
        deadline = None if not buf else trio.current_time() + limits.head_timeout_s
        idle_deadline = trio.current_time() + (limits.head_timeout_s if first else limits.idle_timeout_s)
        while True:
            end = buf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = buf.find(b"\n\n")
                sep = 2
            if end >= 0:
                if end > limits.max_head_bytes:
                    raise _BadRequest(431, "request head too large")
                head = bytes(buf[:end])
                del buf[: end + sep]
                return head
            if len(buf) > limits.max_head_bytes:
                raise _BadRequest(431, "request head too large")
            with trio.move_on_at(deadline if deadline is not None else idle_deadline) as scope:
                chunk = await stream.receive_some(4096)
            if scope.cancelled_caught:
                if buf:
                    raise _BadRequest(408, "request head not received in time")
                return None
            if not chunk:
                if buf:
                    raise _BadRequest(400, "connection closed in the middle of a request")
                return None
            if deadline is None:  # the request started: the whole head must arrive in time
                deadline = trio.current_time() + limits.head_timeout_s
            buf += chunk

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        buf = bytearray()
        for n in range(self.limits.max_requests_per_connection):
            try:
                head = await self._read_head(stream, buf, first=n == 0)
                if head is None:
                    return
                request = parse_head(head)
            except _BadRequest as exc:
                await self._send(stream, _response(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8", False))
                return
            keep_alive = request.keep_alive and n + 1 < self.limits.max_requests_per_connection
            status, body, ctype, extra = await self.route(request)
            if status == 405:
                keep_alive = False
            data = _response(status, body, ctype, keep_alive, request.method == "HEAD", extra)
            log.debug("http %s %s -> %d (%d bytes)", request.method, request.target, status, len(body))
            if not await self._send(stream, data) or not keep_alive:
                return

    def _encode(self, accept: str, state: list, want_gzip: bool) -> tuple[bytes, str, bool]:
        body, ctype = self.metrics.render(accept, state)
        if want_gzip and len(body) >= self.limits.gzip_min_bytes:
            return gzip.compress(body, compresslevel=5), ctype, True
        return body, ctype, False

    async def route(self, request: _Request) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        if request.method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", "text/plain; charset=utf-8", [("Allow", "GET, HEAD")]
        path = request.target.split("?", 1)[0]
        if path == "/metrics":
            accept = request.headers.get("accept", "")
            want_gzip = _accepts_gzip(request.headers.get("accept-encoding", ""))
            try:
                state = self.metrics.scrape_state()  # here: the provider reads dispatcher state
                if self.limits.render_in_thread:  # encoding costs ~20 µs per series: keep the loop free
                    body, ctype, gz = await trio.to_thread.run_sync(
                        self._encode, accept, state, want_gzip, limiter=self.render_limiter)
                else:
                    body, ctype, gz = self._encode(accept, state, want_gzip)
            except Exception as exc:
                log.exception("rendering /metrics failed")
                return 500, f"metrics failed: {type(exc).__name__}: {exc}\n".encode(), "text/plain; charset=utf-8", []
            extra: list[tuple[str, str]] = [("Vary", "Accept-Encoding")]
            if gz:
                extra.append(("Content-Encoding", "gzip"))
            return 200, body, ctype, extra
        if path == "/healthz":
            now = self.clock()
            try:
                healthy, info = health_status(self.health_provider(), now, self.max_store_lag_s)
            except Exception as exc:
                log.exception("health provider failed")
                healthy, info = False, {"status": "unhealthy",
                                        "reasons": [f"health provider failed: {type(exc).__name__}: {exc}"]}
            body = (json.dumps(info, sort_keys=True) + "\n").encode()
            return (200 if healthy else 503), body, "application/json", []
        if path == "/":
            return 200, _INDEX, "text/plain; charset=utf-8", []
        return 404, b"not found\n", "text/plain; charset=utf-8", []


async def serve_http(
    host: str,
    port: int,
    metrics: Metrics,
    health_provider: Callable[[], Health],
    task_status=trio.TASK_STATUS_IGNORED,
    *,
    limits: HttpLimits = HttpLimits(),
    clock: Callable[[], float] = time.time,
    max_store_lag_s: float = 30.0,
) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` until cancelled.

    ``health_provider()`` is called per ``/healthz`` request (in the trio thread, must not block).
    ``task_status.started(listeners)`` as ``trio.serve_tcp`` does; ``bound_port(listeners)``
    gives the port chosen for ``port=0``.
    """
    server = _Server(metrics, health_provider, limits, clock, max_store_lag_s)
    listeners = await trio.open_tcp_listeners(port, host=host)
    await trio.serve_listeners(server.handle, listeners, task_status=task_status)


def bound_port(listeners: Sequence[trio.SocketListener]) -> int:
    return listeners[0].socket.getsockname()[1]


__all__ = ["serve_http", "Health", "HttpLimits", "health_status", "bound_port", "parse_head"]
