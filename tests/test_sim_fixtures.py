"""The simulator's bytes against the real FreeSWITCH captures, for the same call.

The scenario of ``external-dispatch-*.txt`` is replayed against the simulator (inbound client +
outbound socket member, agent ``loopback/agent_park_1/cc``); every frame type the capture has is
compared by header *names and order* (values such as uuids and dates naturally differ; the set of
``variable_*`` headers depends on the dialplan, so only their presence is compared).
"""

from __future__ import annotations

from pathlib import Path

import trio

from ccfast import esl
from ccfast.esl.inbound import InboundClient
from ccfast.esl.outbound import serve_outbound
from ccfast.sim import CallerSpec, Timings, open_simulator

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-esl"
if not FIX.exists():
    FIX = Path("/work/shared/fixtures/freeswitch-esl")


def _messages(data: bytes) -> list:
    p = esl.ClientProtocol(decoder="python")
    p.receive_data(data)
    return list(p.messages())


def _shape(ev) -> list[str]:
    """Header names in order; runs of variable_* collapse to one marker."""
    out = []
    for name, _ in ev.headers.pairs():
        if name.startswith("variable_"):
            if not out or out[-1] != "variable_*":
                out.append("variable_*")
        else:
            out.append(name)
    return out


def _first(msgs, name, pred=lambda e: True):
    for m in msgs:
        if isinstance(m, esl.Event) and not isinstance(m, esl.ChannelData) and m.name == name \
                and pred(m):
            return m
    raise AssertionError(f"no {name} event")


class _RawClient:
    """Records every byte the simulator sends on one inbound connection."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray()

    async def reader(self):
        while True:
            d = await self.stream.receive_some(65536)
            if not d:
                return
            self.buf += d


async def _replay():
    """Run the captured call against the simulator; returns (inbound bytes, outbound msgs)."""
    out_msgs: list = []
    done = trio.Event()
    t = Timings.fast()
    async with open_simulator(timings=t) as sim:
        stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
        raw = _RawClient(stream)
        ctl = InboundClient("127.0.0.1", sim.port, "ClueCon", liveness_interval=None)
        agent = "c7d2ec6d-d378-4aca-b407-89ae8a9c3b7d"

        send_lock = trio.Lock()     # two tasks write on the raw stream

        async def raw_send(data: bytes) -> None:
            async with send_lock:
                await stream.send_all(data)

        async def until(s, name):
            with trio.fail_after(3):
                while True:
                    ev = await s.events.get()
                    out_msgs.append(ev)
                    if getattr(ev, "name", None) == name:
                        return

        async def handler(s):
            cd = await s.connect()
            out_msgs.append(cd)
            await s.myevents()
            await s.subscribe(["PLAYBACK_START", "PLAYBACK_STOP"])
            await s.linger()
            await s.execute("answer", event_lock=True)
            await s.execute("playback", "local_stream://moh", event_lock=True)
            await until(s, "PLAYBACK_START")
            sent = ("bgapi originate {origination_uuid=%s,cc_queue=support@default,"
                    "origination_caller_id_name='Alice Smith',origination_caller_id_number=5551000,"
                    "ignore_early_media=true,originate_timeout=10}loopback/agent_park_1/cc &park()\n"
                    "Job-UUID: 1689c769-ee9f-46a9-b8d7-75aea8094435\n\n" % agent)
            await raw_send(sent.encode())
            with trio.fail_after(3):
                async for ev in ctl.events:
                    if ev.get("Job-UUID") == "1689c769-ee9f-46a9-b8d7-75aea8094435":
                        break
            await raw_send(f"api uuid_bridge {s.uuid} {agent}\n\n".encode())
            await until(s, "CHANNEL_BRIDGE")
            await ctl.api("uuid_kill", agent)
            while s.linger_notice is None:
                ev = await s.events.get()
                out_msgs.append(ev)
            while not s.events._closed:
                with trio.move_on_after(0.02) as sc:
                    ev = await s.events.get()
                    out_msgs.append(ev)
                if sc.cancelled_caught:
                    break
            await s.exit()
            out_msgs.append(s.disconnect_notice)
            done.set()

        async with trio.open_nursery() as n:
            n.start_soon(raw.reader)
            await n.start(ctl.run)
            await raw_send(
                b"auth ClueCon\n\nevent plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_PROGRESS "
                b"CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HANGUP "
                b"CHANNEL_HANGUP_COMPLETE CUSTOM callcenter::info\n\n")
            await trio.sleep(0.01)
            port = await n.start(serve_outbound, handler, "127.0.0.1", 0)
            sim.dial_to = ("127.0.0.1", port)
            sim.spawn_caller(CallerSpec(queue="support@default",
                                        variables={"cc_member_note": "joined via ext_queue"}))
            await trio.sleep(0.02)
            await raw_send(
                b"sendevent CUSTOM\nEvent-Subclass: callcenter::info\nCC-Queue: support@default\n"
                b"CC-Action: member-queue-start\nCC-Member-CID-Name: Alice Smith\n\n")
            with trio.fail_after(5):
                await done.wait()
            await trio.sleep(0.02)
            await raw_send(b"exit\n\n")
            await trio.sleep(0.02)
            n.cancel_scope.cancel()
    return bytes(raw.buf), out_msgs


async def test_inbound_frames_match_capture():
    real = _messages((FIX / "external-dispatch-inbound.txt").read_bytes())
    data, _ = await _replay()
    sim = _messages(data)
    assert isinstance(sim[0], esl.AuthRequest)
    replies = [m.reply_text for m in sim if isinstance(m, esl.CommandReply)]
    assert replies[:2] == ["+OK accepted", "+OK event listener enabled plain"]
    assert "+OK Job-UUID: 1689c769-ee9f-46a9-b8d7-75aea8094435" in replies
    bg = [m for m in sim if isinstance(m, esl.CommandReply) and m.reply_text.startswith("+OK Job")]
    assert bg[0].headers.pairs() == [("Content-Type", "command/reply"),
                                     ("Reply-Text", "+OK Job-UUID: 1689c769-ee9f-46a9-b8d7-75aea8094435"),
                                     ("Job-UUID", "1689c769-ee9f-46a9-b8d7-75aea8094435")]
    assert replies[-1] == "+OK bye"
    assert isinstance(sim[-1], esl.DisconnectNotice)
    assert sim[-1].body == real[-1].body == esl.GOODBYE
    agent = "c7d2ec6d-d378-4aca-b407-89ae8a9c3b7d"
    is_agent_a = lambda e: e.get("Unique-ID") == agent  # noqa: E731
    for name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
        assert _shape(_first(sim, name, is_agent_a)) == _shape(_first(real, name, is_agent_a)), name
    member_real = _first(real, "CHANNEL_BRIDGE")
    member_sim = _first(sim, "CHANNEL_BRIDGE")
    assert _shape(member_sim) == _shape(member_real)
    assert member_sim["Bridge-B-Unique-ID"] == agent
    assert member_sim["Other-Leg-Unique-ID"] == agent
    jr = _first(real, "BACKGROUND_JOB", lambda e: e.job_uuid.startswith("1689"))
    js = _first(sim, "BACKGROUND_JOB", lambda e: e.job_uuid.startswith("1689"))
    assert _shape(js) == _shape(jr)
    assert js.body == f"+OK {agent}\n" == jr.body
    assert js["Job-Command"] == jr["Job-Command"] == "originate"
    assert js["Job-Command-Arg"].startswith("{origination_uuid=c7d2ec6d")
    cr = _first(real, "CUSTOM")
    cs = _first(sim, "CUSTOM")
    shape_r, shape_s = _shape(cr), _shape(cs)
    assert shape_s[:2] == shape_r[:2] == ["Event-Subclass", "Command"]
    envelope = shape_r[shape_r.index("Event-UUID"):]
    assert shape_s[shape_s.index("Event-UUID"):] == envelope
    assert cs["Event-Subclass"] == "callcenter::info" and cs["CC-Queue"] == "support@default"
    # the sendevent reply comes before the event, and names it
    evuuid = cs["Event-UUID"]
    idx_reply = next(i for i, m in enumerate(sim) if isinstance(m, esl.CommandReply)
                     and m.reply_text == f"+OK {evuuid}")
    assert idx_reply < sim.index(cs)


async def test_outbound_frames_match_capture():
    real = _messages((FIX / "external-dispatch-outbound.txt").read_bytes())
    _, msgs = await _replay()
    cd_real, cd_sim = real[0], msgs[0]
    assert isinstance(cd_sim, esl.ChannelData)
    assert _shape(cd_sim) == _shape(cd_real)
    assert cd_sim.reply_text == "+OK\n" and cd_sim.socket_mode == "async" and cd_sim.control == "full"
    assert cd_sim["Channel-State"] == "CS_EXECUTE" and cd_sim["Answer-State"] == "ringing"
    assert cd_sim["variable_cc_queue"] == "support@default"
    assert cd_sim["variable_cc_member_note"] == "joined via ext_queue"
    assert cd_sim["variable_current_application"] == "socket"
    names_real = [m.name for m in real if isinstance(m, esl.Event) and not isinstance(m, esl.ChannelData)]
    names_sim = [m.name for m in msgs[1:] if isinstance(m, esl.Event)]
    assert names_sim == names_real
    for name in ("CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE",
                 "PLAYBACK_START", "PLAYBACK_STOP", "CHANNEL_UNPARK", "CHANNEL_STATE",
                 "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP"):
        assert _shape(_first(msgs, name)) == _shape(_first(real, name)), name
    pb_real = _first(real, "CHANNEL_EXECUTE_COMPLETE", lambda e: e.get("Application") == "playback")
    pb_sim = _first(msgs, "CHANNEL_EXECUTE_COMPLETE", lambda e: e.get("Application") == "playback")
    assert pb_sim["Application-Response"] == pb_real["Application-Response"] == "PLAYBACK ERROR"
    linger = [m for m in msgs if isinstance(m, esl.DisconnectNotice)]
    real_notices = [m for m in real if isinstance(m, esl.DisconnectNotice)]
    assert [n.headers.pairs()[:1] + [(k, v) for k, v in n.headers.pairs()[2:] if k != "Channel-Name" and k != "Controlled-Session-UUID"] for n in linger] == \
           [n.headers.pairs()[:1] + [(k, v) for k, v in n.headers.pairs()[2:] if k != "Channel-Name" and k != "Controlled-Session-UUID"] for n in real_notices]
