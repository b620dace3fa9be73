"""Per-endpoint monitors: the policy, endpoint discovery from slices, the combined verdict,
status entries and their write budget, Events and metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcp_health_operator.controller import metrics
from mcp_health_operator.core import conditions as cond
from mcp_health_operator.core import endpoints, health, status
from mcp_health_operator.core.endpoints import Endpoint, EndpointVerdict, Policy
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, judge
from tests.unit.test_health_document import SEED_EXAMPLE
from tests.unit.test_metrics import scrape

H, D, U, K = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.UNKNOWN
ANY, MAJORITY, ALL = Policy.ANY, Policy.MAJORITY, Policy.ALL
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# -- the policy -----------------------------------------------------------------------------

# id -> (endpoint healths, {policy: monitor health})
AGGREGATE: dict[str, tuple[list[Health], dict[Policy, Health]]] = {
    "all healthy": ([H, H, H], {ANY: H, MAJORITY: H, ALL: H}),
    "one of three unhealthy": ([H, U, H], {ANY: H, MAJORITY: H, ALL: U}),
    "two of three unhealthy": ([U, H, U], {ANY: H, MAJORITY: U, ALL: U}),
    "all unhealthy": ([U, U, U], {ANY: U, MAJORITY: U, ALL: U}),
    "half of four is no majority": ([H, H, U, U], {ANY: H, MAJORITY: U, ALL: U}),
    "three of four is a majority": ([H, H, H, U], {ANY: H, MAJORITY: H, ALL: U}),
    "one degraded": ([H, D, H], {ANY: H, MAJORITY: H, ALL: D}),
    "degraded majority": ([D, D, H], {ANY: H, MAJORITY: D, ALL: D}),
    "unknown is better than unhealthy": ([K, U, H], {ANY: H, MAJORITY: K, ALL: U}),
    "unknown is worse than degraded": ([K, D], {ANY: D, MAJORITY: K, ALL: K}),
    "a single endpoint is the monitor": ([D], {ANY: D, MAJORITY: D, ALL: D}),
    "no endpoints is unhealthy": ([], {ANY: U, MAJORITY: U, ALL: U}),
}


@pytest.mark.parametrize(("healths", "expected"), AGGREGATE.values(), ids=AGGREGATE.keys())
def test_aggregate(healths: list[Health], expected: dict[Policy, Health]) -> None:
    for policy, health_ in expected.items():
        assert endpoints.aggregate(healths, policy) is health_, policy
        # The order of the endpoints never matters.
        assert endpoints.aggregate(list(reversed(healths)), policy) is health_, policy


@pytest.mark.parametrize(
    ("n", "any_", "majority", "all_"),
    [(0, 0, 0, 0), (1, 1, 1, 1), (2, 1, 2, 2), (3, 1, 2, 3), (4, 1, 3, 4), (5, 1, 3, 5)],
)
def test_quorum(n: int, any_: int, majority: int, all_: int) -> None:
    assert [endpoints.quorum(p, n) for p in (ANY, MAJORITY, ALL)] == [any_, majority, all_]


# -- discovery from EndpointSlices ----------------------------------------------------------


def slice_(
    eps: list[dict[str, Any]],
    *,
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "addressType": address_type,
        "ports": [{"name": "mcp", "port": 18000, "protocol": "TCP"}] if ports is None else ports,
        "endpoints": eps,
    }


def ep(address: str, pod: str | None = None, ready: bool | None = True) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [address]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if pod is not None:
        out["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "ns", "uid": f"uid-{pod}"}
    return out


def test_ready_endpoints_with_their_pods() -> None:
    found = endpoints.from_slices(
        [
            slice_(
                [
                    ep("10.0.0.2", "b"),
                    ep("10.0.0.1", "a", ready=None),  # nil means ready
                    ep("10.0.0.3", "c", ready=False),  # not ready (or terminating)
                ]
            )
        ],
        "mcp",
    )
    assert found == [
        Endpoint("10.0.0.1", 18000, "a", "ns", "uid-a"),
        Endpoint("10.0.0.2", 18000, "b", "ns", "uid-b"),
    ]


def test_the_port_is_matched_by_the_service_port_name() -> None:
    ports = [{"name": "metrics", "port": 9090}, {"name": "mcp", "port": 18000}]
    assert endpoints.from_slices([slice_([ep("10.0.0.1")], ports=ports)], "mcp")[0].port == 18000
    assert endpoints.from_slices([slice_([ep("10.0.0.1")], ports=ports)], "metrics")[0].port == 9090
    # A slice without the port has nothing to probe for this Service port.
    assert endpoints.from_slices([slice_([ep("10.0.0.1")], ports=ports)], "other") == []
    # A single unnamed Service port is "" in the slice.
    unnamed = [{"port": 8000}]
    assert endpoints.from_slices([slice_([ep("10.0.0.1")], ports=unnamed)], "")[0].port == 8000


def test_duplicates_fqdn_and_odd_entries_are_skipped() -> None:
    found = endpoints.from_slices(
        [
            slice_([ep("10.0.0.1", "a")]),
            slice_([ep("10.0.0.1", "a")]),  # the same endpoint in two slices
            slice_([ep("mcp.example.com")], address_type="FQDN"),
            slice_([{"addresses": []}, {"addresses": ["not-an-ip"]}]),
            slice_([ep("fd00::1", "v6")], address_type="IPv6"),
            slice_([{"addresses": ["10.0.0.9"], "targetRef": {"kind": "Node", "name": "n1"}}]),
        ],
        "mcp",
    )
    assert [(e.address, e.pod) for e in found] == [
        ("10.0.0.1", "a"),
        ("10.0.0.9", None),  # an endpoint that is not a pod is probed, never deleted
        ("fd00::1", "v6"),
    ]
    assert found[2].authority == "[fd00::1]:18000"


# -- the combined verdict -------------------------------------------------------------------

DOC = health.parse(SEED_EXAMPLE)
UNHEALTHY_DOC = health.parse(
    SEED_EXAMPLE.replace('"status": "healthy"', '"status": "unhealthy"', 1)
)


def endpoint_verdict(
    address: str,
    history: Health,
    *,
    document: health.HealthCheckResponse | None = DOC,
    outcome: str = "Ok",
    latency_ms: float = 10.0,
) -> EndpointVerdict:
    obs = Observation(outcome, latency_ms, document, "" if document else "connection refused")
    verdict = judge(obs, Thresholds(), History(history), failure_threshold=1)
    return EndpointVerdict(Endpoint(address, 18000, f"pod-{address[-1]}"), verdict, obs)


def three(bad: int) -> list[EndpointVerdict]:
    out = [endpoint_verdict(f"127.0.0.{i}", H) for i in range(2, 5)]
    for i in range(bad):
        out[i] = endpoint_verdict(
            f"127.0.0.{i + 2}", H, document=None, outcome="Unreachable", latency_ms=3.0
        )
    return out


@pytest.mark.parametrize(
    ("bad", "policy", "expected"),
    [
        (0, ALL, H),
        (1, ALL, U),
        (1, MAJORITY, H),
        (2, MAJORITY, U),
        (2, ANY, H),
        (3, ANY, U),
    ],
)
def test_combine_by_policy(bad: int, policy: Policy, expected: Health) -> None:
    verdict, obs, shown = endpoints.combine(three(bad), policy, History(H))
    assert verdict.health is expected
    if bad:
        assert verdict.message.startswith(f"{3 - bad}/3 endpoints healthy (policy {policy})")
        assert "127.0.0.2:18000 (pod-2)" in verdict.message
        reasons = ["TargetUnreachable"]
        if expected is H:  # Healthy by the policy, and it says so first
            reasons.insert(0, "HealthyByPolicy")
        assert list(verdict.reasons) == reasons
        healthy_condition = cond.from_verdict(verdict)[1]
        assert healthy_condition.reason == ("HealthyByPolicy" if expected is H else reasons[0])
        assert healthy_condition.status == ("True" if expected is H else "False")
    else:
        assert verdict.findings == ()
    # The document shown is a probed endpoint's (the worst that answered).
    assert (obs.document is not None) == (bad < 3)
    assert shown is not None
    assert verdict.reachable == (bad < 3)


def test_combine_shows_the_worst_document_and_the_slowest_latency() -> None:
    results = [
        endpoint_verdict("127.0.0.2", H, latency_ms=40.0),
        endpoint_verdict("127.0.0.3", H, document=UNHEALTHY_DOC, latency_ms=5.0),
    ]
    verdict, obs, shown = endpoints.combine(results, MAJORITY, History(H))
    assert shown is results[1]
    assert obs.document is UNHEALTHY_DOC
    assert obs.latency_ms == 40.0
    assert verdict.health is U


def test_combine_counters_are_the_deciding_endpoints() -> None:
    results = three(1)  # one endpoint with 1 failure, two with 0
    under_all, _, _ = endpoints.combine(results, ALL, History(H))
    under_any, _, _ = endpoints.combine(results, ANY, History(H))
    assert under_all.consecutive_failures == 1
    assert under_any.consecutive_failures == 0


def test_no_ready_endpoints_is_unhealthy_and_says_so() -> None:
    verdict, obs, shown = endpoints.combine([], ALL, History(H, consecutive_failures=2))
    assert verdict.health is U
    assert verdict.reasons == ("NoReadyEndpoints",)
    assert verdict.consecutive_failures == 3
    assert not verdict.reachable
    assert shown is None and obs.document is None


# -- status entries, summary and the write budget -------------------------------------------


def test_status_entries_worst_first_and_bounded() -> None:
    many = [endpoint_verdict(f"10.0.{i // 250}.{i % 250}", H) for i in range(150)]
    many[120] = endpoint_verdict("10.9.9.9", H, document=None, outcome="Timeout")
    entries = endpoints.status_entries(many, {("10.9.9.9", 18000): "2026-01-01T00:00:00Z"})
    assert len(entries) == endpoints.STATUS_LIMIT
    first = entries[0]
    assert first["address"] == "10.9.9.9" and first["health"] == "Unhealthy"
    assert first["reason"] == "ProbeTimeout"
    assert first["lastProbeTime"] == "2026-01-01T00:00:00Z"
    assert first["pod"] == "pod-9" and first["port"] == 18000
    assert "lastProbeTime" not in entries[1]  # never probed: no time, not a made-up one
    summary = endpoints.summary(many, MAJORITY)
    assert summary == {
        "policy": "majority",
        "total": 150,
        "healthy": 149,
        "degraded": 0,
        "unhealthy": 1,
        "unknown": 0,
        "shown": 100,
        "ratio": "149/150",
    }


def test_a_refused_endpoint_says_why() -> None:
    why = "0.1.2.3 is in 0.0.0.0/8, a link-local, metadata or unspecified range"
    refused = EndpointVerdict(
        Endpoint("0.1.2.3", 80, "evil"),
        endpoints.refused(why),
        Observation("Refused", 0.0),
        refused=why,
    )
    (entry,) = endpoints.status_entries([refused], {})
    assert entry["health"] == "Unknown" and entry["reason"] == "TargetNotAllowed"
    assert entry["message"] == why
    # A monitor of refused endpoints only is Unknown, not reachable, and says why
    # (the conditions need a reason for Reachable=False).
    verdict, _, _ = endpoints.combine([refused], ANY, History())
    assert (verdict.health, verdict.reachable) == (K, False)
    assert verdict.reasons == ("TargetNotAllowed",)
    assert [c.reason for c in cond.from_verdict(verdict)] == [
        "TargetNotAllowed",
        "TargetNotAllowed",
        "TargetNotAllowed",
    ]


def per_endpoint_status(results: list[EndpointVerdict], policy: Policy = ALL) -> dict[str, Any]:
    verdict, obs, _ = endpoints.combine(results, policy, History(H))
    out = status.build(
        verdict=verdict,
        obs=obs,
        thresholds=Thresholds(),
        identity=None,
        target="svc/x:8000",
        endpoint="http://127.0.0.2:18000/mcp",
        generation=1,
        previous_conditions=[],
        now=NOW,
    )
    out["endpoints"] = endpoints.status_entries(results, {})
    out["endpointSummary"] = endpoints.summary(results, policy)
    return out


def key(s: dict[str, Any]) -> Any:
    return status.significant(s, Thresholds())


def test_an_endpoints_health_change_is_significant_its_latency_is_not() -> None:
    base = per_endpoint_status(three(0), ANY)  # ANY: the monitor stays Healthy throughout
    one_down = per_endpoint_status(three(1), ANY)
    assert one_down["health"] == base["health"] == "Healthy"
    assert key(one_down) != key(base)
    slower = [endpoint_verdict(f"127.0.0.{i}", H, latency_ms=300.0) for i in range(2, 5)]
    assert key(per_endpoint_status(slower, ANY)) == key(base)


def test_an_endpoint_coming_or_going_is_significant() -> None:
    base = per_endpoint_status(three(0))
    fewer = per_endpoint_status(three(0)[:2])
    assert key(fewer) != key(base)
    replaced = three(0)
    replaced[0] = EndpointVerdict(
        Endpoint("127.0.0.2", 18000, "pod-new"), replaced[0].verdict, replaced[0].obs
    )
    assert key(per_endpoint_status(replaced)) != key(base)


def test_a_single_target_status_clears_the_endpoint_fields() -> None:
    obs = Observation("Ok", 5.0, DOC)
    s = status.build(
        verdict=judge(obs, Thresholds(), History()),
        obs=obs,
        thresholds=Thresholds(),
        identity=None,
        target="svc/x:8000",
        endpoint="http://x/mcp",
        generation=1,
        previous_conditions=[],
        now=NOW,
    )
    # Merge patch: None removes what a per-endpoint generation of the monitor wrote.
    assert s["endpoints"] is None and s["endpointSummary"] is None


# -- Events ---------------------------------------------------------------------------------


def test_endpoint_events_on_transitions_only() -> None:
    bad = three(1)[0]
    (event,) = endpoints.transitions(H, bad)
    assert (event.type, event.reason) == ("Warning", "EndpointUnhealthy")
    assert event.message.startswith("127.0.0.2:18000 (pod-2) Unhealthy: ")
    assert endpoints.transitions(U, bad) == []  # still Unhealthy: nothing new
    good = endpoint_verdict("127.0.0.2", U)
    (event,) = endpoints.transitions(U, good)
    assert (event.type, event.reason) == ("Normal", "EndpointRecovered")
    assert endpoints.transitions(K, good) == []  # a new endpoint turning Healthy is no news


# -- metrics --------------------------------------------------------------------------------


def test_endpoint_metrics_carry_endpoint_and_pod_and_disappear_with_it() -> None:
    fig = metrics.MonitorFigures("ns", "m", "svc/x:8000")
    fig.endpoints = (
        metrics.EndpointFigures("127.0.0.2:18000", "a", H, 4.0, 0),
        metrics.EndpointFigures("127.0.0.3:18000", "b", U, 1.5, 3),
        metrics.EndpointFigures("127.0.0.4:18000", "c", K, 0.0, 0),
    )
    got = scrape([fig])
    labels = {"namespace": "ns", "monitor": "m", "target": "svc/x:8000"}
    status_ = {s["endpoint"]: v for s, v in got["mcp_endpoint_health_status"]}
    assert status_ == {"127.0.0.2:18000": 1.0, "127.0.0.3:18000": 0.0}  # Unknown: absent
    assert ({**labels, "endpoint": "127.0.0.3:18000", "pod": "b"}, 3.0) in got[
        "mcp_endpoint_probe_consecutive_failures"
    ]
    assert ({**labels, "endpoint": "127.0.0.2:18000", "pod": "a"}, 4.0) in got[
        "mcp_endpoint_probe_latency_ms"
    ]
    counts = {s["health"]: v for s, v in got["mcp_endpoints"]}
    assert counts == {"Healthy": 1.0, "Degraded": 0.0, "Unhealthy": 1.0, "Unknown": 1.0}
    fig.endpoints = fig.endpoints[:1]
    got = scrape([fig])
    assert [s["pod"] for s, _ in got["mcp_endpoint_health_status"]] == ["a"]
    # A single-target monitor has none of them, and the guide's series are unchanged.
    fig.endpoints = ()
    got = scrape([fig])
    assert "mcp_endpoint_health_status" not in got and "mcp_endpoints" not in got
