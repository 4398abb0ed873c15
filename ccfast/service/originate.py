"""Build the ``originate`` command for an agent leg (reference §5.3, §8.4).

The variables mod_callcenter sets on a Callback agent leg, ccfast's own ``origination_uuid`` (so a
ringing leg can be cancelled before its job returns), the caller id presented to the agent and the
member's ``cc_export_vars`` go in the global ``{…}`` block; the agent's contact keeps its own
``[…]``/``{…}`` variables. The contact is expanded against the member channel first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .expand import channel_variable, expand


_NEEDS_QUOTES = re.compile(r"[ '\t]")


def quote_value(value: str) -> str:
    """A value as FreeSWITCH's ``{}`` parser reads it back: commas escaped, spaces quoted."""
    if "\\" in value or "," in value:
        value = value.replace("\\", "\\\\").replace(",", "\\,")
    if _NEEDS_QUOTES.search(value):
        value = "'" + value.replace("'", "\\'") + "'"
    return value


def export_vars(member: Mapping[str, str]) -> dict[str, str]:
    """``cc_export_vars`` and the listed variables that exist on the member (§5.3)."""
    names = channel_variable(member, "cc_export_vars")
    if not names:
        return {}
    out = {"cc_export_vars": names}
    for raw in names.split(","):
        raw = raw.strip()
        if not raw:
            continue
        value = channel_variable(member, raw)
        if value is None:
            continue
        for prefix in ("nolocal:", "_nolocal_"):
            if raw.startswith(prefix):
                raw = raw[len(prefix):]
                break
        out[raw] = value
    return out


def caller_id(member: Mapping[str, str], cid_name: str, cid_number: str) -> tuple[str, str]:
    """Caller id shown to a Callback agent (§5.3)."""
    name = channel_variable(member, "effective_caller_id_name") or cid_name
    prefix = channel_variable(member, "cc_outbound_cid_name_prefix")
    if prefix:
        name = prefix + name
    number = channel_variable(member, "effective_caller_id_number") or cid_number
    return name, number


def originate_command(
    *,
    leg_uuid: str,
    contact: str,
    member: Mapping[str, str],
    queue: str,
    joined_epoch: int,
    member_uuid: str,
    member_session_uuid: str,
    agent: str,
    agent_type: str,
    cid_name: str,
    cid_number: str,
    originate_timeout: int,
) -> str:
    """The argument of ``bgapi originate`` for one agent leg, ending in ``&park()``."""
    name, number = caller_id(member, cid_name, cid_number)
    variables: dict[str, str] = {
        "origination_uuid": leg_uuid,
        "cc_queue": queue,
        "cc_queue_joined_epoch": str(joined_epoch),
        "cc_member_uuid": member_uuid,
        "cc_member_session_uuid": member_session_uuid,
        "cc_member_pre_answer_uuid": member_uuid,
        "cc_agent": agent,
        "cc_agent_type": agent_type,
        "cc_side": "agent",
        "loopback_bowout": "false",
        "loopback_bowout_on_execute": "false",
        "ignore_early_media": "true",
        "originate_timeout": str(originate_timeout),
    }
    if name:
        variables["origination_caller_id_name"] = name
    if number:
        variables["origination_caller_id_number"] = number
    variables.update(export_vars(member))

    dial = expand(contact, member).strip()
    own_globals = ""
    if dial.startswith("{"):
        end = dial.find("}")
        if end > 0:
            own_globals, dial = dial[1:end], dial[end + 1:]
    # the contact's own {} variables win (e.g. its originate_timeout, as with mod_callcenter,
    # where they override the originate's arguments); never send a name twice
    own_names = _names(own_globals)
    block = ",".join(f"{key}={quote_value(value)}" for key, value in variables.items() if key not in own_names)
    if own_globals:
        block += "," + own_globals
    return "{" + block + "}" + dial + " &park()"


def _names(block: str) -> set[str]:
    """Variable names of a ``{a=1,b='x\\,y'}`` body (escaped commas are not separators)."""
    names = set()
    for pair in re.split(r"(?<!\\),", block):
        name, eq, _ = pair.partition("=")
        if eq and name.strip():
            names.add(name.strip())
    return names
