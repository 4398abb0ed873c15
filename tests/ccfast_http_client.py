"""A minimal HTTP/1.1 client over trio for the httpd tests (real TCP, no extra dependency)."""

from __future__ import annotations

import trio


async def read_response(stream: trio.abc.Stream, buf: bytearray, head_only: bool = False):
    """Read one response from ``stream`` (leftover bytes stay in ``buf``).
    Returns (status, headers(lowercase), body) or None on EOF before any byte."""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if not buf:
                return None
            raise AssertionError(f"EOF inside response head: {bytes(buf)!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(head[0].split(" ")[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers["content-length"])
    while len(buf) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError("EOF inside response body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return status, headers, body


async def get(port: int, path: str, extra_headers: str = "", method: str = "GET"):
    """One request on a fresh connection with ``Connection: close``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        req = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n"
        await stream.send_all(req.encode())
        return await read_response(stream, bytearray(), head_only=method == "HEAD")
