"""Errors raised by the ESL protocol layer.

* :class:`ProtocolError` -- base class; never raised directly.
* :class:`RemoteProtocolError` -- the peer sent bytes that are not valid ESL (bad or huge
  ``Content-Length``, a truncated frame at end of stream, a header line without ``:``, a header
  block larger than the configured limit, invalid UTF-8, malformed event JSON...). The connection
  is unusable afterwards: the reader stays in the error state and re-raises.
* :class:`LocalProtocolError` -- we misused the API (a newline inside a command argument,
  sending after ``exit``/close, a reserved header supplied by the caller...). Nothing was sent.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class for every ESL protocol error."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the ESL wire format."""


class LocalProtocolError(ProtocolError):
    """The caller asked us to produce something that is not valid ESL."""


__all__ = ["ProtocolError", "RemoteProtocolError", "LocalProtocolError"]
