"""Type stub of the Cython dispatch core (ccfast/_core.pyx). Contract: docs/core-contract.md.

Every method that changes state or depends on time takes ``now`` (epoch seconds); the core never
reads a clock, does I/O or awaits. API-level refusals raise ``CoreError`` whose text is exactly what
mod_callcenter prints after ``-ERR `` (§7.2). Programming errors (unknown table/column, duplicate
rows in ``load_rows``, a fresh join with an existing member uuid) raise ``ValueError``.

Journal (``drain_journal``): ``(table, op, key, columns)`` with op ``insert`` (all columns),
``update`` (changed columns only) or ``delete`` (``{}``); keys are ``(name,)`` for agents,
``(queue, agent)`` for tiers and ``(uuid,)`` for members. ``load_rows`` is not journaled. Rows of a
deleted agent are never journaled again.

Events (``drain_events``): ``(CC-Action, headers)``; ``headers`` holds, in the order of §6.2, every
header the core knows, as strings, with NULL or empty values omitted (as FreeSWITCH drops them):

* agent-add: CC-Agent, CC-Agent-Type, CC-Action
* agent-status-change: CC-Agent, CC-Action, CC-Agent-Status (value as given)
* agent-state-change: CC-Agent, CC-Action, CC-Agent-State
* agent-contact-change: CC-Agent, CC-Action, CC-Agent-Contact
* agent-<key>-get: CC-Agent, CC-Action, CC-Agent-<Key> (first letter upper-cased) / CC-Agent-UUID
* agent-offering: CC-Queue, CC-Action, CC-Agent, CC-Agent-Type, CC-Agent-System, CC-Member-UUID,
  CC-Member-Session-UUID, CC-Member-CID-Name, CC-Member-CID-Number
  (the service appends CC-Member-DNIS, from the member channel's RDNIS)
* bridge-agent-start: CC-Queue, CC-Action, CC-Agent, CC-Agent-System, CC-Agent-UUID,
  CC-Agent-Called-Time, CC-Agent-Answered-Time, CC-Member-Joined-Time, CC-Member-UUID,
  CC-Member-Session-UUID, CC-Member-CID-Name, CC-Member-CID-Number (service: + CC-Member-DNIS and
  the agent channel snapshot)
* bridge-agent-end: CC-Queue, CC-Action, CC-Hangup-Cause (originate result: SUCCESS, or NONE for
  uuid-standby, W18), CC-Agent, CC-Agent-System, CC-Agent-UUID, CC-Agent-Bridged, CC-Agent-Called-Time,
  CC-Agent-Answered-Time, CC-Member-Joined-Time, CC-Bridge-Terminated-Time, CC-Member-UUID,
  CC-Member-Session-UUID, CC-Member-CID-Name, CC-Member-CID-Number (service: + agent channel)
* bridge-agent-fail: CC-Queue, CC-Action, CC-Hangup-Cause, CC-Agent, CC-Agent-System,
  CC-Agent-Called-Time, CC-Agent-Aborted-Time, CC-Member-UUID, CC-Member-Session-UUID,
  CC-Member-CID-Name, CC-Member-CID-Number, CC-Member-Joined-Time
* agent-max-no-answer: CC-Agent, CC-Action, CC-Agent-No-Answer-Count (the configured max_no_answer,
  W18), CC-Agent-No-Answer-Status, CC-Member-UUID, CC-Member-Session-UUID
* member-queue-start / member-queue-resume: CC-Queue, CC-Action, CC-Member-UUID,
  CC-Member-Session-UUID, CC-Member-CID-Name, CC-Member-CID-Number (service: + member channel)
* member-queue-end (Cancel): CC-Queue, CC-Action, CC-Member-Leaving-Time, CC-Member-Joined-Time
  (this visit's entry time), CC-Cause, CC-Cancel-Reason, CC-Member-UUID, CC-Member-Session-UUID,
  CC-Member-CID-Name, CC-Member-CID-Number
* member-queue-end (Terminated): CC-Queue, CC-Action, CC-Hangup-Cause, CC-Cause, CC-Agent,
  CC-Agent-System, CC-Agent-UUID, CC-Agent-Called-Time, CC-Agent-Answered-Time, CC-Member-Leaving-Time,
  CC-Member-Joined-Time (first join), CC-Member-UUID, CC-Member-Session-UUID, CC-Member-CID-Name,
  CC-Member-CID-Number
* members-count: CC-Queue, CC-Action, CC-Count, CC-Selection

CC-Agent-Called-Time is the second the offer was made (0 for uuid-standby agents).
"""

from collections.abc import Iterable

from ccfast.params import QueueParams

class CoreError(Exception): ...

class Offer:
    """One agent leg to originate (§5.1). Ids are unique, positive, in creation order."""

    offer_id: int
    queue: str
    member_uuid: str
    member_session_uuid: str
    agent: str
    agent_type: str
    agent_contact: str
    agent_uuid: str
    agent_system: str
    strategy: str
    level: int
    position: int
    cid_number: str
    cid_name: str
    joined_epoch: int
    created: int  # the second the offer was made
    @property
    def phase_name(self) -> str: ...  # ringing | answered | bridged | done

class Cancel:
    """A ringing leg to hang up with ``cause``; its result still comes back (offer_failed)."""

    offer_id: int
    member_uuid: str
    agent: str
    cause: str
    def __init__(self, offer_id: int, member_uuid: str, agent: str, cause: str) -> None: ...

class Timeout:
    """The watchdog ends this member: reason TIMEOUT or NO_AGENT_TIMEOUT (then member_cancel)."""

    member_uuid: str
    session_uuid: str
    queue: str
    reason: str
    def __init__(self, member_uuid: str, session_uuid: str, queue: str, reason: str) -> None: ...

class Join:
    member_uuid: str  # the resumed row's uuid on a resume
    resumed: bool
    joined_epoch: int  # the first join's epoch on a resume
    def __init__(self, member_uuid: str, resumed: bool, joined_epoch: int) -> None: ...

class Answer:
    won: bool  # False: this leg lost a ring race; it is finished already, hang it up (W7)
    cancel: list[Cancel]  # the other ringing legs (LOSE_RACE)
    def __init__(self, won: bool, cancel: list[Cancel]) -> None: ...

class Core:
    instance_id: str
    reserve_agents: bool
    n_walks: int  # members whose candidates were walked (work counter)
    n_rows: int  # candidate rows looked at (work counter)
    def __init__(self, instance_id: str = "single_box", reserve_agents: bool = False, seed: int = 0) -> None: ...

    # queues
    def queue_set(self, params: QueueParams) -> None:
        """Add or replace (like queue load/reload: calls_* and last_agent_exist* restart at 0)."""
    def queue_remove(self, name: str) -> None:
        """Unload; the next pass deletes the queue's Waiting/Abandoned/ring rows (§4.2 step 1)."""
    def queue_params(self, name: str) -> QueueParams | None: ...
    def queue_names(self) -> list[str]: ...
    def queue_counters(self, name: str) -> tuple[int, int]:
        """(calls_answered, calls_abandoned); CoreError("Queue not found!") if not loaded."""
    def queue_agent_exist(self, name: str) -> tuple[int, int]:
        """(last_agent_exist, last_agent_exist_check) of §4.7 as of the latest pass."""

    # rows
    def load_rows(self, table: str, rows: Iterable[dict]) -> None: ...
    def load_recovered(self, rows: dict[str, Iterable[dict]], now: int, readopt_window: int | None = None,
                       reset_agents: bool = True) -> dict[str, int]:
        """Load a crashed ccfast's rows and return them to definite states (changes journaled as
        updates, no events): single_box agents Receiving/Reserved/In a queue call -> Waiting (uuid ''
        unless uuid-standby), external_calls_count 0; their Offering/Active Inbound/Standby tiers ->
        Ready (only with reset_agents); this instance's Waiting/Trying members -> Abandoned,
        session_uuid '', abandoned_epoch=now, re-adoptable by their session uuid for readopt_window
        s (None: the queue's discard-abandoned-after); other non-Abandoned members of this instance
        -> Abandoned, session '' (§1.5). Returns {agents_reset, tiers_reset, readopt, abandoned}."""
    def readopt_sessions(self, now: int) -> dict[str, str]:
        """{session uuid: member uuid} still re-adoptable at now."""
    def readopt_forget(self, session_uuid: str) -> bool:
        """The channel is gone: stop waiting for it; True if it was waited for."""
    def rows(self, table: str) -> list[dict]:
        """agents by name, tiers by (queue, agent), members by creation order (seq)."""

    # callcenter_config
    def agent_add(self, name: str, type: str, now: int) -> None: ...
    def agent_del(self, name: str) -> None: ...
    def agent_set(self, key: str, name: str, value: str, now: int) -> list[Cancel]: ...
    def agent_get(self, key: str, name: str) -> str: ...
    def agent_track(self, name: str, delta: int) -> None: ...
    def tier_add(self, queue: str, agent: str, level: int = 1, position: int = 1) -> None: ...
    def tier_set(self, key: str, queue: str, agent: str, value: str) -> None: ...
    def tier_del(self, queue: str, agent: str) -> None: ...

    # members
    def member_join(self, queue: str, member_uuid: str, session_uuid: str, cid_number: str, cid_name: str,
                    system_epoch: int, base_score: int, now: int) -> Join:
        """``base_score`` = atoi(cc_base_score); the core adds now - system_epoch for
        time-base-score=system. ``now`` is also the watchdog's t_called.
        A ``session_uuid`` re-adoptable after load_recovered (same queue, within its window)
        resumes that row first, whatever abandoned-resume-allowed says: uuid, joined_epoch,
        base_score, seq, rejoined_epoch and the watchdog's t_called as before the crash;
        abandoned_epoch restored; state Waiting, serving_agent the ring marker or ''; events
        member-queue-resume + members-count; Join.resumed is True."""
    def member_cancel(self, member_uuid: str, reason: str, now: int) -> list[Cancel]:
        """No-op (returns []) for a member whose row is already gone."""
    def member_answered_exit(self, member_uuid: str) -> None: ...  # no-op for an unknown member

    # dispatch and time
    def dispatch(self, now: int) -> list[Offer]:
        """One pass. Walks only queues that have dispatchable members and an agent that could be
        offered now (kept incrementally): a pass with nothing to do is O(1), whatever the number
        of free agents."""
    def member_timeouts(self, now: int) -> list[Timeout]:
        """Visits only queues with members in their timer index (max-wait / no-agent); reports
        in queue load order."""
    def discard_abandoned(self, now: int) -> list[str]: ...
    def next_change(self, now: int) -> int | None:
        """Earliest second > now at which a pass/watchdog/discard could decide differently.
        For a free agent that is the second both its wrap-up and its ready_time are over. Heaps and
        per-queue cached values: O(log n) per change since the previous call."""

    # offer results; each raises CoreError for an unknown/finished offer or the wrong phase
    def offer_member_gone(self, offer_id: int, now: int) -> None: ...  # ringing
    def offer_answered(self, offer_id: int, agent_uuid: str, now: int) -> Answer: ...  # ringing -> answered
    def offer_bridged(self, offer_id: int, now: int) -> None: ...  # answered -> bridged
    def offer_bridge_failed(self, offer_id: int, member_gone: bool, now: int) -> None: ...  # answered
    def offer_ended(self, offer_id: int, now: int) -> None: ...  # bridged
    def offer_failed(self, offer_id: int, cause: str, now: int) -> None: ...  # ringing
    def offer_withdrawn(self, offer_id: int, now: int, held_elsewhere: bool | None = None) -> None:
        """ringing -> done: the offer never reached FreeSWITCH (cluster: the agent's claim failed).
        Restores exactly what the offer changed (agent state as before any reservation,
        last_offered_call, the offering tier's state, the tiers it set Standby, the member's claim
        -> Waiting / ring marker kept, ring-progressively and top-down channel variables), each only
        if it still holds the offer's value. No penalty (no delay, no no-answer count).
        ``held_elsewhere`` (default: agent_held(agent)): True -> no agent/tier journal, no event;
        False -> agent/tier restorations journaled + one agent-state-change (restored state).
        Never bridge-agent-fail. Member changes are always journaled."""

    # several ccfast nodes (docs/cluster.md)
    def agent_hold(self, name: str, held: bool) -> None:
        """Held by another node: never offered here; row, journal, events untouched. By name
        (survives the agent row arriving later / agent del)."""
    def agent_held(self, name: str) -> bool: ...
    def held_agents(self) -> list[str]: ...
    def agent_apply(self, name: str, cols: dict | None, now: int | None = None) -> None:
        """Row values another node wrote: None deletes (with tiers), unknown name inserts, else
        updates the given columns. No journal, no events, no cancels; indexes follow. ValueError
        for unknown columns or a rename."""
    def tier_apply(self, queue: str, agent: str, cols: dict | None, now: int | None = None) -> None:
        """Same for a tiers row (state/level/position)."""
    def queue_suspend(self, name: str, suspended: bool) -> None:
        """Lost queue: no dispatch, no timeouts/discards/next_change for it, rows kept as they are;
        False resumes tracking from the rows. CoreError("Queue not found!") if not loaded."""
    def queue_suspended(self, name: str) -> bool: ...
    def members_forget(self, name: str, keep: Iterable[str] = ()) -> list[str]:
        """A suspended queue about to be re-taken: drop its member rows (except rows with a live
        offer and uuids in ``keep``) so the database's rows can be loaded instead. No journal, no
        events, queue counters untouched; dropped rows' re-adoption entries go too. Returns the
        dropped uuids in creation order. CoreError("Queue not found!") if not loaded, ValueError
        if the queue is not suspended."""

    # outputs and introspection
    def drain_journal(self) -> list[tuple[str, str, tuple, dict]]: ...
    def drain_events(self) -> list[tuple[str, dict[str, str]]]: ...
    def live_offers(self) -> list[Offer]: ...
    def member_offers(self, member_uuid: str) -> list[Offer]: ...
    def agent_offer(self, name: str) -> Offer | None: ...
    def member_count(self, queue: str) -> int: ...  # rows in Waiting or Trying (members-count)
    def member_summary(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """({(queue, state): rows}, {queue: earliest rejoined_epoch or joined_epoch of its Waiting
        or Trying rows}) over every member row (a metrics scrape without building the rows)."""
    def stats(self) -> dict[str, int]: ...
    # tests only: the incremental pass state against a recomputation (list of differences), and
    # next_change computed by scanning every free agent and queue (must equal next_change)
    def _selfcheck(self) -> list[str]: ...
    def _scan_next_change(self, now: int) -> int | None: ...
