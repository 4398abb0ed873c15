"""The dispatcher service (issue 4): members over outbound ESL, offers over inbound ESL.

``serve(config)`` runs everything for one ccfast process; ``Service`` is the glue between the
core and the sockets. See ``docs/service.md``.
"""

from .app import Service
from .clock import Clock

__all__ = ["Service", "Clock"]
