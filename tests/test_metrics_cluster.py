"""ccfast_cluster_* metrics: folded in at scrape time from the glue's totals (Metrics.watch_cluster)."""

from __future__ import annotations

import collections

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccfast.metrics import CLAIM_BUCKETS, CLUSTER_SPECS, PREFIX, Metrics, MetricsError, exported_series


class FakeGlue:
    """What ClusterGlue exposes to the hook: plain totals and the latest claim round trips."""

    def __init__(self) -> None:
        self.totals = {k: 0 for k in (
            "owned_queues", "live_nodes", "remote_claims", "queues_gained", "queues_lost", "nodes_terminated",
            "claims_reaped", "claims_claimed", "claims_refused", "claims_unavailable", "claims_released",
            "feed_published", "feed_received", "feed_reconnects", "feed_overflows", "redirects",
            "callers_readopted", "callers_lost", "queue_retakes")}
        self.timed = 0
        self.recent: collections.deque[float] = collections.deque(maxlen=4)
        self.calls = 0

    def metric_totals(self) -> dict[str, int]:
        self.calls += 1
        return dict(self.totals)

    def claim_latencies(self):
        return self.timed, self.recent

    def claim(self, seconds: float) -> None:
        self.timed += 1
        self.recent.append(seconds)


def samples(m: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(m.text()):
        if fam.name.startswith(PREFIX + "cluster_"):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_cluster_metrics_follow_the_glue_totals_at_scrape_time():
    m = Metrics(process_metrics=False)
    single = samples(m)  # a single node: the series exist, at 0
    assert single[(PREFIX + "cluster_owned_queues", ())] == 0 and set(single.values()) == {0}
    glue = FakeGlue()
    m.watch_cluster(glue)
    assert glue.calls == 0  # nothing until a scrape
    first = samples(m)
    assert first[(PREFIX + "cluster_owned_queues", ())] == 0
    assert first[(PREFIX + "cluster_claims_total", (("result", "refused"),))] == 0
    assert first[(PREFIX + "cluster_feed_messages_total", (("direction", "received"),))] == 0
    assert first[(PREFIX + "cluster_claim_seconds_count", ())] == 0
    glue.totals.update(owned_queues=3, live_nodes=2, remote_claims=5, queues_gained=4, queues_lost=1,
                       claims_claimed=10, claims_refused=2, claims_unavailable=1, feed_published=7,
                       feed_received=9, callers_lost=2, queue_retakes=1, redirects=6)
    for seconds in (0.0004, 0.0009, 0.003):
        glue.claim(seconds)
    s = samples(m)
    assert s[(PREFIX + "cluster_owned_queues", ())] == 3 and s[(PREFIX + "cluster_live_nodes", ())] == 2
    assert s[(PREFIX + "cluster_remote_claims", ())] == 5
    assert s[(PREFIX + "cluster_queues_gained_total", ())] == 4 and s[(PREFIX + "cluster_queues_lost_total", ())] == 1
    assert s[(PREFIX + "cluster_claims_total", (("result", "claimed"),))] == 10
    assert s[(PREFIX + "cluster_claims_total", (("result", "unavailable"),))] == 1
    assert s[(PREFIX + "cluster_feed_messages_total", (("direction", "published"),))] == 7
    assert s[(PREFIX + "cluster_callers_lost_total", ())] == 2 and s[(PREFIX + "cluster_redirects_total", ())] == 6
    assert s[(PREFIX + "cluster_claim_seconds_count", ())] == 3
    assert s[(PREFIX + "cluster_claim_seconds_bucket", (("le", "0.0005"),))] == 1
    assert s[(PREFIX + "cluster_claim_seconds_bucket", (("le", "0.001"),))] == 2
    assert s[(PREFIX + "cluster_claim_seconds_sum", ())] == pytest.approx(0.0043)
    # the next scrape adds only what happened since; gauges follow the current value
    glue.totals.update(owned_queues=1, queues_lost=3, claims_claimed=11)
    for seconds in (0.02, 0.03, 0.04, 0.05, 0.06):  # more than the 4 kept: the oldest is missing
        glue.claim(seconds)
    s = samples(m)
    assert s[(PREFIX + "cluster_owned_queues", ())] == 1
    assert s[(PREFIX + "cluster_queues_lost_total", ())] == 3
    assert s[(PREFIX + "cluster_claims_total", (("result", "claimed"),))] == 11
    assert s[(PREFIX + "cluster_claim_seconds_count", ())] == 3 + 4
    assert s[(PREFIX + "cluster_claim_seconds_sum", ())] == pytest.approx(0.0043 + 0.18)
    with pytest.raises(MetricsError):
        m.watch_cluster(FakeGlue())


def test_cluster_specs_are_exported_series_in_base_units():
    series = exported_series()
    for spec in CLUSTER_SPECS:
        assert spec.name.startswith(PREFIX + "cluster_")
        for name in spec.series_names():
            assert series[name] is spec
        if spec.kind == "histogram":
            assert spec.name.endswith("_seconds") and spec.buckets == CLAIM_BUCKETS
