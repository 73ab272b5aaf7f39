"""Every process's Redis clients come from here: one server (`redis://`) or a cluster (`redis+cluster://`).

`redis+cluster://[user:password@]host:port[,host:port...]` names one or more nodes of a Redis Cluster;
the client learns the rest (CLUSTER SLOTS), routes every keyed command to its slot's master, follows
MOVED/ASK, and refreshes the map after a failover. Everything we run against Redis is cluster-safe:
each script and pipeline-with-transaction touches one stream's keys only (`{stream}:...` shares the
stream's slot), the request path's pipeline is split by the client per node and sent concurrently,
and plain PUBLISH is broadcast to every node by the cluster bus, so a subscriber on any node hears it.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# What an unreachable or reshaping Redis raises; a cluster client's own errors (no node covers a
# slot, no node answers at all) are not RedisErrors.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes of a cluster URL and its credentials (`username`/`password`, when given).

    Raises ValueError for a URL that names no node, or a node without a numeric port.
    """
    rest = url.split("://", 1)[1].split("/", 1)[0]
    credentials: dict[str, Any] = {}
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        credentials = {k: unquote(v) for k, v in (("username", user), ("password", password)) if v}
    nodes = []
    for part in filter(None, rest.split(",")):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"cluster node {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("a cluster URL names at least one host:port")
    return nodes, credentials


def connect(url: str, **options: Any) -> Redis:
    """A client for REDIS_URL; `options` are connection options (timeouts, retry, health checks).

    A cluster client is typed as `Redis`: it answers every command the processes use, under the same
    names, so callers need not know which one they were given (`as_cluster` tells when it matters).
    """
    if not is_cluster_url(url):
        return Redis.from_url(url, **options)
    nodes, credentials = cluster_nodes(url)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        ssl=url.startswith("rediss+"),
        **credentials,
        **options,
    )
    return cast(Redis, client)


async def learn_slots(client: Redis) -> None:
    """Before a (re)subscription: a cluster client reads the slot map afresh. Pub/sub picks its node from
    the map without filling or refreshing it, so a fresh client, or one from before a failover, fails."""
    cluster = as_cluster(client)
    if cluster is not None:
        await cluster.nodes_manager.initialize()


def as_cluster(client: Redis) -> RedisCluster | None:
    """The cluster client behind `client`, or None for a single server."""
    found: object = client
    return found if isinstance(found, RedisCluster) else None
