"""The simulator's fast command reader gives what the reference ServerProtocol gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ccfast import esl
from ccfast.sim.wire import CommandReader, LazySendEvent

FRAMES = [
    b"auth ClueCon\n\n",
    b"event plain CHANNEL_ANSWER CUSTOM callcenter::info\n\n",
    b"api uuid_bridge a b\n\n",
    b"bgapi originate {x=1}sim/agent/a1 &park()\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n",
    b"sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: local_stream://moh\n\n",
    b"sendmsg abc\ncall-command: execute\nexecute-app-name: x\ncontent-length: 5\n\nhello",
    b"sendevent CUSTOM\nEvent-Subclass: callcenter::info\nCC-Action: agent-offering\n\n",
    b"sendevent CUSTOM\nevent-subclass: a::b\nEvent-Subclass: c::d\nUnique-ID: u1\nunique-id: u2\n"
    b"Content-Length: 3\n\nabc",
    b"sendevent CUSTOM\nName:value\nx:y: z\n\n",
    b"sendevent CUSTOM\nBad Name: v\n\n",
    b"sendevent A B\nX: 1\n\n",
    b"sendevent CUSTOM\r\nX: 1\r\n\n",
    b"sendevent CUSTOM\nX: caf\xc3\xa9\n\n",
    b"sendevent CUSTOM\nContent-Length: 2\nContent-Length: 7\n\nab",
    b"sendevent CUSTOM\n\n",
    b"sendevent CUSTOM\nX: a\rb\nUnique-ID: u9\n\n",
    b"sendevent CUSTOM\nUnique-ID: u3\nEvent-Subclass: s::1\ncontent-length: 1\n\nz",
    b"myevents plain\n\nlinger 5\n\nresume\n\nconnect\n\nexit\n\n",
    b"\n\r\nnoevents\n\n",
    b"filter Unique-ID abc\n\nnixevent ALL\n\n",
    b"bogus thing\nHeader: v\n\n",
    b"sendmsg\r\ncall-command: execute\r\nexecute-app-name: park\r\n\n",
    b"api status\nHeader:nospace\nX: y\n\n",
    b"sendmsg u1\nCONTENT-LENGTH: 3\nx: y\n\nabc",
    b"api  uuid_kill   abc  \n\n",
    b"bgapi originate {a=1}sim/a &park()\nJob-UUID: j1\njob-uuid: j2\n\n",
    b"bgapi status x\nJob-UUID: \n\n",
    b"bgapi status x\nX: \xff\n\n",
    b"API uuid_kill abc\n\n",
]
BAD = [
    b"sendevent CUSTOM\n: novalue\n\n",
    b"sendevent CUSTOM\nX: \xff\n\n",
    b"\xff\xfe\n\n",
    b"sendmsg\ncontent-length: x\n\n",
]


def _ref(data: bytes, chunks: list[int]):
    p = esl.ServerProtocol()
    out = []
    try:
        for a, b in zip([0] + chunks, chunks + [len(data)]):
            p.receive_data(data[a:b])
            out.extend(p.commands())
    except esl.ProtocolError as exc:
        out.append(("error", type(exc)))
    return out


def _fast(data: bytes, chunks: list[int], use_c: bool = True):
    r = CommandReader(use_c=use_c)
    out = []
    try:
        for a, b in zip([0] + chunks, chunks + [len(data)]):
            r.feed(data[a:b])
            for cmd in r.commands():
                if isinstance(cmd, LazySendEvent):
                    full = cmd.full()
                    assert cmd.name == full.name and cmd.subclass == (full.subclass or "")
                    uid = [v for n, v in full.headers if n.lower() == "unique-id"]
                    assert cmd.unique_id == (uid[-1] if uid else None)
                    cmd = full
                out.append(cmd)
    except esl.ProtocolError as exc:
        out.append(("error", type(exc)))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(FRAMES + BAD), min_size=1, max_size=6), st.data())
def test_same_commands_as_reference(frames, data):
    raw = b"".join(frames)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=4))))
    want = _ref(raw, cuts)
    assert _fast(raw, cuts) == want                 # C framer (when built)
    assert _fast(raw, cuts, use_c=False) == want    # the Python one


def test_sendevent_stays_lazy_until_needed():
    r = CommandReader()
    r.feed(FRAMES[7])
    (cmd,) = list(r.commands())
    assert isinstance(cmd, LazySendEvent)
    assert (cmd.name, cmd.subclass, cmd.unique_id) == ("CUSTOM", "a::b", "u2")
    assert cmd.full().body == b"abc"


_TEXT = st.text(alphabet=st.sampled_from(list("ab =,{}()'\"&|/%2F%zé\n\t:;@")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_c_split_args_matches_the_loop(text):
    from ccfast.sim import _render
    from ccfast.sim.dialstring import _split_args_loop

    assert _render.split_args(text) == _split_args_loop(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | _TEXT)
def test_c_render_line_matches_the_python_rendering(value):
    from ccfast.esl._urlcodec import url_encode
    from ccfast.sim import _render

    want = f"variable_x: {url_encode(value) if value != '' else '_undef_'}\n".encode("ascii")
    assert _render.render_line("variable_x", value) == want
