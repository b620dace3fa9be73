"""spec.probe.method and expectTools: the spec, the judge, the status and its condition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mcp_health_operator.core import conditions as cond
from mcp_health_operator.core import spec as specs
from mcp_health_operator.core import status
from mcp_health_operator.core.judge import Health, History, Observation, Thresholds, judge
from tests.unit.test_judge import seed_document
from tests.unit.test_status_and_budget import IDENTITY, NO_FIGURES, built

HANDSHAKE = Observation("Ok", 12.0, None, method="handshake")
FELL_BACK = replace(HANDSHAKE, fell_back=True)


def test_the_method_defaults_to_auto_and_takes_expected_tools() -> None:
    spec = specs.parse({"target": {"url": "http://mcp:8000"}})
    assert spec.probe.method == "auto" and spec.probe.expect_tools == ()
    spec = specs.parse(
        {
            "target": {"url": "http://mcp:8000"},
            "probe": {"method": "handshake", "expectTools": ["search", "fetch"]},
        }
    )
    assert spec.probe.method == "handshake"
    assert spec.probe.expect_tools == ("search", "fetch")


@pytest.mark.parametrize(
    "probe",
    [{"method": "handshake"}, {"expectTools": ["search"]}],
    ids=["handshake", "expectTools"],
)
def test_a_plain_get_cannot_be_judged_by_the_handshake(probe: dict[str, object]) -> None:
    raw = {"target": {"url": "http://mcp:8000", "transport": "http"}, "probe": probe}
    with pytest.raises(specs.SpecError, match="need an MCP transport"):
        specs.parse(raw)


def test_an_unknown_method_is_refused_naming_the_field() -> None:
    with pytest.raises(specs.SpecError, match=r"spec\.probe\.method"):
        specs.parse({"target": {"url": "http://mcp:8000"}, "probe": {"method": "ping"}})


def test_a_handshake_answered_is_healthy_with_nothing_else_to_judge() -> None:
    verdict = judge(HANDSHAKE, Thresholds(), History(), failure_threshold=1)
    assert verdict.health is Health.HEALTHY
    assert verdict.reasons == () and verdict.reachable


def test_a_slow_handshake_is_degraded_by_the_latency_threshold() -> None:
    slow = replace(HANDSHAKE, latency_ms=900.0)
    verdict = judge(slow, Thresholds(), History(), failure_threshold=1)
    assert verdict.health is Health.DEGRADED
    assert verdict.reasons == ("ProbeLatencyHigh",)


def test_missing_tools_count_as_a_failure_toward_the_threshold() -> None:
    missing = replace(HANDSHAKE, missing_tools=("search",))
    first = judge(missing, Thresholds(), History(Health.HEALTHY), failure_threshold=2)
    assert first.health is Health.HEALTHY  # one failure, threshold two
    assert first.reasons == ("ExpectedToolsMissing",) and first.consecutive_failures == 1
    second = judge(missing, Thresholds(), first.history(), failure_threshold=2)
    assert second.health is Health.UNHEALTHY
    assert "search" in second.message
    assert second.reachable  # the server answered: it is there, without the tool


def test_missing_tools_beside_a_healthy_document_still_make_it_unhealthy() -> None:
    read = Observation(
        "Ok", 5.0, seed_document(), method="healthResource", missing_tools=("search",)
    )
    verdict = judge(read, Thresholds(), History(), failure_threshold=1)
    assert verdict.health is Health.UNHEALTHY
    assert verdict.reasons == ("ExpectedToolsMissing",)


def test_the_status_names_the_method_and_the_condition_says_why() -> None:
    read = built(Observation("Ok", 5.0, seed_document(), method="healthResource"))
    assert read["probeMethod"] == "healthResource"
    published = cond.get(read["conditions"], cond.HEALTH_RESOURCE)
    assert published is not None and published["status"] == "True"
    assert published["reason"] == "HealthResourceRead"

    fell_back = built(FELL_BACK)
    assert fell_back["probeMethod"] == "handshake" and fell_back["health"] == "Healthy"
    assert all(fell_back[k] is None for k in NO_FIGURES)
    reachable = cond.get(fell_back["conditions"], cond.REACHABLE)
    assert reachable is not None and reachable["message"] == "server answered the handshake"
    hint = cond.get(fell_back["conditions"], cond.HEALTH_RESOURCE)
    assert hint is not None and hint["status"] == "False"
    assert hint["reason"] == "HealthResourceNotListed"
    assert "publishing the health document" in hint["message"]

    asked = cond.get(built(HANDSHAKE)["conditions"], cond.HEALTH_RESOURCE)
    assert asked is not None and asked["reason"] == "HandshakeRequested"


def test_a_failed_probe_leaves_the_method_and_its_condition_as_they_were() -> None:
    before = built(FELL_BACK)
    failed = built(
        Observation("Unreachable", 0.0, None, "cannot connect"),
        history=History(Health.HEALTHY),
        previous=before["conditions"],
    )
    assert "probeMethod" not in failed  # a merge patch keeps the last one
    kept = cond.get(failed["conditions"], cond.HEALTH_RESOURCE)
    assert kept == cond.get(before["conditions"], cond.HEALTH_RESOURCE)


@pytest.mark.parametrize(
    "obs",
    [
        Observation("Ok", 5.0, seed_document(), method="healthResource"),
        HANDSHAKE,
        FELL_BACK,
        Observation("Timeout", 1000.0, None, "no answer"),
    ],
    ids=["read", "handshake", "fell-back", "failed"],
)
def test_the_write_key_follows_the_method(obs: Observation) -> None:
    verdict = judge(obs, Thresholds(), History(), failure_threshold=1)
    key = status.key(
        verdict=verdict, obs=obs, thresholds=Thresholds(), identity=IDENTITY, generation=4
    )
    assert key == status.significant(built(obs, failure_threshold=1), Thresholds())


def test_a_change_of_method_is_worth_a_write() -> None:
    def key(obs: Observation) -> tuple[object, ...]:
        verdict = judge(obs, Thresholds(), History(), failure_threshold=1)
        return status.key(
            verdict=verdict, obs=obs, thresholds=Thresholds(), identity=IDENTITY, generation=4
        )

    assert key(HANDSHAKE) != key(
        replace(HANDSHAKE, method="healthResource", document=seed_document())
    )
