"""The simulator's command reader: ESL client bytes -> command objects, cheaply.

Same framing, limits, errors and results as :class:`ccfast.esl.ServerProtocol` (the reference
``CommandReader`` + ``parse_command``), with two shortcuts that matter at a thousand calls per
second:

* a header block whose every line is ``Name: value`` (name without ``:``, no ``\\r``) is checked
  with one regular expression and split with one ``findall`` instead of one regex per line; any
  other block goes through the reference line splitter (same results, same errors);
* ``sendevent`` is returned as a :class:`LazySendEvent`: name, subclass and target ``Unique-ID``
  read from the raw block, the full ``SendEvent`` (often ~150 headers: a channel snapshot) built
  only if the event is actually delivered to someone.
"""

from __future__ import annotations

import re

from ccfast.esl import Api, BgApi, RemoteProtocolError, SendEvent, parse_command
from ccfast.esl._readers import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_HEADER_SIZE, parse_length, split_header_line

# every line "Name: value\n" with a colon-free printable name: the first ": " is the separator
_SIMPLE_BLOCK = re.compile(rb"(?:[!-9;-~]+: [^\n\r]*\n)*")
_SIMPLE_LINE = re.compile(rb"([!-9;-~]+): ([^\n]*)\n")
try:  # the C scanner and framer; the Python below gives the same results
    from ._render import Framer, scan_simple_block
except ImportError:  # pragma: no cover - not built
    Framer = scan_simple_block = None

_WORD = re.compile(r"[^\s]+\Z")
_set = object.__setattr__
_SUBCLASS = re.compile(rb"^(?i:event-subclass): ([^\n]*)$", re.M)
_UNIQUE_ID = re.compile(rb"^(?i:unique-id): ([^\n]*)$", re.M)
_CONTENT_LENGTH = re.compile(rb"^(?i:content-length): ([^\n]*)$", re.M)


class LazySendEvent:
    """``sendevent <name>`` whose headers are decoded on demand (see :meth:`full`)."""

    __slots__ = ("name", "subclass", "unique_id", "_line", "_pairs", "_body", "_full")

    def __init__(self, name: str, subclass: str, unique_id: str | None, line: str, block: bytes, body):
        self.name = name
        self.subclass = subclass            # "" when none
        self.unique_id = unique_id          # last Unique-ID header (any case), or None
        self._line = line
        self._pairs = block
        self._body = body
        self._full: SendEvent | None = None

    def full(self) -> SendEvent:
        """The command as :func:`ccfast.esl.parse_command` builds it."""
        f = self._full
        if f is None:
            f = self._full = parse_command(self._line, _SIMPLE_LINE.findall(self._pairs), self._body)
        return f


class CommandReader:
    """``feed(bytes)`` (``b""`` = end of stream), then iterate :meth:`commands`."""

    __slots__ = ("max_header_size", "max_body_size", "_buf", "_pos", "_scan", "_pending", "_eof",
                 "_error", "_framer")

    def __new__(cls, *args, use_c: bool = True, **kwargs):
        if cls is CommandReader and use_c and Framer is not None:
            cls = FastCommandReader
        return super().__new__(cls)

    def __init__(self, max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
                 max_body_size: int = DEFAULT_MAX_BODY_SIZE, *, use_c: bool = True) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._buf = b""
        self._pos = 0
        self._scan = 0
        self._pending = None
        self._eof = False
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        pos = self._pos
        if pos >= len(self._buf):
            self._buf = bytes(data)
            self._scan = 0
        else:
            self._buf = self._buf[pos:] + data
            self._scan = max(0, self._scan - pos)
        self._pos = 0

    def buffered_command(self) -> bool:
        """Some bytes of a next command are buffered (it may still be incomplete)."""
        buf, pos = self._buf, self._pos
        n = len(buf)
        while pos < n and buf[pos] in (10, 13):
            pos += 1
        return pos < n or self._pending is not None

    def commands(self):
        while True:
            cmd = self.next_command()
            if cmd is None:
                return
            yield cmd

    def next_command(self):
        if self._error is not None:
            raise self._error
        try:
            frame = self._next_frame()
            if frame is None:
                return None
            return _build(*frame)
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_frame(self):
        buf = self._buf
        n = len(buf)
        if self._pending is None:
            pos = self._pos
            while pos < n and buf[pos] in (10, 13):
                pos += 1
            self._pos = start = pos
            end = buf.find(b"\n\n", max(self._scan, start))
            if end < 0:
                if n - start > self.max_header_size:
                    raise RemoteProtocolError("command block exceeds the size limit")
                self._scan = max(start, n - 1)
                if self._eof and n > start:
                    raise RemoteProtocolError("stream ended inside a command")
                return None
            if end - start > self.max_header_size:
                raise RemoteProtocolError("command block exceeds the size limit")
            nl = buf.find(b"\n", start, end + 1)
            raw_line = buf[start:nl]
            if raw_line.endswith(b"\r"):
                raw_line = raw_line.rstrip(b"\r")
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError("command line is not valid UTF-8") from exc
            block = buf[nl + 1:end + 1] if nl < end else b""
            length = -1
            if not block:
                pairs = []
            elif line.startswith("sendevent ") and scan_simple_block is not None:
                found = scan_simple_block(block)
                if found is not None:
                    pairs = found + (block,)   # kept raw: see LazySendEvent
                    if found[2] is not None:
                        length = parse_length(found[2], self.max_body_size)
                else:
                    pairs = [split_header_line(x.rstrip(b"\r")) for x in block[:-1].split(b"\n")]
            elif _SIMPLE_BLOCK.fullmatch(block):
                if line.startswith("sendevent "):
                    m = _SUBCLASS.search(block)
                    uids = _UNIQUE_ID.findall(block)
                    m2 = _CONTENT_LENGTH.search(block)
                    pairs = (m and m.group(1), uids[-1] if uids else None, m2 and m2.group(1), block)
                    if m2 is not None:
                        length = parse_length(m2.group(1), self.max_body_size)
                else:
                    pairs = _SIMPLE_LINE.findall(block)
            else:
                pairs = [split_header_line(x.rstrip(b"\r")) for x in block[:-1].split(b"\n")]
            if length < 0 and type(pairs) is list:
                for name, value in pairs:
                    if name.lower() == b"content-length":
                        length = parse_length(value, self.max_body_size)
                        break
            self._pos = end + 2
            self._scan = self._pos
            if length < 0:
                return line, pairs, None
            self._pending = (line, pairs, length)
        line, pairs, length = self._pending
        if n - self._pos < length:
            if self._eof:
                raise RemoteProtocolError("stream ended inside a command body")
            return None
        body = buf[self._pos:self._pos + length]
        self._pos += length
        self._scan = self._pos
        self._pending = None
        return line, pairs, body


class FastCommandReader(CommandReader):
    """:class:`CommandReader` with the framing in C (``_render.Framer``)."""

    __slots__ = ()

    def __init__(self, max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
                 max_body_size: int = DEFAULT_MAX_BODY_SIZE, *, use_c: bool = True) -> None:
        self._framer = Framer(max_header_size, max_body_size)
        self._error = None
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size

    def feed(self, data: bytes) -> None:
        self._framer.feed(data)

    def buffered_command(self) -> bool:
        return self._framer.buffered_command()

    def _next_frame(self):
        return self._framer.next_frame()

    def next_command(self):
        # CommandReader.next_command with the frame taken straight from the C framer and the
        # command built in C (_render.build_command: _build compiled)
        if self._error is not None:
            raise self._error
        try:
            return self._framer.next_command()
        except RemoteProtocolError as exc:
            self._error = exc
            raise


_PARSED: dict = {}     # (command line, header pairs) -> parse_command's (frozen) result
_PARSED_MAX = 4096
_NAME_OK: dict[str, bool] = {}   # sendevent name -> is one word (the _WORD check, remembered)


def _api(rest: str) -> Api:
    """``Api(rest)`` for a one-line ``api``: same fields, without re-checking what framing checked."""
    cmd, _, args = rest.partition(" ")
    a = object.__new__(Api)
    _set(a, "command", cmd)
    _set(a, "args", args)
    return a


def _bgapi(rest: str, job: str | None) -> BgApi:
    cmd, _, args = rest.partition(" ")
    b = object.__new__(BgApi)
    _set(b, "command", cmd)
    _set(b, "args", args)
    _set(b, "job_uuid", job)
    return b


def _build(line: str, pairs, body: bytes | None):
    # the three commands of every call, built directly when they are plain (the result equals
    # parse_command's: tests/test_sim_wire.py); anything unusual goes through parse_command
    if type(pairs) is tuple:  # a simple sendevent block: (subclass, unique-id, length, raw block)
        sub, uid, _, block = pairs
        name = line[10:].strip()
        try:
            if not block.isascii():     # (ASCII is UTF-8: no need to decode the ~7 KB to know)
                block.decode("utf-8")
        except UnicodeDecodeError:
            pairs = _SIMPLE_LINE.findall(block)
        else:
            ok = _NAME_OK.get(name)
            if ok is None:
                if len(_NAME_OK) >= 1024:
                    _NAME_OK.clear()
                ok = _NAME_OK[name] = _WORD.match(name) is not None
            if ok:
                return LazySendEvent(name, "" if sub is None else sub.decode("utf-8"),
                                     None if uid is None else uid.decode("utf-8"), line, block, body)
            pairs = _SIMPLE_LINE.findall(block)
        return parse_command(line, pairs, body)
    if body is None and "\r" not in line:
        if line.startswith("api "):
            rest = line[4:].strip()
            if rest and " " in rest and not pairs and rest.partition(" ")[0]:
                return _api(rest)
        elif line.startswith("bgapi "):
            rest = line[6:].strip()
            if rest and " " in rest and rest.partition(" ")[0] and type(pairs) is list:
                job = None
                try:
                    for n, v in pairs:
                        n.decode("utf-8")
                        v = v.decode("utf-8")   # parse_command decodes every header
                        if n.lower() == b"job-uuid":
                            job = v
                except UnicodeDecodeError:
                    return parse_command(line, pairs, body)
                if job is None or (job and _WORD.match(job)):
                    return _bgapi(rest, job)
    if body is None and type(pairs) is list:
        # the same commands come again and again (connect, resume, linger, myevents, filters,
        # sendmsg execute answer): the parsed objects are immutable, so parse each once
        key = (line, *pairs) if pairs else line
        cmd = _PARSED.get(key)
        if cmd is None:
            cmd = parse_command(line, pairs, body)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = cmd
        return cmd
    return parse_command(line, pairs, body)


if Framer is not None:
    from ._render import bind_build

    bind_build(globals())
