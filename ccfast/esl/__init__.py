"""ccfast.esl -- the FreeSWITCH Event Socket protocol, sans-IO (h11 style).

Contract (stable; changes are additive only):

* Client role -- :class:`ClientProtocol`: ``receive_data(bytes)`` (``b""`` = peer closed),
  ``next_message()`` -> a message | ``NEED_DATA`` | ``CLOSED``, ``messages()`` iterator,
  ``send(command) -> bytes``. Messages: :class:`AuthRequest`, :class:`CommandReply`,
  :class:`ApiResponse`, :class:`Event` (plain and json), :class:`ChannelData` (the outbound
  ``connect`` reply, an Event), :class:`LogData`, :class:`DisconnectNotice`,
  :class:`RudeRejection`, :class:`UnknownFrame`.
* Commands (encode with ``.encode()`` or ``ClientProtocol.send``): :class:`Auth`,
  :class:`UserAuth`, :class:`Subscribe` (``event plain|json ...`` with CUSTOM subclasses),
  :class:`NixEvent`, :class:`NoEvents`, :class:`Filter`, :class:`FilterDelete`,
  :class:`MyEvents`, :class:`DivertEvents`, :class:`Linger`, :class:`NoLinger`, :class:`Resume`,
  :class:`Connect`, :class:`Exit`, :class:`Log`, :class:`NoLog`, :class:`Api`, :class:`BgApi`
  (explicit ``Job-UUID``), :class:`SendEvent` (``SendEvent.custom(subclass, headers, body)``),
  :class:`SendMsg` (``SendMsg.execute(uuid, app, arg, event_lock=, loops=, async_=)``,
  ``SendMsg.hangup(uuid, cause)``), :class:`RawCommand`.
* Server role -- :class:`ServerProtocol`: ``receive_data``, ``next_command()`` /
  ``commands()`` (the same command classes; unknown commands as RawCommand), ``send(message)``;
  and the ``write_*`` functions for every frame FreeSWITCH sends.
* Errors: :class:`ProtocolError` > :class:`RemoteProtocolError` (bad peer bytes),
  :class:`LocalProtocolError` (our misuse).
* Decoders: the Cython ``ccfast.esl._fast`` reader is used when built (``HAVE_CYTHON``); the
  pure-Python reader in ``_readers`` is the reference and gives equal results.
"""

from ._commands import (
    LONG_ARG,
    Api,
    Auth,
    BgApi,
    Command,
    Connect,
    DivertEvents,
    Exit,
    Filter,
    FilterDelete,
    Linger,
    Log,
    MyEvents,
    NixEvent,
    NoEvents,
    NoLinger,
    NoLog,
    RawCommand,
    Resume,
    SendEvent,
    SendMsg,
    Subscribe,
    UserAuth,
    parse_command,
)
from ._connection import (
    CLOSED,
    HAVE_CYTHON,
    NEED_DATA,
    ClientProtocol,
    ServerProtocol,
    make_message_reader,
)
from ._events import (
    ApiResponse,
    AuthRequest,
    ChannelData,
    CommandReply,
    DisconnectNotice,
    Event,
    Headers,
    LogData,
    Message,
    RudeRejection,
    UnknownFrame,
    join_array,
    split_array,
)
from ._readers import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    CommandReader,
    MessageReader,
    decode_json_event,
    decode_plain_event,
)
from ._urlcodec import url_decode, url_encode
from ._writers import (
    GOODBYE,
    encode_event_json,
    encode_event_plain,
    write_api_response,
    write_auth_request,
    write_bgapi_reply,
    write_command_reply,
    write_connect_reply,
    write_disconnect_notice,
    write_event,
    write_event_json,
    write_event_plain,
    write_linger_notice,
    write_log_data,
    write_message,
    write_rude_rejection,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [name for name in dir() if not name.startswith("_")]
