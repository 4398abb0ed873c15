"""Errors of the cluster layer."""

from __future__ import annotations


class ClusterError(Exception):
    """Base class."""


class ClusterUnavailable(ClusterError):
    """The database connection broke or timed out; the session reconnects on the next call."""


class NodeIdInUse(ClusterError):
    """Another live process holds this node id (two nodes configured with one cc-instance-id)."""
