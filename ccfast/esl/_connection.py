"""Sans-IO ESL protocol objects, one per connection (h11 style: no sockets, no clocks).

Client role (:class:`ClientProtocol`; ccfast's inbound link and each outbound member socket)::

    proto = ClientProtocol()
    sock.send(proto.send(Auth("ClueCon")))        # commands -> bytes
    proto.receive_data(await sock.receive())     # b"" at end of stream
    for msg in proto.messages():                 # Event / CommandReply / ApiResponse / ...
        ...

Server role (:class:`ServerProtocol`; the simulator and the control port)::

    proto = ServerProtocol()
    proto.receive_data(data)
    for cmd in proto.commands():                  # Auth / Api / BgApi / SendMsg / RawCommand ...
        sock.send(proto.send(CommandReply("+OK accepted")))

``next_message()`` / ``next_command()`` return an item, :data:`NEED_DATA` (feed more bytes) or
:data:`CLOSED` (the peer closed and everything was consumed). Malformed peer input raises
:class:`RemoteProtocolError` (and keeps raising: drop the connection). ``send`` after
:meth:`close`, after end of stream, or (client) after ``exit`` raises
:class:`LocalProtocolError`. Replies are not matched to commands here: FreeSWITCH answers in
FIFO order and the connection layer keeps that queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _readers
from ._commands import Command, Exit
from ._events import Event, Message
from ._writers import write_message
from .errors import LocalProtocolError

try:  # the Cython decoder is the default when it is built
    from . import _fast  # type: ignore[attr-defined]

    HAVE_CYTHON = True
except ImportError:  # pragma: no cover - depends on the build
    _fast = None
    HAVE_CYTHON = False


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False


NEED_DATA: Any = _Sentinel("NEED_DATA")
CLOSED: Any = _Sentinel("CLOSED")


def make_message_reader(
    decoder: str = "auto",
    max_header_size: int = _readers.DEFAULT_MAX_HEADER_SIZE,
    max_body_size: int = _readers.DEFAULT_MAX_BODY_SIZE,
):
    """A client-role reader: ``"cython"``, ``"python"`` or ``"auto"`` (Cython when built)."""
    if decoder == "python" or (decoder == "auto" and not HAVE_CYTHON):
        return _readers.MessageReader(max_header_size, max_body_size)
    if decoder in ("cython", "auto"):
        if _fast is None:
            raise LocalProtocolError("the Cython decoder (ccfast.esl._fast) is not built")
        return _fast.MessageReader(max_header_size, max_body_size)
    raise LocalProtocolError(f"unknown decoder {decoder!r}")


class _Base:
    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close` or once the peer's end of stream was consumed."""
        return self._closed or self._reader.at_eof

    def close(self) -> None:
        """Mark the connection closed locally; later ``send`` calls raise."""
        self._closed = True

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed."""
        self._reader.feed(bytes(data))

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (bounded by the size limits)."""
        return self._reader.buffered

    def _check_send(self) -> None:
        if self._closed:
            raise LocalProtocolError("connection is closed")
        if self._reader.at_eof:
            raise LocalProtocolError("the peer closed the connection")


class ClientProtocol(_Base):
    """We are the ESL client: parse FreeSWITCH frames, encode commands."""

    def __init__(
        self,
        *,
        decoder: str = "auto",
        max_header_size: int = _readers.DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = _readers.DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        super().__init__()
        self._reader = make_message_reader(decoder, max_header_size, max_body_size)
        self._exit_sent = False
        # the hot loops' way to drain: the next complete message, or None (no generator frame)
        self.pull = self._reader.next_message

    def next_message(self) -> Message | Any:
        """The next message, ``NEED_DATA`` or ``CLOSED``; raises RemoteProtocolError."""
        msg = self._reader.next_message()
        if msg is not None:
            return msg
        return CLOSED if self._reader.at_eof else NEED_DATA

    def messages(self) -> Iterator[Message]:
        """Every complete message buffered now."""
        while True:
            msg = self._reader.next_message()
            if msg is None:
                return
            yield msg

    def send(self, command: Command) -> bytes:
        """Bytes for *command*; LocalProtocolError after close / exit / end of stream."""
        self._check_send()
        if self._exit_sent:
            raise LocalProtocolError("exit was already sent")
        if not isinstance(command, Command):
            raise LocalProtocolError(f"not a command: {command!r}")
        data = command.encode()
        if isinstance(command, Exit):
            self._exit_sent = True
        return data


class ServerProtocol(_Base):
    """We are FreeSWITCH: parse client commands, write FreeSWITCH frames."""

    def __init__(
        self,
        *,
        max_header_size: int = _readers.DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = _readers.DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        super().__init__()
        self._reader = _readers.CommandReader(max_header_size, max_body_size)

    def next_command(self) -> Command | Any:
        """The next command, ``NEED_DATA`` or ``CLOSED``; raises RemoteProtocolError."""
        cmd = self._reader.next_command()
        if cmd is not None:
            return cmd
        return CLOSED if self._reader.at_eof else NEED_DATA

    def commands(self) -> Iterator[Command]:
        while True:
            cmd = self._reader.next_command()
            if cmd is None:
                return
            yield cmd

    def send(self, msg: Message, format: str | None = None) -> bytes:
        """Bytes for any message (events use ``format`` or ``event.format``)."""
        self._check_send()
        return write_message(msg, format)

    def send_event(self, event: Event, format: str = "plain") -> bytes:
        self._check_send()
        return write_message(event, format)
