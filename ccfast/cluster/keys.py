"""Node identity and the advisory-lock keys of the cluster.

Advisory locks use PostgreSQL's two-``int4`` form ``pg_try_advisory_lock(namespace, key)``, a lock
space separate from the one-``bigint`` form the store's schema migration uses. ``key`` is a stable
31-bit hash of the name (blake2b, not Python's salted ``hash``), so every node computes the same key
for a queue and ``pg_locks.objid`` (an ``oid``) equals it without sign games. Two names that
collide merely share one lock: the queues then always live on the same node (harmless).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid

from .. import strings as S

NS_QUEUE = 0x63637131  # "ccq1": one lock per queue, held by its owner's lock connection
NS_NODE = 0x63636E31  # "ccn1": one lock per live node id, held by that node's lock connection
NS_ROWS = 0x63637231  # "ccr1": transaction lock serialising agents/tiers DELETE+INSERT writes (fence.py)

MAX_NAME = 255  # VARCHAR(255) columns


def lock_key(name: str) -> int:
    """Stable non-negative 31-bit key of ``name`` (same value on every node and every run)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def node_id(configured: str | None = None) -> str:
    """The node id: the configured ``cc-instance-id``, or a generated ``<host>-<hex>``.

    mod_callcenter's default ``single_box`` is not an identity (every box has it), so it, an empty
    value or None yield a generated id, unique per process start.
    """
    if configured and configured != S.SINGLE_BOX:
        if len(configured) > MAX_NAME:
            raise ValueError(f"cc-instance-id is longer than {MAX_NAME} characters")
        return configured
    host = (socket.gethostname() or "ccfast").split(".")[0][:200]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
