# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython hot path of the ESL client-role reader: framing + event-plain/json decoding.

Same contract and same results as the pure-Python reference in ``_readers`` (tests compare
them on every capture and on random events). What makes it fast:

* the receive buffer is a C buffer; frame boundaries are found with ``memchr``;
* an event's header block is *indexed* (offsets of each name and value in the body bytes), not
  turned into Python strings: :class:`LazyHeaders` decodes a value only when it is asked for
  (URL-unquote through a lookup table, or JSON unescape), so a consumer that reads five headers
  of a 150-header event pays for five;
* everything a lazy value could fail on (header syntax, invalid UTF-8 after unquoting, JSON
  structure and escapes, the inner Content-Length body) is checked while indexing, so malformed
  input still raises :class:`RemoteProtocolError` from ``next_message()``, never later;
* anything unusual (json with ``\\u`` escapes, whitespace, non-string values; non-event frames)
  goes through the pure-Python code, which is the reference for those cases.
"""

from collections.abc import Mapping

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from . import _readers
from ._events import Event as _Event, split_array as _split_array
from ._events import (ApiResponse as _ApiResponse, AuthRequest as _AuthRequest,
                      ChannelData as _ChannelData, CommandReply as _CommandReply,
                      DisconnectNotice as _DisconnectNotice, Headers as _Headers)
from .errors import RemoteProtocolError

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

DEF F_PCT = 1      # plain value contains '%': unquote on access
DEF F_UNDEF = 2    # plain value is _undef_
DEF F_JESC = 4     # json string has backslash escapes
DEF F_JARR = 8     # json array: the span is the inside of [ ]

cdef struct HEnt:
    int32_t ns
    int32_t nl
    int32_t vs
    int32_t vl
    int32_t flags

cdef uint8_t NAME_OK[256]
cdef int HEXV[256]
cdef int _i
for _i in range(256):
    NAME_OK[_i] = 1 if (0x21 <= _i <= 0x7E and _i != 0x3A) else 0
    HEXV[_i] = -1
for _i in range(10):
    HEXV[0x30 + _i] = _i
for _i in range(6):
    HEXV[0x41 + _i] = 10 + _i
    HEXV[0x61 + _i] = 10 + _i

cdef object _decode_frame = _readers.decode_frame
cdef object _py_plain = _readers.decode_plain_event
cdef object _py_json = _readers.decode_json_event
cdef object _parse_length = _readers.parse_length


cdef Py_ssize_t _frame_length(const uint8_t* s, Py_ssize_t n, Py_ssize_t limit) except -1:
    """``_readers.parse_length`` on a frame header's value, without building a bytes object in
    the common case (1-12 digits within the limit); anything else goes to the reference
    function for its exact error."""
    cdef Py_ssize_t i, v = 0
    if 1 <= n <= 12:
        for i in range(n):
            if s[i] < 0x30 or s[i] > 0x39:
                break
            v = v * 10 + (s[i] - 0x30)
        else:
            if v <= limit:
                return v
    return _parse_length(PyBytes_FromStringAndSize(<const char*>s, n), limit)
cdef object _split_line = _readers.split_header_line


# ------------------------------------------------------------------ byte helpers

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil


cdef inline Py_ssize_t _find(const uint8_t* p, Py_ssize_t i, Py_ssize_t n, uint8_t c) noexcept nogil:
    """Index of the first byte == c in p[i:n], or n. Word-at-a-time: for the short spans of
    header names and values this beats a memchr call."""
    cdef uint64_t w, x, t
    cdef uint64_t pat = <uint64_t>0x0101010101010101ULL * c
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        x = w ^ pat
        t = (x - <uint64_t>0x0101010101010101ULL) & ~x & <uint64_t>0x8080808080808080ULL
        if t:
            return i + (__builtin_ctzll(t) >> 3)
        i += 8
    while i < n:
        if p[i] == c:
            return i
        i += 1
    return n



cdef inline bint _has_high(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef uint64_t acc = 0, w
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        acc |= w
        i += 8
    if acc & <uint64_t>0x8080808080808080ULL:
        return True
    while i < n:
        if s[i] & 0x80:
            return True
        i += 1
    return False


cdef inline bint _has_ctrl_or_high(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Any byte < 0x20 or >= 0x80 (word-at-a-time)."""
    cdef Py_ssize_t i = 0
    cdef uint64_t w
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        if ((w - <uint64_t>0x2020202020202020ULL) | w) & <uint64_t>0x8080808080808080ULL:
            return True
        i += 8
    while i < n:
        if s[i] < 0x20 or s[i] >= 0x80:
            return True
        i += 1
    return False


cdef inline Py_ssize_t _colon_sep(const uint8_t* p, Py_ssize_t i, Py_ssize_t eol) noexcept nogil:
    """The header separator in p[i:eol]: the first ':' followed by a space, else the first ':'
    (eol when there is none). FreeSWITCH does not escape ':' in names (``variable_nolocal:x``)."""
    cdef Py_ssize_t first = _find(p, i, eol, 0x3A)
    cdef Py_ssize_t k = first
    while k < eol:
        if k + 1 < eol and p[k + 1] == 0x20:
            return k
        k = _find(p, k + 1, eol, 0x3A)
    return first


cdef inline bint _name_ok(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Every byte in 0x21..0x7E (':' included: header names may contain one)."""
    cdef Py_ssize_t i = 0
    cdef uint64_t w
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        # a byte < 0x21 or >= 0x80 sets its high bit here; so does a byte == 0x7F below
        if ((w - <uint64_t>0x2121212121212121ULL) | w) & <uint64_t>0x8080808080808080ULL:
            return False
        w ^= <uint64_t>0x7F7F7F7F7F7F7F7FULL
        if (w - <uint64_t>0x0101010101010101ULL) & ~w & <uint64_t>0x8080808080808080ULL:
            return False
        i += 8
    while i < n:
        if s[i] < 0x21 or s[i] > 0x7E:
            return False
        i += 1
    return True


cdef bint _has_ctrl(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] < 0x20:
            return True
    return False


cdef bint _utf8_valid(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Strict UTF-8 (as Python's decoder: no overlongs, no surrogates, <= U+10FFFF)."""
    cdef Py_ssize_t i = 0
    cdef uint8_t c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2:
            return False
        if c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif c < 0xF0:
            if i + 2 >= n:
                return False
            c1 = s[i + 1]
            if c == 0xE0:
                if c1 < 0xA0 or c1 > 0xBF:
                    return False
            elif c == 0xED:
                if c1 < 0x80 or c1 > 0x9F:
                    return False
            elif (c1 & 0xC0) != 0x80:
                return False
            if (s[i + 2] & 0xC0) != 0x80:
                return False
            i += 3
        elif c < 0xF5:
            if i + 3 >= n:
                return False
            c1 = s[i + 1]
            if c == 0xF0:
                if c1 < 0x90 or c1 > 0xBF:
                    return False
            elif c == 0xF4:
                if c1 < 0x80 or c1 > 0x8F:
                    return False
            elif (c1 & 0xC0) != 0x80:
                return False
            if (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            i += 4
        else:
            return False
    return True


cdef Py_ssize_t _unquote(const uint8_t* s, Py_ssize_t n, uint8_t* out) noexcept nogil:
    cdef Py_ssize_t i = 0, o = 0
    cdef uint8_t c
    while i < n:
        c = s[i]
        if c == 0x25 and i + 2 < n and HEXV[s[i + 1]] >= 0 and HEXV[s[i + 2]] >= 0:
            out[o] = <uint8_t>(HEXV[s[i + 1]] * 16 + HEXV[s[i + 2]])
            i += 3
        else:
            out[o] = c
            i += 1
        o += 1
    return o


cdef object _unquote_str(const uint8_t* s, Py_ssize_t n):
    cdef uint8_t stackbuf[512]
    cdef uint8_t* buf = stackbuf
    cdef Py_ssize_t m
    if n > 512:
        buf = <uint8_t*>malloc(n)
        if buf == NULL:
            raise MemoryError()
    try:
        m = _unquote(s, n, buf)
        return PyUnicode_DecodeUTF8(<char*>buf, m, NULL)
    finally:
        if buf != stackbuf:
            free(buf)


cdef bint _unquoted_valid(const uint8_t* s, Py_ssize_t n) except -1:
    cdef uint8_t stackbuf[512]
    cdef uint8_t* buf = stackbuf
    cdef Py_ssize_t m
    cdef bint ok
    if n > 512:
        buf = <uint8_t*>malloc(n)
        if buf == NULL:
            raise MemoryError()
    m = _unquote(s, n, buf)
    ok = _utf8_valid(buf, m)
    if buf != stackbuf:
        free(buf)
    return ok


cdef Py_ssize_t _json_unescape(const uint8_t* s, Py_ssize_t n, uint8_t* out) noexcept nogil:
    """Only the escapes the indexer accepted: \\" \\\\ \\/ \\b \\f \\n \\r \\t."""
    cdef Py_ssize_t i = 0, o = 0
    cdef uint8_t c
    while i < n:
        c = s[i]
        if c == 0x5C and i + 1 < n:
            c = s[i + 1]
            i += 2
            if c == 0x62:
                c = 0x08
            elif c == 0x66:
                c = 0x0C
            elif c == 0x6E:
                c = 0x0A
            elif c == 0x72:
                c = 0x0D
            elif c == 0x74:
                c = 0x09
            out[o] = c
        else:
            out[o] = c
            i += 1
        o += 1
    return o


cdef object _json_str(const uint8_t* s, Py_ssize_t n, bint esc):
    cdef uint8_t stackbuf[512]
    cdef uint8_t* buf = stackbuf
    cdef Py_ssize_t m
    if not esc:
        return PyUnicode_DecodeUTF8(<const char*>s, n, NULL)
    if n > 512:
        buf = <uint8_t*>malloc(n)
        if buf == NULL:
            raise MemoryError()
    try:
        m = _json_unescape(s, n, buf)
        return PyUnicode_DecodeUTF8(<char*>buf, m, NULL)
    finally:
        if buf != stackbuf:
            free(buf)


cdef inline Py_ssize_t _scan_jstring(const uint8_t* p, Py_ssize_t i, Py_ssize_t n, int32_t* flags,
                              bint may_escape=True) noexcept nogil:
    """*i* is just after an opening quote; index of the closing quote, or -1 (use the fallback).

    *may_escape* False: the caller knows there is no backslash in the whole buffer.
    """
    cdef Py_ssize_t qi = _find(p, i, n, 0x22)
    cdef const uint8_t* bs
    cdef Py_ssize_t k
    cdef uint8_t e
    if qi >= n:
        return -1
    if not may_escape:
        return qi
    bs = <const uint8_t*>memchr(p + i, 0x5C, qi - i)
    if bs == NULL:
        return qi
    flags[0] |= F_JESC
    k = bs - p
    while k < n:
        e = p[k]
        if e == 0x22:
            return k
        if e == 0x5C:
            if k + 1 >= n:
                return -1
            e = p[k + 1]
            if (e == 0x22 or e == 0x5C or e == 0x2F or e == 0x62 or e == 0x66
                    or e == 0x6E or e == 0x72 or e == 0x74):
                k += 2
                continue
            return -1
        k += 1
    return -1


# ------------------------------------------------------------------ lazy headers


cdef dict _SENDEVENT_NAMES = {}  # header name -> usable in a sendevent (names repeat on every call)


cdef bint _sendevent_name_ok(str name):
    ok = _SENDEVENT_NAMES.get(name)
    if ok is None:
        ok = bool(name) and not (":" in name or " " in name or "\n" in name or "\r" in name
                                 or name.lower() == "content-length")
        if len(_SENDEVENT_NAMES) < 100_000:
            _SENDEVENT_NAMES[name] = ok
    return ok


cdef dict _SKIP_NAMES = {}  # skip set -> its names as bytes (the same frozenset every call)


cdef list _encoded_names(skip):
    cdef list names = _SKIP_NAMES.get(skip)
    if names is None:
        names = [(<str>n).encode("utf-8") for n in skip]
        if len(_SKIP_NAMES) < 64:
            _SKIP_NAMES[skip] = names
    return names


cdef inline bint _in_names(list names, const uint8_t* nm, Py_ssize_t nl):
    cdef bytes b
    for b in names:
        if PyBytes_GET_SIZE(b) == nl and memcmp(PyBytes_AS_STRING(b), nm, nl) == 0:
            return True
    return False


cdef bint _raw_name_ok(const uint8_t* nm, Py_ssize_t nl) noexcept:
    """``_sendevent_name_ok`` on a name's wire bytes."""
    cdef Py_ssize_t k
    cdef uint8_t c
    if nl == 0:
        return False
    for k in range(nl):
        c = nm[k]
        if c == 0x3A or c == 0x20 or c == 0x0A or c == 0x0D:
            return False
    if nl == 14:
        for k in range(14):
            c = nm[k]
            if 0x41 <= c <= 0x5A:
                c += 0x20
            if c != (<const uint8_t*>b"content-length")[k]:
                return True
        return False
    return True


cdef Py_ssize_t _put_line(uint8_t* buf, Py_ssize_t o, bytes name, value, list skip_b) except -1:
    """An overlay value's line (same rules as ``_sendevent_line``), appended at ``buf + o``."""
    cdef const uint8_t* nm = <const uint8_t*>PyBytes_AS_STRING(name)
    cdef Py_ssize_t nl = PyBytes_GET_SIZE(name)
    cdef bytes vb
    if value is None or value == "":
        return o
    text = str(value)
    if "\n" in text or "\r" in text or _in_names(skip_b, nm, nl):
        return o
    if not _sendevent_name_ok(name.decode("utf-8")):
        return o
    vb = (<str>text).encode("utf-8")
    memcpy(buf + o, nm, nl)
    buf[o + nl] = 0x3A
    buf[o + nl + 1] = 0x20
    memcpy(buf + o + nl + 2, PyBytes_AS_STRING(vb), PyBytes_GET_SIZE(vb))
    o += nl + 2 + PyBytes_GET_SIZE(vb)
    buf[o] = 0x0A
    return o + 1


cdef inline _sendevent_line(list out, str name, value, skip):
    if name in skip or value is None or value == "":
        return
    value = str(value)
    if "\n" in value or "\r" in value or not _sendevent_name_ok(name):
        return
    out.append(f"{name}: {value}\n".encode("utf-8"))


@cython.no_gc
cdef class LazyHeaders:
    """Header index over an event's bytes; same methods as ``_events.Headers``.

    Values are decoded on access. Mapping view = first value per name; ``pairs()`` = all.
    """

    cdef bytes raw
    cdef const uint8_t* base
    cdef HEnt* ents
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef int kind  # 0 = url-encoded (plain), 1 = json

    def __cinit__(self):
        self.ents = NULL
        self.n = 0
        self.cap = 0

    def __dealloc__(self):
        if self.ents != NULL:
            free(self.ents)

    cdef int _reserve(self, Py_ssize_t ncap) except -1:
        cdef HEnt* grown
        if ncap > self.cap:
            grown = <HEnt*>realloc(self.ents, ncap * sizeof(HEnt))
            if grown == NULL:
                raise MemoryError()
            self.ents = grown
            self.cap = ncap
        return 0

    cdef int _fit(self) except -1:
        """Give back the unused reserve (kept ones: the connect reply lives as long as the call)."""
        cdef HEnt* shrunk
        if self.n > 0 and self.cap > self.n:
            shrunk = <HEnt*>realloc(self.ents, self.n * sizeof(HEnt))
            if shrunk != NULL:
                self.ents = shrunk
                self.cap = self.n
        return 0

    cdef inline int _push(self, Py_ssize_t ns, Py_ssize_t nl, Py_ssize_t vs, Py_ssize_t vl, int flags) except -1:
        cdef HEnt* grown
        cdef Py_ssize_t ncap
        if self.n == self.cap:
            ncap = self.cap * 2 if self.cap else 64
            grown = <HEnt*>realloc(self.ents, ncap * sizeof(HEnt))
            if grown == NULL:
                raise MemoryError()
            self.ents = grown
            self.cap = ncap
        self.ents[self.n].ns = <int32_t>ns
        self.ents[self.n].nl = <int32_t>nl
        self.ents[self.n].vs = <int32_t>vs
        self.ents[self.n].vl = <int32_t>vl
        self.ents[self.n].flags = flags
        self.n += 1
        return 0

    cdef object _name(self, Py_ssize_t i):
        cdef HEnt* e = &self.ents[i]
        if self.kind == 0:
            return PyUnicode_DecodeASCII(<const char*>self.base + e.ns, e.nl, NULL)
        return PyUnicode_DecodeUTF8(<const char*>self.base + e.ns, e.nl, NULL)

    cdef object _value(self, Py_ssize_t i):
        cdef HEnt* e = &self.ents[i]
        cdef const uint8_t* s = self.base + e.vs
        if self.kind == 0:
            if e.flags & F_UNDEF:
                return ""
            if e.flags & F_PCT:
                return _unquote_str(s, e.vl)
            return PyUnicode_DecodeUTF8(<const char*>s, e.vl, NULL)
        if e.flags & F_JARR:
            return self._json_array(s, e.vl)
        return _json_str(s, e.vl, e.flags & F_JESC)

    cdef object _json_array(self, const uint8_t* s, Py_ssize_t n):
        cdef list items = []
        cdef Py_ssize_t i = 0, j
        cdef int32_t fl
        while i < n:
            if s[i] != 0x22:
                i += 1
                continue
            fl = 0
            j = _scan_jstring(s, i + 1, n, &fl)
            items.append(_json_str(s + i + 1, j - i - 1, fl & F_JESC))
            i = j + 1
        return "ARRAY::" + "|:".join(items)

    cdef Py_ssize_t _find(self, object name) except -2:
        cdef Py_ssize_t size, i
        cdef const char* s
        cdef HEnt* e
        if not isinstance(name, str):
            return -1
        s = PyUnicode_AsUTF8AndSize(name, &size)
        for i in range(self.n):
            e = &self.ents[i]
            if e.nl == size and memcmp(self.base + e.ns, s, size) == 0:
                return i
        return -1

    def get(self, name, default=None):
        cdef Py_ssize_t i = self._find(name)
        if i < 0:
            return default
        return self._value(i)

    def __getitem__(self, name):
        cdef Py_ssize_t i = self._find(name)
        if i < 0:
            raise KeyError(name)
        return self._value(i)

    def __contains__(self, name):
        return self._find(name) >= 0

    def get_all(self, name):
        cdef Py_ssize_t size, i
        cdef const char* s
        cdef HEnt* e
        cdef list out = []
        if not isinstance(name, str):
            return out
        s = PyUnicode_AsUTF8AndSize(name, &size)
        for i in range(self.n):
            e = &self.ents[i]
            if e.nl == size and memcmp(self.base + e.ns, s, size) == 0:
                out.append(self._value(i))
        return out

    def get_array(self, name):
        return _split_array(self.get(name))

    def changed_since(self, base, str prefix):
        """``[(name, value)]`` of this event's headers named ``prefix…`` whose value differs from
        ``base``'s first header of that name, or that ``base`` lacks (first occurrence per name).

        Both url-encoded (plain): raw bytes are compared and only differing values are decoded —
        a channel event re-sends ~100 unchanged variables. Otherwise values are decoded and
        compared. Lookups in ``base`` resume where the previous one matched (same channel, same
        header order), so the whole diff is close to one pass over both."""
        cdef LazyHeaders b
        cdef Py_ssize_t plen, i, k, j, cursor = 0
        cdef const char* pfx
        cdef HEnt* e
        cdef HEnt* f
        cdef list out = []
        cdef set seen = set()
        cdef bint raw
        pfx = PyUnicode_AsUTF8AndSize(prefix, &plen)
        b = base if isinstance(base, LazyHeaders) else None
        raw = b is not None and b.kind == 0 and self.kind == 0
        for i in range(self.n):
            e = &self.ents[i]
            if e.nl < plen or memcmp(self.base + e.ns, pfx, plen) != 0:
                continue
            if b is None:
                name = self._name(i)
                if name in seen:
                    continue  # the first value of a repeated name counts
                seen.add(name)
                old = base.get(name)
                value = self._value(i)
                if old is None or old != value:
                    out.append((name, value))
                continue
            # against another index: no name string unless it goes out; a repeated name (its
            # first value counts) is looked for only then, among this event's earlier headers
            j = -1
            for k in range(b.n):
                f = &b.ents[(cursor + k) % b.n]
                if f.nl == e.nl and memcmp(b.base + f.ns, self.base + e.ns, e.nl) == 0:
                    j = (cursor + k) % b.n
                    break
            if j < 0:
                if not self._repeated(i):
                    out.append((self._name(i), self._value(i)))
                continue
            cursor = j + 1
            f = &b.ents[j]
            if raw and f.vl == e.vl and memcmp(b.base + f.vs, self.base + e.vs, e.vl) == 0:
                continue
            value = self._value(i)
            if (raw or b._value(j) != value) and not self._repeated(i):
                out.append((self._name(i), value))
        return out

    cdef bint _repeated(self, Py_ssize_t i):
        """Whether an earlier header of this index has header ``i``'s name."""
        cdef HEnt* e = &self.ents[i]
        cdef HEnt* f
        cdef Py_ssize_t k
        for k in range(i):
            f = &self.ents[k]
            if f.nl == e.nl and memcmp(self.base + f.ns, self.base + e.ns, e.nl) == 0:
                return True
        return False

    def sendevent_lines(self, skip, dict overlay):
        """The ``name: value\n`` lines that carry this channel snapshot in a ``sendevent``.

        Equal to encoding ``[(k, v) for k, v in {**first, **overlay}.items() if k not in skip
        and v]`` (``first``: the first value per name) and then leaving out what a sendevent
        cannot carry: a value with a line break, a name that is empty, holds ``:``, a space or a
        line break, or is ``Content-Length`` (any case). Plain values are copied (or unquoted)
        from the wire bytes straight into the result: no string per header."""
        if self.kind != 0:
            return self._sendevent_lines_py(skip, overlay)
        cdef list skip_b = _encoded_names(skip)
        cdef list over_k = []
        cdef list over_v = []
        cdef Py_ssize_t extra = 64, i, j, k, o = 0, nl, vl, m, tsize, slot, nover, nskip
        cdef uint64_t h
        cdef HEnt* e
        cdef const uint8_t* nm
        cdef const uint8_t* v
        cdef bytes kb, vb
        cdef int32_t* table
        cdef uint8_t* buf
        cdef bytearray used
        for key, value in overlay.items():
            over_k.append((<str>key).encode("utf-8"))
            over_v.append(value)
            extra += len(key) * 4 + len(str(value)) * 4 + 4
        nover = len(over_k)
        nskip = len(skip_b)
        used = bytearray(nover)
        tsize = 64
        while tsize < 2 * self.n:
            tsize *= 2
        table = <int32_t*>malloc(tsize * sizeof(int32_t))
        buf = <uint8_t*>malloc(PyBytes_GET_SIZE(self.raw) + extra)
        if table == NULL or buf == NULL:
            free(table)
            free(buf)
            raise MemoryError()
        try:
            for k in range(tsize):
                table[k] = -1
            for i in range(self.n):
                e = &self.ents[i]
                nm = self.base + e.ns
                nl = e.nl
                # first value per name: FNV-1a over the name, open addressing
                h = 1469598103934665603ULL
                for k in range(nl):
                    h = (h ^ nm[k]) * 1099511628211ULL
                slot = <Py_ssize_t>(h & <uint64_t>(tsize - 1))
                while table[slot] >= 0:
                    j = table[slot]
                    if self.ents[j].nl == nl and memcmp(self.base + self.ents[j].ns, nm, nl) == 0:
                        break
                    slot = (slot + 1) & (tsize - 1)
                if table[slot] >= 0:
                    continue
                table[slot] = <int32_t>i
                for j in range(nover):
                    kb = over_k[j]
                    if PyBytes_GET_SIZE(kb) == nl and memcmp(PyBytes_AS_STRING(kb), nm, nl) == 0:
                        break
                else:
                    j = -1
                if j >= 0:
                    used[j] = 1
                    o = _put_line(buf, o, over_k[j], over_v[j], skip_b)
                    continue
                if _in_names(skip_b, nm, nl) or not _raw_name_ok(nm, nl):
                    continue
                if e.flags & F_UNDEF:
                    continue  # "" is left out
                v = self.base + e.vs
                vl = e.vl
                if vl == 0:
                    continue
                memcpy(buf + o, nm, nl)
                buf[o + nl] = 0x3A
                buf[o + nl + 1] = 0x20
                if e.flags & F_PCT:
                    m = _unquote(v, vl, buf + o + nl + 2)
                    if m == 0 or memchr(buf + o + nl + 2, 0x0D, m) != NULL or memchr(buf + o + nl + 2, 0x0A, m) != NULL:
                        continue
                    if not _utf8_valid(buf + o + nl + 2, m):
                        self._value(i)  # raises like every other read of this value
                        continue
                else:
                    if memchr(v, 0x0D, vl) != NULL:
                        continue
                    memcpy(buf + o + nl + 2, v, vl)
                    m = vl
                buf[o + nl + 2 + m] = 0x0A
                o += nl + 3 + m
            for j in range(nover):
                if not used[j]:
                    o = _put_line(buf, o, over_k[j], over_v[j], skip_b)
            return PyBytes_FromStringAndSize(<char*>buf, o)
        finally:
            free(table)
            free(buf)

    def _sendevent_lines_py(self, skip, dict overlay):
        cdef list out = []
        cdef set seen = set()
        for name, value in self.pairs():
            if name in seen:
                continue
            seen.add(name)
            if name in overlay:
                value = overlay[name]
            _sendevent_line(out, name, value, skip)
        for name, value in overlay.items():
            if name not in seen:
                _sendevent_line(out, name, value, skip)
        return b"".join(out)

    def pairs(self):
        """Every ``(name, value)`` in wire order, repeated names included."""
        cdef Py_ssize_t i
        return [(self._name(i), self._value(i)) for i in range(self.n)]

    def _first(self):
        cdef dict d = {}
        cdef Py_ssize_t i
        for i in range(self.n):
            k = self._name(i)
            if k not in d:
                d[k] = self._value(i)
        return d

    def keys(self):
        return list(self._first().keys())

    def values(self):
        return list(self._first().values())

    def items(self):
        return list(self._first().items())

    def __iter__(self):
        return iter(self._first())

    def __len__(self):
        return len(self._first())

    def __eq__(self, other):
        if hasattr(other, "pairs"):
            return self.pairs() == other.pairs()
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"LazyHeaders({self.pairs()!r})"


Mapping.register(LazyHeaders)


cdef inline object _new_event(object headers, object body, str fmt):
    ev = _Event.__new__(_Event)
    ev.headers = headers
    ev.body = body
    ev.format = fmt
    return ev


cdef object _fast_plain(bytes body):
    """Index a text/event-plain body. Mirrors ``_readers.decode_plain_event`` exactly."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t end, pos, eol, ns, vs, vl, k, j, last
    cdef const uint8_t* q
    cdef const uint8_t* pc
    cdef int flags
    cdef bint need_check, high
    cdef Py_ssize_t next_pct
    cdef LazyHeaders h
    h = LazyHeaders.__new__(LazyHeaders)
    h.raw = body
    h.base = p
    h.kind = 0
    h._reserve(n // 24 + 8)
    high = _has_high(p, n)
    q = <const uint8_t*>memchr(p, 0x25, n)
    next_pct = (q - p) if q != NULL else n
    pos = 0
    end = -1
    if n >= 2 and p[0] == 0x0A and p[1] == 0x0A:
        end = 0
    while end < 0:
        if pos >= n:
            raise RemoteProtocolError("event-plain body has no terminating blank line")
        if p[pos] == 0x0A and pos > 0:
            end = pos - 1  # the "\n\n" that ends the block
            break
        # name: up to the first ": " (a name may hold a ':', as in variable_nolocal:x), else the
        # first ':'; value: up to the next '\n'
        ns = pos
        eol = _find(p, pos, n, 0x0A)
        k = _colon_sep(p, pos, eol)
        if k == ns or k >= eol or p[ns] == 0x3A or not _name_ok(p + ns, k - ns):
            q = <const uint8_t*>memchr(p + pos, 0x0A, n - pos)
            eol = (q - p) if q != NULL else n
            raise RemoteProtocolError(f"malformed header line {body[ns:min(eol, ns + 80)]!r}")
        vs = k + 1
        if vs < n and p[vs] == 0x20:
            vs += 1
        eol = _find(p, vs, n, 0x0A)
        if eol >= n:
            raise RemoteProtocolError("event-plain body has no terminating blank line")
        vl = eol - vs
        flags = 0
        need_check = False
        # '%' positions are found once for the whole body, not per value
        while next_pct < eol:
            if next_pct >= vs:
                flags = F_PCT
                if next_pct + 2 < eol and HEXV[p[next_pct + 1]] >= 8 and HEXV[p[next_pct + 2]] >= 0:
                    need_check = True
            q = <const uint8_t*>memchr(p + next_pct + 1, 0x25, n - next_pct - 1)
            next_pct = (q - p) if q != NULL else n
        if vl == 7 and memcmp(p + vs, b"_undef_", 7) == 0:
            flags = F_UNDEF
        else:
            if high and not need_check:
                need_check = _has_high(p + vs, vl)
            if need_check and not _unquoted_valid(p + vs, vl):
                raise RemoteProtocolError(f"header value is not valid UTF-8: {body[vs:vs + min(vl, 80)]!r}")
        h._push(ns, k - ns, vs, vl, flags)
        pos = eol + 1
    pos = end + 2
    ev_body = None
    last = h.n - 1
    if last >= 0 and h.ents[last].nl == 14 and memcmp(p + h.ents[last].ns, b"Content-Length", 14) == 0:
        value = h._value(last)
        h.n -= 1
        k = _parse_length(value.encode("ascii", "replace"), n - pos)
        if k != n - pos:
            raise RemoteProtocolError("event-plain inner body length mismatch")
        if _has_high(p + pos, k) and not _utf8_valid(p + pos, k):
            raise RemoteProtocolError("event body is not valid UTF-8")
        ev_body = PyUnicode_DecodeUTF8(<const char*>p + pos, k, NULL)
    elif pos < n:
        raise RemoteProtocolError("trailing bytes after an event-plain header block")
    return _new_event(h, ev_body, "plain")


cdef object _fast_json(bytes body):
    """Index a text/event-json body; anything not FreeSWITCH-shaped goes to the reference."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t i, ks, ke, vs, ve
    cdef int32_t flags
    cdef bint has_bs
    cdef LazyHeaders h
    ev_body = None
    if n < 2 or p[0] != 0x7B:
        return _py_json(body)
    if _has_ctrl_or_high(p, n) and (_has_ctrl(p, n) or not _utf8_valid(p, n)):
        # control characters (whitespace, or invalid inside strings) or invalid UTF-8:
        # the reference decides and raises; FreeSWITCH's cJSON output never has them
        return _py_json(body)
    h = LazyHeaders.__new__(LazyHeaders)
    h.raw = body
    h.base = p
    h.kind = 1
    h._reserve(n // 28 + 8)
    has_bs = memchr(p, 0x5C, n) != NULL
    i = 1
    if p[i] == 0x7D:
        i += 1
    else:
        while True:
            if i >= n or p[i] != 0x22:
                return _py_json(body)
            ks = i + 1
            flags = 0
            ke = _scan_jstring(p, ks, n, &flags, has_bs)
            if ke < 0 or flags:
                return _py_json(body)
            i = ke + 1
            if i >= n or p[i] != 0x3A:
                return _py_json(body)
            i += 1
            if i >= n:
                return _py_json(body)
            if p[i] == 0x22:
                vs = i + 1
                ve = _scan_jstring(p, vs, n, &flags, has_bs)
                if ve < 0:
                    return _py_json(body)
                i = ve + 1
            elif p[i] == 0x5B:
                flags = F_JARR
                vs = i + 1
                i = vs
                if i < n and p[i] == 0x5D:
                    ve = i
                else:
                    while True:
                        if i >= n or p[i] != 0x22:
                            return _py_json(body)
                        ve = _scan_jstring(p, i + 1, n, &flags, has_bs)
                        if ve < 0:
                            return _py_json(body)
                        i = ve + 1
                        if i < n and p[i] == 0x2C:
                            i += 1
                            continue
                        if i < n and p[i] == 0x5D:
                            ve = i
                            break
                        return _py_json(body)
                i = ve + 1
            else:
                return _py_json(body)
            if ke - ks == 5 and memcmp(p + ks, b"_body", 5) == 0:
                if flags & F_JARR:
                    return _py_json(body)
                ev_body = _json_str(p + vs, ve - vs, flags & F_JESC)
                if h.n > 0 and h.ents[h.n - 1].nl == 14 and memcmp(p + h.ents[h.n - 1].ns, b"Content-Length", 14) == 0:
                    h.n -= 1
            else:
                h._push(ks, ke - ks, vs, ve - vs, flags)
            if i < n and p[i] == 0x2C:
                i += 1
                continue
            if i < n and p[i] == 0x7D:
                i += 1
                break
            return _py_json(body)
    if i != n:
        return _py_json(body)
    return _new_event(h, ev_body, "json")


def decode_plain_event(body):
    """Cython twin of ``_readers.decode_plain_event``."""
    return _fast_plain(bytes(body))


def decode_json_event(body):
    """Cython twin of ``_readers.decode_json_event``."""
    return _fast_json(bytes(body))


# ------------------------------------------------------------------ framing

DEF CT_OTHER = 0
DEF CT_PLAIN = 1
DEF CT_JSON = 2


cdef class MessageReader:
    """Client-role reader (Cython); same contract as ``_readers.MessageReader``."""

    cdef uint8_t* buf
    cdef Py_ssize_t cap, start, stop, scan
    cdef readonly Py_ssize_t max_header_size, max_body_size
    cdef bint eof
    cdef object error
    cdef bint pending
    cdef Py_ssize_t pend_len
    cdef int pend_ct
    cdef bytes pend_hdr

    def __cinit__(self, Py_ssize_t max_header_size=_readers.DEFAULT_MAX_HEADER_SIZE,
                  Py_ssize_t max_body_size=_readers.DEFAULT_MAX_BODY_SIZE):
        self.buf = NULL
        self.cap = self.start = self.stop = self.scan = 0
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.eof = False
        self.error = None
        self.pending = False

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)

    @property
    def at_eof(self):
        return self.eof and self.start >= self.stop

    @property
    def buffered(self):
        return self.stop - self.start

    def feed(self, data):
        cdef const unsigned char[:] mv
        cdef Py_ssize_t n, need, ncap
        cdef uint8_t* grown
        if not data:
            self.eof = True
            return
        mv = data
        n = mv.shape[0]
        if self.start >= self.stop:
            self._release()
        if self.start > 0 and (self.start >= self.stop or self.start >= (self.cap >> 1)):
            memmove(self.buf, self.buf + self.start, self.stop - self.start)
            self.stop -= self.start
            self.scan -= self.start
            if self.scan < 0:
                self.scan = 0
            self.start = 0
        need = self.stop + n
        if need > self.cap:
            ncap = self.cap * 2 if self.cap else 8192
            while ncap < need:
                ncap *= 2
            grown = <uint8_t*>realloc(self.buf, ncap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.cap = ncap
        memcpy(self.buf + self.stop, &mv[0], n)
        self.stop += n

    cdef void _release(self) noexcept:
        """Nothing buffered: give the buffer back. An idle connection (a caller waiting in a
        queue) then holds no receive buffer at all; the next feed allocates what it needs."""
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL
        self.cap = self.start = self.stop = self.scan = 0

    def next_message(self):
        if self.error is not None:
            raise self.error
        try:
            msg = self._next()
        except RemoteProtocolError as exc:
            self.error = exc
            raise
        if self.start >= self.stop and self.buf != NULL:
            self._release()
        return msg

    cdef object _next(self):
        cdef uint8_t* b = self.buf
        cdef Py_ssize_t start, end, pos, eol, k, vs, length, s
        cdef const uint8_t* q
        cdef int ct
        cdef bint seen_cl, seen_ct
        if not self.pending:
            while self.start < self.stop and b[self.start] == 0x0A:
                self.start += 1
            start = self.start
            s = self.scan if self.scan > start else start
            end = -1
            while s < self.stop:
                q = <const uint8_t*>memchr(b + s, 0x0A, self.stop - s)
                if q == NULL or (q - b) + 1 >= self.stop:
                    break
                if q[1] == 0x0A:
                    end = q - b
                    break
                s = (q - b) + 1
            if end < 0:
                if self.stop - start > self.max_header_size:
                    raise RemoteProtocolError("header block exceeds the size limit")
                self.scan = self.stop - 1 if self.stop - 1 > start else start
                if self.eof and self.stop > start:
                    raise RemoteProtocolError("stream ended inside a header block")
                return None
            if end - start > self.max_header_size:
                raise RemoteProtocolError("header block exceeds the size limit")
            # outer header lines: validate, find Content-Length and Content-Type
            length = -1
            ct = CT_OTHER
            seen_cl = seen_ct = False
            pos = start
            while pos <= end:
                q = <const uint8_t*>memchr(b + pos, 0x0A, end - pos)
                eol = (q - b) if q != NULL else end
                k = pos
                while k < eol and NAME_OK[b[k]]:
                    k += 1
                if k == pos or k >= eol or b[k] != 0x3A:
                    raise RemoteProtocolError(
                        f"malformed header line {PyBytes_FromStringAndSize(<char*>b + pos, min(eol - pos, 80))!r}")
                vs = k + 1
                if vs < eol and b[vs] == 0x20:
                    vs += 1
                if not seen_cl and k - pos == 14 and memcmp(b + pos, b"Content-Length", 14) == 0:
                    seen_cl = True
                    length = _frame_length(b + vs, eol - vs, self.max_body_size)
                elif not seen_ct and k - pos == 12 and memcmp(b + pos, b"Content-Type", 12) == 0:
                    seen_ct = True
                    if eol - vs == 16 and memcmp(b + vs, b"text/event-plain", 16) == 0:
                        ct = CT_PLAIN
                    elif eol - vs == 15 and memcmp(b + vs, b"text/event-json", 15) == 0:
                        ct = CT_JSON
                pos = eol + 1
            if _has_high(b + start, end - start) and not _utf8_valid(b + start, end - start):
                raise RemoteProtocolError("header value is not valid UTF-8")
            self.pend_hdr = None if ct != CT_OTHER else PyBytes_FromStringAndSize(<char*>b + start, end - start)
            self.start = end + 2
            self.scan = self.start
            if length < 0:
                return self._finish(ct, self.pend_hdr, None)
            self.pending = True
            self.pend_len = length
            self.pend_ct = ct
        if self.stop - self.start < self.pend_len:
            if self.eof:
                raise RemoteProtocolError("stream ended inside a frame body")
            return None
        body = PyBytes_FromStringAndSize(<char*>self.buf + self.start, self.pend_len)
        self.start += self.pend_len
        self.scan = self.start
        self.pending = False
        return self._finish(self.pend_ct, self.pend_hdr, body)

    cdef object _finish(self, int ct, bytes hdr, object body):
        if body is not None:
            if ct == CT_PLAIN:
                return _fast_plain(body)
            if ct == CT_JSON:
                return _fast_json(body)
        if hdr is None:  # an event frame without a body: let the reference raise
            hdr = b"Content-Type: " + (b"text/event-plain" if ct == CT_PLAIN else b"text/event-json")
            pairs = [_split_line(line) for line in hdr.split(b"\n")]
            return _decode_frame(pairs, body)
        return _fast_other(hdr, body)


cdef list _outer_pairs(bytes hdr):
    """The outer header block (already validated by the framer: names, ':', UTF-8) as str pairs."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(hdr)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(hdr)
    cdef Py_ssize_t pos = 0, eol, k, vs
    cdef list out = []
    while pos <= n:
        eol = _find(p, pos, n, 0x0A)
        k = _colon_sep(p, pos, eol)
        vs = k + 1
        if vs < eol and p[vs] == 0x20:
            vs += 1
        if vs > eol:
            vs = eol
        out.append((PyUnicode_DecodeASCII(<const char*>p + pos, k - pos, NULL),
                    PyUnicode_DecodeUTF8(<const char*>p + vs, eol - vs, NULL)))
        pos = eol + 1
    return out


cdef inline object _new_headers(list pairs):
    h = _Headers.__new__(_Headers)
    h._pairs = pairs
    first = {}
    for name, value in pairs:
        if name not in first:
            first[name] = value
    h._first = first
    return h


cdef inline str _body_text(object body, str what):
    cdef const uint8_t* p
    cdef Py_ssize_t n
    if body is None:
        return ""
    p = <const uint8_t*>PyBytes_AS_STRING(body)
    n = PyBytes_GET_SIZE(body)
    if _has_high(p, n) and not _utf8_valid(p, n):
        raise RemoteProtocolError(f"{what} is not valid UTF-8")
    return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)


cdef object _fast_other(bytes hdr, object body):
    """Non-event frames (command/reply, api/response, the outbound connect reply, notices).

    Same results as ``_readers.decode_frame``; the connect reply (ChannelData) keeps its ~150
    url-encoded headers as a :class:`LazyHeaders` index over the raw block, decoded on access."""
    cdef list pairs = _outer_pairs(hdr)
    h = _new_headers(pairs)
    ctype = h._first.get("Content-Type")
    if ctype == "command/reply":
        if body is None and "Event-Name" in h._first:
            ev = _fast_plain(hdr + b"\n\n")
            (<LazyHeaders>ev.headers)._fit()
            cd = _ChannelData.__new__(_ChannelData)
            cd.headers = ev.headers
            cd.body = None
            cd.format = "plain"
            return cd
        r = _CommandReply.__new__(_CommandReply)
        r.reply_text = h._first.get("Reply-Text", "")
        r.headers = h
        return r
    if ctype == "api/response":
        a = _ApiResponse.__new__(_ApiResponse)
        a.body = _body_text(body, "api/response body")
        a.headers = h
        return a
    if ctype == "text/disconnect-notice":
        d = _DisconnectNotice.__new__(_DisconnectNotice)
        d.headers = h
        d.body = _body_text(body, "disconnect notice body")
        return d
    if ctype == "auth/request":
        return _AuthRequest()
    return _decode_frame([(name.encode("ascii"), value.encode("utf-8")) for name, value in pairs], body)
