"""Several ccfast nodes on one PostgreSQL (docs/cluster.md).

* ``keys``: ``node_id(configured)``, ``lock_key(name)``;
* ``pg``: ``PgSession`` (one dedicated asyncpg connection under trio-asyncio), cluster tables;
* ``ownership``: ``QueueOwnership`` — advisory locks + fencing generation + heartbeats + failover;
* ``fence``: ``FencedStore`` — member rows written only under the owner's generation;
* ``claims``: ``AgentClaims`` — an agent offered by one node at a time;
* ``feed``: ``ChangeFeed`` — LISTEN/NOTIFY between nodes;
* ``node``: ``ClusterNode`` — all of the above for one process.
"""

from .claims import AgentClaims
from .errors import ClusterError, ClusterUnavailable, NodeIdInUse
from .feed import CHANNEL, RESYNC, ChangeFeed, FeedMessage
from .fence import FencedStore
from .keys import NS_NODE, NS_QUEUE, lock_key, node_id
from .node import ClusterNode
from .ownership import QueueOwnership
from .pg import PgSession, ensure_cluster_schema

__all__ = [
    "AgentClaims", "CHANNEL", "ChangeFeed", "ClusterError", "ClusterNode", "ClusterUnavailable", "FeedMessage",
    "FencedStore", "NS_NODE", "NS_QUEUE", "NodeIdInUse", "PgSession", "QueueOwnership", "RESYNC",
    "ensure_cluster_schema", "lock_key", "node_id",
]
