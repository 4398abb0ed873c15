"""Channel-variable expansion done by ccfast on FreeSWITCH's behalf.

mod_callcenter expands agent contacts and ``record-template`` against the member channel
(reference §5.3, §5.5). Over ESL, FreeSWITCH would expand an originate string against global
variables only, and ``uuid_record`` does not expand at all (integration notes §8), so ccfast expands
from the member's channel data itself. A name the member channel does not have is left as
``${name}`` for FreeSWITCH, which resolves it against its global variables as the module would.
``$${name}`` (config-time globals) is turned into ``${name}`` for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(r"\$\$?\{([^{}]+)\}")

# Caller-profile fields that FreeSWITCH exposes under variable names (switch_channel.c).
PROFILE_FIELDS = {
    "caller_id_number": "Caller-Caller-ID-Number",
    "caller_id_name": "Caller-Caller-ID-Name",
    "destination_number": "Caller-Destination-Number",
    "ani": "Caller-ANI",
    "rdnis": "Caller-RDNIS",
    "context": "Caller-Context",
    "dialplan": "Caller-Dialplan",
    "network_addr": "Caller-Network-Addr",
    "uuid": "Unique-ID",
    "channel_name": "Channel-Name",
}


def channel_variable(headers: Mapping[str, str], name: str) -> str | None:
    """The value FreeSWITCH would give ``${name}`` on the channel described by ``headers``."""
    value = headers.get("variable_" + name)
    if value is not None:
        return value
    field = PROFILE_FIELDS.get(name)
    if field is not None:
        return headers.get(field)
    return None


def expand(template: str, headers: Mapping[str, str]) -> str:
    """Expand ``${var}`` against the channel; unknown names (and ``$${x}``) go on to FreeSWITCH."""

    def replace(match: re.Match) -> str:
        whole, name = match.group(0), match.group(1)
        if whole.startswith("$$"):
            return "${" + name + "}"
        value = channel_variable(headers, name)
        return whole if value is None else value

    return _VAR.sub(replace, template)


async def expand_fully(template: str, headers: Mapping[str, str], box) -> str:
    """``expand`` and then let the box resolve what is left (globals, ``${strftime(...)}``…).

    For strings FreeSWITCH will not expand itself, such as the path given to ``uuid_record``
    (integration notes §8): ``record-template`` must reach it as a finished path. ``eval`` on
    the box expands global variables and API calls; an all-empty result reads ``-ERR no reply``.
    """
    partial = expand(template, headers)
    if "${" not in partial:
        return partial
    try:
        reply = await box.api(f"eval {partial}")
    except Exception:
        return partial
    if reply.startswith("-ERR"):
        return ""
    return reply.rstrip("\n")
