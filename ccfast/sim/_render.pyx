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
from libc.string cimport memchr


cdef inline bint _name_char(unsigned char c) noexcept:
    # [!-9;-~]: printable ASCII without space and ':'
    return 0x21 <= c <= 0x7E and c != 0x3A


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
