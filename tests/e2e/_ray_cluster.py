"""A Ray cluster of one or more nodes on this machine, for the Ray executor's tests.

Each node listens on a loopback address of its own (Ray turns 127.0.0.1 itself into
the machine's network address).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

HEAD_IP, SECOND_NODE_IP = "127.0.0.2", "127.0.0.3"


@contextmanager
def ray_cluster(
    cpus_per_node: tuple[int, ...],
    resources: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """A Ray cluster of one node per entry, started (and ended) by this process.

    Every node offers ``resources`` besides its CPUs (e.g. ``{"NPU": 2}``) and runs
    its workers with ``env`` on top of this process's environment. The engine finds
    the cluster through RAY_ADDRESS. Like every cluster Ray's test utilities start,
    it runs without token authentication: it listens on loopback addresses only.
    """
    from ray.cluster_utils import Cluster

    ips = (HEAD_IP, SECOND_NODE_IP)[: len(cpus_per_node)]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"RAY_USAGE_STATS_ENABLED": "0", "GLOO_SOCKET_IFNAME": "lo"}.items():
            patch.setenv(name, value)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        cluster = Cluster(shutdown_at_exit=False)
        try:
            for ip, cpus in zip(ips, cpus_per_node, strict=True):
                cluster.add_node(
                    node_ip_address=ip,
                    num_cpus=cpus,
                    resources=dict(resources or {}),
                    include_dashboard=False,
                    object_store_memory=100 << 20,
                )
            cluster.wait_for_nodes()
            patch.setenv("RAY_ADDRESS", cluster.address)
            yield cluster.address
        finally:
            cluster.shutdown()
