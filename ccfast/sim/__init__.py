"""ccfast.sim -- a FreeSWITCH simulator speaking the Event Socket protocol.

Inbound ESL server (auth, subscriptions, api/bgapi, sendmsg, sendevent), channels with the real
event stream, ``originate`` with agent behaviour profiles, ``uuid_bridge`` and hangup flows as
observed on FreeSWITCH (``reference/freeswitch-integration.md``), simulated callers that dial the
dispatcher's outbound listener like the ``socket`` dialplan app, and fault injection.
See :mod:`ccfast.sim.core` for embedding and ``python -m ccfast.sim --help`` to run it.
"""

from .core import Simulator, open_simulator
from .dialstring import DialStringError, Leg, Originate, parse_dialstring, parse_originate
from .profiles import AgentProfile, ProfileTable
from .records import CallRecord, JobRecord, LegRecord
from .switch import CallerSpec, Switch, Timings

__all__ = [
    "Simulator", "open_simulator", "Timings", "CallerSpec", "AgentProfile", "ProfileTable",
    "CallRecord", "LegRecord", "JobRecord", "Switch", "parse_originate", "parse_dialstring",
    "Originate", "Leg", "DialStringError",
]
