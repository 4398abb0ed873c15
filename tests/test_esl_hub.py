"""OutboundHub: every caller socket served from one task — against a raw TCP peer playing FreeSWITCH."""

from __future__ import annotations

import trio

from ccfast.esl import _commands as C
from ccfast.esl import _writers as W
from ccfast.esl._events import ChannelData, CommandReply, DisconnectNotice, Event
from ccfast.esl.hub import OutboundHub
from ccfast.esl._link import ConnectionLost


class Peer:
    """The FreeSWITCH side of one ``socket`` connection: reads our commands, writes frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def command(self) -> bytes:
        """The next command block (up to the blank line)."""
        with trio.fail_after(2):
            while b"\n\n" not in self.buf:
                data = await self.stream.receive_some(65536)
                assert data, "hub closed the connection"
                self.buf += data
        block, _, self.buf = self.buf.partition(b"\n\n")
        return block

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


async def start_hub(nursery, on_connection, **kw):
    hub = OutboundHub(on_connection, **kw)
    port = await nursery.start(hub.serve, "127.0.0.1", 0)
    return hub, port


async def test_replies_in_order_events_to_the_handler_then_none_when_the_peer_closes():
    seen, replies = [], []
    ticks = []

    def on_connection(conn):
        conn.handler = seen.append
        conn.post(C.Connect(), replies.append)
        conn.post(C.MyEvents(None, None), replies.append)

    async with trio.open_nursery() as n:
        hub, port = await start_hub(n, on_connection, after_tick=lambda: ticks.append(1))
        peer = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        assert await peer.command() == b"connect"
        assert await peer.command() == b"myevents"
        await peer.send(W.write_connect_reply({"Event-Name": "CHANNEL_DATA", "Unique-ID": "u1", "variable_cc_queue": "q"})
                        + W.write_command_reply("+OK Events Enabled")
                        + W.write_event_plain({"Event-Name": "DTMF", "Unique-ID": "u1", "DTMF-Digit": "5"}))
        with trio.fail_after(2):
            while len(seen) < 1:
                await trio.sleep(0.01)
        assert isinstance(replies[0], ChannelData) and replies[0].get("variable_cc_queue") == "q"
        assert isinstance(replies[1], CommandReply) and replies[1].reply_text == "+OK Events Enabled"
        assert isinstance(seen[0], Event) and seen[0].get("DTMF-Digit") == "5"
        await peer.stream.aclose()
        with trio.fail_after(2):
            while seen[-1] is not None:
                await trio.sleep(0.01)
        assert seen.count(None) == 1 and hub.connections == {} and ticks
        n.cancel_scope.cancel()


async def test_close_fails_pending_replies_and_a_disconnect_notice_reaches_the_handler():
    conns, seen, replies = [], [], []

    def on_connection(conn):
        conns.append(conn)
        conn.handler = seen.append
        conn.post(C.Linger(None), replies.append)
        conn.post(C.Resume(), replies.append)

    async with trio.open_nursery() as n:
        hub, port = await start_hub(n, on_connection)
        peer = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        await peer.command()
        await peer.send(W.write_command_reply("+OK will linger")
                        + W.write_disconnect_notice(controlled_session_uuid="u1", disposition="linger"))
        with trio.fail_after(2):
            while not seen:
                await trio.sleep(0.01)
        assert isinstance(seen[0], DisconnectNotice) and seen[0].disposition == "linger"
        conns[0].close()
        assert isinstance(replies[1], ConnectionLost) and seen[-1] is None and conns[0].closed
        try:
            conns[0].post(C.Resume())
        except ConnectionLost:
            pass
        else:
            raise AssertionError("post after close must raise ConnectionLost")
        with trio.fail_after(2):
            assert await peer.stream.receive_some(100) in (b"resume\n\n", b"")  # written before close, or nothing
        n.cancel_scope.cancel()


async def test_a_malformed_frame_ends_only_that_connection():
    seen: dict[int, list] = {0: [], 1: []}
    order = []

    def on_connection(conn):
        i = len(order)
        order.append(conn)
        conn.handler = seen[i].append
        conn.post(C.Connect())

    async with trio.open_nursery() as n:
        hub, port = await start_hub(n, on_connection)
        bad = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        await bad.command()
        good = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        await good.command()
        await bad.send(b"Content-Type: text/event-plain\nContent-Length: nope\n\n")
        with trio.fail_after(2):
            while None not in seen[0]:
                await trio.sleep(0.01)
        await good.send(W.write_connect_reply({"Event-Name": "CHANNEL_DATA", "Unique-ID": "u2"})
                        + W.write_event_plain({"Event-Name": "CHANNEL_HANGUP", "Unique-ID": "u2"}))
        with trio.fail_after(2):
            while not seen[1]:
                await trio.sleep(0.01)
        assert seen[1][0].name == "CHANNEL_HANGUP" and not order[1].closed
        n.cancel_scope.cancel()


async def test_a_handler_that_raises_ends_its_call_and_the_hub_serves_the_next():
    served = []

    def on_connection(conn):
        if not served:
            served.append("boom")
            raise RuntimeError("handler bug")
        served.append(conn)
        conn.post(C.Connect())

    async with trio.open_nursery() as n:
        hub, port = await start_hub(n, on_connection)
        first = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(2):
            assert await first.receive_some(100) == b""  # closed by the hub
        second = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        assert await second.command() == b"connect"
        n.cancel_scope.cancel()


async def test_what_the_kernel_does_not_take_is_written_when_the_peer_reads_again():
    conns = []
    big = "x" * 60_000

    def on_connection(conn):
        conns.append(conn)

    async with trio.open_nursery() as n:
        hub, port = await start_hub(n, on_connection)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(2):
            while not conns:
                await trio.sleep(0.01)
        conn = conns[0]
        for i in range(100):  # ~6 MB: more than the socket buffers hold
            conn.post(C.Api(f"echo {i} {big}"))
        assert conn._blocked and not conn.closed
        total = 0
        expected = sum(len(C.Api(f"echo {i} {big}").encode()) for i in range(100))
        with trio.fail_after(10):
            while total < expected:
                total += len(await stream.receive_some(1 << 20))
        assert total == expected
        with trio.fail_after(2):
            while conn._blocked:
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
