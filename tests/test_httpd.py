"""The trio HTTP handler: protocol handling, bad and slow clients, limits, health evaluation."""

import gzip
import json

import pytest
import trio
import trio.testing

from ccfast.httpd import Health, HttpLimits, _Server, bound_port, health_status, parse_head, serve_http
from ccfast.metrics import Metrics
from .ccfast_http_client import get, read_response

FAST = HttpLimits(head_timeout_s=0.3, idle_timeout_s=0.3, write_timeout_s=0.3, max_head_bytes=1024)


async def start(nursery, limits=HttpLimits(), health=None, metrics=None):
    m = metrics or Metrics(process_metrics=False)
    provider = health or (lambda: Health({"fs1": True}))
    listeners = await nursery.start(lambda task_status: serve_http(
        "127.0.0.1", 0, m, provider, task_status=task_status, limits=limits))
    return bound_port(listeners)


async def raw(port, data: bytes, read_all=True) -> bytes:
    """Send raw bytes, return everything until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = bytearray()
        with trio.fail_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return bytes(out)
                out += chunk


async def test_keep_alive_and_pipelining(nursery):
    port = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        buf = bytearray()
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = await read_response(stream, buf)
        assert status == 200 and headers["connection"] == "keep-alive"
        # two pipelined requests in one write, the second closing
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        status, _, body = await read_response(stream, buf)
        assert status == 200 and b"ccfast_build_info" in body
        status, headers, _ = await read_response(stream, buf)
        assert status == 404 and headers["connection"] == "close"
        with trio.fail_after(2):
            assert await stream.receive_some(10) == b""  # server closed


async def test_http10_closes_unless_keep_alive(nursery):
    port = await start(nursery)
    out = await raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        buf = bytearray()
        for _ in range(2):
            await stream.send_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = await read_response(stream, buf)
            assert status == 200 and headers["connection"] == "keep-alive"


async def test_head_method_and_query_string(nursery):
    port = await start(nursery)
    status, headers, body = await get(port, "/metrics?debug=1", method="HEAD")
    assert status == 200 and int(headers["content-length"]) > 100 and body == b""
    status, _, body = await get(port, "/metrics?debug=1")
    assert status == 200 and b"ccfast_" in body


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    (b"GET /metrics HTTX/1.1\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 431),
])
async def test_bad_requests_get_specific_status_and_close(nursery, request_bytes, status):
    port = await start(nursery, limits=FAST)
    out = await raw(port, request_bytes)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:80]
    assert b"Connection: close" in out
    if status == 405:
        assert b"Allow: GET, HEAD" in out
    # the server is still fine afterwards
    ok, _, _ = await get(port, "/healthz")
    assert ok == 200


async def test_endless_header_stream_is_cut_at_the_limit(nursery):
    port = await start(nursery, limits=FAST)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\n")
        out = bytearray()
        with trio.fail_after(5):
            try:
                for _ in range(100):  # keep sending header lines without ever ending the head
                    await stream.send_all(b"X-Filler: " + b"y" * 100 + b"\r\n")
            except trio.BrokenResourceError:
                pass  # the server answered and closed while we were still sending
            while chunk := await stream.receive_some(65536):
                out += chunk
    assert out.startswith(b"HTTP/1.1 431 ")


async def test_slow_head_gets_408_and_idle_connection_is_closed(nursery):
    port = await start(nursery, limits=FAST)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost:")  # ... and nothing more
        with trio.fail_after(3):
            out = await stream.receive_some(65536)
    assert out.startswith(b"HTTP/1.1 408 ")
    # a connection that never sends anything is closed after the timeout, without a response
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with trio.fail_after(3):
            assert await stream.receive_some(10) == b""


async def test_client_that_does_not_read_is_dropped():
    m = Metrics(process_metrics=False)
    server = _Server(m, lambda: Health({"fs1": True}), FAST, lambda: 0.0, 30.0)
    client, server_side = trio.testing.lockstep_stream_pair()  # send_all blocks until the peer reads

    async def write_request():
        await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")

    with trio.fail_after(3):
        async with trio.open_nursery() as n:
            n.start_soon(write_request)
            await server.handle(server_side)  # returns after write_timeout_s: nobody reads
    with pytest.raises(trio.ClosedResourceError):
        await server_side.send_all(b"x")


async def test_connection_limit(nursery):
    port = await start(nursery, limits=HttpLimits(max_connections=1, idle_timeout_s=5))
    holder = await trio.open_tcp_stream("127.0.0.1", port)
    async with holder:
        buf = bytearray()
        await holder.send_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert (await read_response(holder, buf))[0] == 200  # holds the only slot (keep-alive)
        status, _, body = await get(port, "/healthz")
        assert status == 503 and b"too many connections" in body
    with trio.fail_after(3):  # the slot is released when the holder leaves
        while (await get(port, "/healthz"))[0] != 200:
            await trio.sleep(0.02)


async def test_gzip_and_openmetrics_negotiation(nursery):
    m = Metrics()  # with process metrics: body > gzip_min_bytes
    port = await start(nursery, metrics=m)
    status, headers, body = await get(port, "/metrics", "Accept-Encoding: gzip\r\n")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert b"ccfast_build_info" in gzip.decompress(body)
    status, headers, body = await get(port, "/metrics", "Accept-Encoding: gzip;q=0\r\n")
    assert "content-encoding" not in headers and b"ccfast_build_info" in body
    status, headers, body = await get(port, "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n")
    assert headers["content-type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")


async def test_health_provider_failure_is_503(nursery):
    def broken():
        raise RuntimeError("store gone")

    port = await start(nursery, health=broken)
    status, _, body = await get(port, "/healthz")
    assert status == 503 and json.loads(body)["reasons"] == ["health provider failed: RuntimeError: store gone"]
    assert (await get(port, "/"))[0] == 200


def test_health_status_rules():
    ok, body = health_status(Health({"fs1": True}, store_lag_s=1.0, last_dispatch=90.0), now=100.0)
    assert ok and body["last_dispatch_age_s"] == 10.0
    ok, body = health_status(Health({}), now=0)
    assert not ok and body["reasons"] == ["no ESL link configured"]
    ok, body = health_status(Health({"a": False, "b": True}, store_lag_s=45.5, problems=["queue owner lost"]),
                             now=0, max_store_lag_s=30)
    assert not ok
    assert body["reasons"] == ["ESL link to a is down", "store lags 45.5 s behind (limit 30 s)", "queue owner lost"]


def test_parse_head_details():
    r = parse_head(b"GET http://h:9/metrics?x HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, Upgrade")
    assert r.target == "/metrics?x" and r.keep_alive and r.headers["host"] == "h"
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive
    assert not parse_head(b"GET / HTTP/1.0").keep_alive


async def test_inline_rendering_gives_the_same_exposition(nursery):
    m = Metrics(process_metrics=False)
    m.member_ended("q", "answered", 3, 0)
    port_thread = await start(nursery, metrics=m)
    port_inline = await start(nursery, metrics=m, limits=HttpLimits(render_in_thread=False))
    _, _, body_thread = await get(port_thread, "/metrics")
    _, _, body_inline = await get(port_inline, "/metrics")
    assert body_thread == body_inline and b'ccfast_queue_calls_total{outcome="answered",queue="q"} 1.0' in body_inline
