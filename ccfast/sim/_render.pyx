# cython: language_level=3, boundscheck=False, wraparound=False
"""C helpers for the simulator's hot paths (optional: ``ccfast.sim.wire`` falls back to Python).

``scan_simple_block(block)``: one pass over a command's header block (every line ending in
``\\n``). Returns None unless every line is ``Name: value`` with a printable, colon-free name and
no ``\\r`` (the block the reference splitter and this fast path read the same way); otherwise
``(event_subclass, unique_id, content_length)``: the first ``Event-Subclass``, the last
``Unique-ID`` and the first ``Content-Length`` value (names compared without case), as bytes or
None.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp, memcpy


cdef bint _NAME_CHAR[256]
cdef int _c
for _c in range(256):
    _NAME_CHAR[_c] = 0x21 <= _c <= 0x7E and _c != 0x3A


cdef inline bint _name_char(unsigned char c) noexcept:
    # [!-9;-~]: printable ASCII without space and ':'
    return _NAME_CHAR[c]


cdef bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lower) noexcept:
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if 0x41 <= c <= 0x5A:
            c += 0x20
        if c != <unsigned char>lower[i]:
            return False
    return True


def scan_simple_block(bytes block):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(block)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(block)
    cdef Py_ssize_t pos = 0, k, eol, vs
    cdef const unsigned char* q
    sub = uid = clen = None
    while pos < n:
        q = <const unsigned char*>memchr(p + pos, 0x0A, n - pos)
        if q == NULL:
            return None
        eol = q - p
        k = pos
        while k < eol and _name_char(p[k]):
            k += 1
        if k == pos or k + 1 >= eol or p[k] != 0x3A or p[k + 1] != 0x20:
            return None  # also "Name:" without the space
        vs = k + 2
        if memchr(p + vs, 0x0D, eol - vs) != NULL:
            return None
        if k - pos == 14 and sub is None and _ieq(p + pos, 14, b"event-subclass"):
            sub = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
        elif k - pos == 9 and _ieq(p + pos, 9, b"unique-id"):
            uid = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
        elif k - pos == 14 and clen is None and _ieq(p + pos, 14, b"content-length"):
            clen = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
        pos = eol + 1
    return (sub, uid, clen)


# ------------------------------------------------------------------ event-plain lines

cdef bytes _UNSAFE = b"\r\n \"#%&+:;<=>?@[\\]^`{|}"
cdef bint _SAFE_BYTE[256]
cdef int _b
for _b in range(256):
    _SAFE_BYTE[_b] = 0x20 <= _b <= 0x7E and (_b not in _UNSAFE)
cdef const char* _HEX = b"0123456789ABCDEF"


cdef inline bint _upper_hex(unsigned char c) noexcept:
    return (0x30 <= c <= 0x39) or (0x41 <= c <= 0x46)


def render_line(str name, str value):
    """``b"<name>: <value url-encoded as FreeSWITCH does>\\n"``; an empty value is ``_undef_``.

    Same bytes as ``f"{name}: {enc(value) if value != '' else '_undef_'}\\n".encode("ascii")``
    with ``ccfast.esl._urlcodec.url_encode`` as ``enc``."""
    cdef bytes nb = name.encode("ascii")
    cdef bytes vb
    cdef const unsigned char* v
    cdef Py_ssize_t n, i, extra = 0, ln = PyBytes_GET_SIZE(nb), pos
    cdef unsigned char c
    cdef bytes out
    cdef char* o
    if not value:
        vb = b"_undef_"
    else:
        vb = value.encode("utf-8")
    v = <const unsigned char*>PyBytes_AS_STRING(vb)
    n = PyBytes_GET_SIZE(vb)
    if value:
        for i in range(n):
            c = v[i]
            if not _SAFE_BYTE[c]:
                if not (c == 0x25 and i + 2 < n and _upper_hex(v[i + 1]) and _upper_hex(v[i + 2])):
                    extra += 2
    out = PyBytes_FromStringAndSize(NULL, ln + 2 + n + extra + 1)
    o = PyBytes_AS_STRING(out)
    memcpy(o, PyBytes_AS_STRING(nb), ln)
    o[ln] = 0x3A
    o[ln + 1] = 0x20
    pos = ln + 2
    if extra == 0:
        memcpy(o + pos, v, n)
        pos += n
    else:
        for i in range(n):
            c = v[i]
            if _SAFE_BYTE[c] or (c == 0x25 and i + 2 < n and _upper_hex(v[i + 1]) and _upper_hex(v[i + 2])):
                o[pos] = c
                pos += 1
            else:
                o[pos] = 0x25
                o[pos + 1] = _HEX[c >> 4]
                o[pos + 2] = _HEX[c & 15]
                pos += 3
    o[pos] = 0x0A
    return out


# ------------------------------------------------------------------ originate arguments

def split_args(str text):
    """``ccfast.sim.dialstring.split_args``: split on spaces outside quotes and ``()``."""
    cdef list out = []
    cdef Py_ssize_t n = len(text), i, start = -1
    cdef Py_UCS4 c, quote = 0
    cdef int depth = 0
    # a token is a contiguous run of the text (nothing inside it is dropped): slices do
    for i in range(n):
        c = text[i]
        if quote:
            if c == quote:
                quote = 0
            continue
        if c == u"'" or c == u'"':
            quote = c
            if start < 0:
                start = i
        elif c == u"(":
            depth += 1
            if start < 0:
                start = i
        elif c == u")":
            if depth > 0:
                depth -= 1
            if start < 0:
                start = i
        elif c == u" " and depth == 0:
            if start >= 0:
                out.append(text[start:i])
                start = -1
        else:
            if start < 0:
                start = i
    if start >= 0:
        out.append(text[start:n])
    return out


# ------------------------------------------------------------------ command frames

from ccfast.esl.errors import RemoteProtocolError
from ccfast.esl._readers import parse_length as _parse_length, split_header_line as _split_header_line


cdef class Framer:
    """The framing of ``ccfast.sim.wire.CommandReader`` (same frames, limits and errors), in C.

    ``next_frame()`` returns ``(line, pairs, body)`` or None: ``pairs`` is a list of
    ``(name, value)`` bytes, or for a ``sendevent`` with a simple block the tuple
    ``(subclass, unique_id, content_length, block)`` of :func:`scan_simple_block`."""

    cdef bytes buf
    cdef Py_ssize_t pos, scan
    cdef object pending
    cdef readonly bint eof
    cdef readonly Py_ssize_t max_header_size, max_body_size

    def __cinit__(self, Py_ssize_t max_header_size, Py_ssize_t max_body_size):
        self.buf = b""
        self.pos = self.scan = 0
        self.pending = None
        self.eof = False
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size

    def feed(self, data):
        cdef Py_ssize_t n
        if not data:
            self.eof = True
            return
        n = PyBytes_GET_SIZE(self.buf)
        if self.pos >= n:
            self.buf = bytes(data)
            self.scan = 0
        else:
            self.buf = self.buf[self.pos:] + data
            self.scan = self.scan - self.pos if self.scan > self.pos else 0
        self.pos = 0

    def buffered_command(self):
        cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(self.buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(self.buf), p = self.pos
        while p < n and (b[p] == 10 or b[p] == 13):
            p += 1
        return p < n or self.pending is not None

    def next_frame(self):
        cdef bytes buf = self.buf
        cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf), start, end, s, nl, le, k, eol, vs, length
        cdef const unsigned char* q
        cdef bint simple
        if self.pending is None:
            start = self.pos
            while start < n and (b[start] == 10 or b[start] == 13):
                start += 1
            self.pos = start
            s = self.scan if self.scan > start else start
            end = -1
            found = None
            if s == start and n - start > 10 and memcmp(b + start, b"sendevent ", 10) == 0:
                # one pass finds the end and reads the block as scan_simple_block does
                end, found = _sendevent_end(b, start, n)
                s = n
            while s < n:
                q = <const unsigned char*>memchr(b + s, 0x0A, n - s)
                if q == NULL or (q - b) + 1 >= n:
                    break
                if q[1] == 0x0A:
                    end = q - b
                    break
                s = (q - b) + 1
            if end < 0:
                if n - start > self.max_header_size:
                    raise RemoteProtocolError("command block exceeds the size limit")
                self.scan = n - 1 if n - 1 > start else start
                if self.eof and n > start:
                    raise RemoteProtocolError("stream ended inside a command")
                return None
            if end - start > self.max_header_size:
                raise RemoteProtocolError("command block exceeds the size limit")
            nl = (<const unsigned char*>memchr(b + start, 0x0A, end + 1 - start)) - b
            le = nl
            while le > start and b[le - 1] == 0x0D:
                le -= 1
            try:
                line = PyUnicode_DecodeUTF8(<const char*>b + start, le - start, NULL)
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError("command line is not valid UTF-8") from exc
            length = -1
            if nl >= end:
                pairs = []
            else:
                block = PyBytes_FromStringAndSize(<const char*>b + nl + 1, end - nl)
                if line.startswith("sendevent "):
                    if found is None:
                        found = scan_simple_block(block)
                    elif found is False:
                        found = None
                    if found is not None:
                        pairs = found + (block,)
                        if found[2] is not None:
                            length = _parse_length(found[2], self.max_body_size)
                    else:
                        pairs = [_split_header_line(x.rstrip(b"\r")) for x in block[:len(block) - 1].split(b"\n")]
                else:
                    pairs = _simple_pairs(b + nl + 1, end - nl)
                    if pairs is None:
                        pairs = [_split_header_line(x.rstrip(b"\r")) for x in block[:len(block) - 1].split(b"\n")]
                if length < 0 and type(pairs) is list:
                    for name, value in pairs:
                        if len(name) == 14 and name.lower() == b"content-length":
                            length = _parse_length(value, self.max_body_size)
                            break
            self.pos = end + 2
            self.scan = self.pos
            if length < 0:
                return line, pairs, None
            self.pending = (line, pairs, length)
        line, pairs, length = self.pending
        if n - self.pos < length:
            if self.eof:
                raise RemoteProtocolError("stream ended inside a command body")
            return None
        body = buf[self.pos:self.pos + length]
        self.pos += length
        self.scan = self.pos
        self.pending = None
        return line, pairs, body


    def next_command(self):
        """``wire._build(*next_frame())`` (compiled: :func:`build_command`), or None."""
        frame = self.next_frame()
        if frame is None:
            return None
        line, pairs, body = frame
        return build_command(line, pairs, body)


cdef tuple _sendevent_end(const unsigned char* p, Py_ssize_t start, Py_ssize_t n):
    """For a frame starting at *start* with ``sendevent ``: (end, what scan_simple_block gives
    for its header block, False for None) where end is the first ``\\n\\n`` (-1: not in the
    buffer yet, and then the block is not read)."""
    cdef const unsigned char* q = <const unsigned char*>memchr(p + start, 0x0A, n - start)
    cdef Py_ssize_t pos, eol, k, vs
    cdef bint simple = True
    if q == NULL:
        return -1, None
    pos = (q - p) + 1
    sub = uid = clen = None
    while True:
        if pos >= n:
            return -1, None
        if p[pos] == 0x0A:
            break
        q = <const unsigned char*>memchr(p + pos, 0x0A, n - pos)
        if q == NULL:
            return -1, None
        eol = q - p
        if simple:
            k = pos
            while k < eol and _NAME_CHAR[p[k]]:
                k += 1
            if k == pos or k + 1 >= eol or p[k] != 0x3A or p[k + 1] != 0x20:
                simple = False
            else:
                vs = k + 2
                if memchr(p + vs, 0x0D, eol - vs) != NULL:
                    simple = False
                elif k - pos == 14 and sub is None and _ieq(p + pos, 14, b"event-subclass"):
                    sub = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
                elif k - pos == 9 and _ieq(p + pos, 9, b"unique-id"):
                    uid = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
                elif k - pos == 14 and clen is None and _ieq(p + pos, 14, b"content-length"):
                    clen = PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)
        pos = eol + 1
    if pos - 1 == (<const unsigned char*>memchr(p + start, 0x0A, n - start)) - p:
        return pos - 1, None    # no header block
    return pos - 1, ((sub, uid, clen) if simple else False)


cdef object _simple_pairs(const unsigned char* p, Py_ssize_t n):
    """Every line ``Name: value\\n`` (colon-free printable name, no CR): the (name, value) bytes
    pairs; otherwise None."""
    cdef Py_ssize_t pos = 0, k, eol, vs
    cdef const unsigned char* q
    cdef list out = []
    while pos < n:
        q = <const unsigned char*>memchr(p + pos, 0x0A, n - pos)
        if q == NULL:
            return None
        eol = q - p
        k = pos
        while k < eol and _name_char(p[k]):
            k += 1
        if k == pos or k + 1 >= eol or p[k] != 0x3A or p[k + 1] != 0x20:
            return None
        vs = k + 2
        if memchr(p + vs, 0x0D, eol - vs) != NULL:
            return None
        out.append((PyBytes_FromStringAndSize(<const char*>p + pos, k - pos),
                    PyBytes_FromStringAndSize(<const char*>p + vs, eol - vs)))
        pos = eol + 1
    return out


# ------------------------------------------------------------------ uuids

from cpython.unicode cimport PyUnicode_DecodeASCII

cdef const char* _HEXL = b"0123456789abcdef"


cdef class Uuid4Source:
    """``source()`` -> a random version 4 uuid string (as ``str(uuid.uuid4())`` formats it) from
    the bytes of ``rng.randbytes`` (taken 4 KiB at a time)."""

    cdef object rng
    cdef bytes pool
    cdef Py_ssize_t pos

    def __cinit__(self, rng):
        self.rng = rng
        self.pool = b""
        self.pos = 0

    def __call__(self):
        cdef char out[36]
        cdef unsigned char b[16]
        cdef Py_ssize_t i, k = 0
        if self.pos + 16 > PyBytes_GET_SIZE(self.pool):
            self.pool = self.rng.randbytes(4096)
            self.pos = 0
        memcpy(b, PyBytes_AS_STRING(self.pool) + self.pos, 16)
        self.pos += 16
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        for i in range(16):
            if i == 4 or i == 6 or i == 8 or i == 10:
                out[k] = 0x2D
                k += 1
            out[k] = _HEXL[b[i] >> 4]
            out[k + 1] = _HEXL[b[i] & 15]
            k += 2
        return PyUnicode_DecodeASCII(out, 36, NULL)



# ------------------------------------------------------------------ commands built from frames

cdef object Api, BgApi, LazySendEvent, parse_command, _SIMPLE_LINE, _WORD
cdef dict _PARSED, _NAME_OK
cdef Py_ssize_t _PARSED_MAX
cdef object _set = object.__setattr__
cdef object _new = object.__new__


def bind_build(ns):
    """Take ``ccfast.sim.wire``'s command types and caches (it imports this module)."""
    global Api, BgApi, LazySendEvent, parse_command, _SIMPLE_LINE, _WORD, _PARSED, _NAME_OK, _PARSED_MAX
    Api, BgApi, LazySendEvent, parse_command = ns["Api"], ns["BgApi"], ns["LazySendEvent"], ns["parse_command"]
    _SIMPLE_LINE, _WORD, _PARSED, _NAME_OK = ns["_SIMPLE_LINE"], ns["_WORD"], ns["_PARSED"], ns["_NAME_OK"]
    _PARSED_MAX = ns["_PARSED_MAX"]


cdef object _api(str rest):
    cmd, _, args = rest.partition(" ")
    a = _new(Api)
    _set(a, "command", cmd)
    _set(a, "args", args)
    return a


cdef object _bgapi(str rest, job):
    cmd, _, args = rest.partition(" ")
    b = _new(BgApi)
    _set(b, "command", cmd)
    _set(b, "args", args)
    _set(b, "job_uuid", job)
    return b


def build_command(str line, pairs, body):
    """``ccfast.sim.wire._build`` (the reference, same results), compiled."""
    cdef bytes block
    if type(pairs) is tuple:  # a simple sendevent block: (subclass, unique-id, length, raw block)
        sub, uid, _, block = pairs
        name = line[10:].strip()
        try:
            if not block.isascii():
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
                        v = v.decode("utf-8")
                        if n.lower() == b"job-uuid":
                            job = v
                except UnicodeDecodeError:
                    return parse_command(line, pairs, body)
                if job is None or (job and _WORD.match(job)):
                    return _bgapi(rest, job)
    if body is None and type(pairs) is list:
        key = (line, *pairs) if pairs else line
        cmd = _PARSED.get(key)
        if cmd is None:
            cmd = parse_command(line, pairs, body)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = cmd
        return cmd
    return parse_command(line, pairs, body)
