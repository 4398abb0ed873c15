"""Random (version 4) UUID strings, cheaply: a call needs three (its member row, its agent leg,
its originate job), and ``str(uuid.uuid4())`` costs a syscall and a UUID object each."""

from __future__ import annotations

import os

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits: 10xx
_POOL_BYTES = 4096  # 256 UUIDs per os.urandom call


class _Pool:
    __slots__ = ("hex", "at")

    def __init__(self) -> None:
        self.hex = ""
        self.at = 0


_pool = _Pool()


def uuid4() -> str:
    """``str(uuid.uuid4())``: 122 random bits from ``os.urandom``, version 4, variant 10."""
    pool = _pool
    at = pool.at
    if at >= len(pool.hex):
        pool.hex = os.urandom(_POOL_BYTES).hex()
        at = 0
    h = pool.hex[at:at + 32]
    pool.at = at + 32
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
