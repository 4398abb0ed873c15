"""OutboundSession.on_events: events go to a callback from the reader, in order, then None."""

from __future__ import annotations

import trio

from ccfast.esl import _writers as W
from ccfast.esl.outbound import serve_outbound


async def test_events_reach_the_handler_in_order_then_none():
    got: list = []
    done = trio.Event()

    async def handler(session):
        await session.connect()
        await session.myevents()
        await trio.sleep(0.05)  # the first event is queued before the handler is set

        def on(msg):
            got.append(None if msg is None else msg.get("Event-Name") if hasattr(msg, "get") else type(msg).__name__)
            if msg is None:
                done.set()

        session.on_events(on)
        with trio.fail_after(5):
            await done.wait()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_outbound, handler, "127.0.0.1", 0)
        fs = await trio.open_tcp_stream("127.0.0.1", port)
        buf = b""

        async def expect(word: bytes) -> None:
            nonlocal buf
            while word not in buf:
                buf += await fs.receive_some(4096)
            buf = buf[buf.index(word) + len(word):]

        await expect(b"connect\n\n")
        await fs.send_all(W.write_connect_reply({"Event-Name": "CHANNEL_DATA", "Unique-ID": "u1"}))
        await expect(b"myevents\n\n")
        await fs.send_all(W.write_command_reply("+OK Events Enabled"))
        await fs.send_all(W.write_event_plain({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": "u1"}))
        await trio.sleep(0.2)
        await fs.send_all(W.write_event_plain({"Event-Name": "DTMF", "Unique-ID": "u1", "DTMF-Digit": "1"}))
        await fs.send_all(W.write_disconnect_notice(controlled_session_uuid="u1", disposition="disconnect"))
        await fs.aclose()
        with trio.fail_after(5):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert got == ["CHANNEL_ANSWER", "DTMF", "DisconnectNotice", None]
