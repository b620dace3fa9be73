"""The monitor spec: durations, the guide's defaults, and errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_health_operator.core import spec
from mcp_health_operator.core.judge import Thresholds
from mcp_health_operator.core.spec import SpecError, parse, parse_duration

CRD = Path(__file__).resolve().parents[2] / "crds" / "mcphealth.dev_mcphealthmonitors.yaml"
SERVICE = {"service": {"name": "codebase-mcp", "port": 8000}}
URL = {"url": "http://codebase-mcp.default.svc:8000/mcp"}

# -- parse_duration -------------------------------------------------------------------------

GOOD_DURATIONS: dict[str, float] = {
    "500ms": 0.5,
    "100ms": 0.1,
    "5s": 5.0,
    "1.5s": 1.5,
    "0s": 0.0,
    "2m": 120.0,
    "1m30s": 90.0,
    "1h": 3600.0,
    "1h1m1s": 3661.0,
    "1s500ms": 1.5,
}


@pytest.mark.parametrize(("text", "seconds"), GOOD_DURATIONS.items(), ids=GOOD_DURATIONS.keys())
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


BAD_DURATIONS = {
    "empty": "",
    "no unit": "5",
    "negative": "-5s",
    "plus sign": "+5s",
    "unknown unit": "5x",
    "trailing number": "1s2",
    "leading space": " 5s",
    "trailing space": "5s ",
    "upper-case unit": "5S",
    "unit only": "s",
    "no leading digit": ".5s",
    "dangling dot": "1.s",
    "days are not Go units": "1d",
    "microseconds are not accepted": "5us",
}


@pytest.mark.parametrize("text", BAD_DURATIONS.values(), ids=BAD_DURATIONS.keys())
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .* \(use e\.g\. 500ms, 5s, 1m30s\)"):
        parse_duration(text)


def _crd_duration_patterns() -> list[re.Pattern[str]]:
    text = CRD.read_text()
    found = re.findall(
        r"^\s*(interval|timeout):\s*\n(?:\s+\w+:.*\n)*?\s+pattern: '(.+)'", text, re.M
    )
    assert {name for name, _ in found} == {"interval", "timeout"}, found
    return [re.compile(pattern) for _, pattern in found]


@pytest.mark.parametrize(
    "text",
    [*GOOD_DURATIONS, *BAD_DURATIONS.values()],
)
def test_parse_duration_accepts_exactly_what_the_crd_pattern_accepts(text: str) -> None:
    for pattern in _crd_duration_patterns():
        try:
            parse_duration(text)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == bool(pattern.search(text)), (text, pattern.pattern)


# -- parse: defaults ------------------------------------------------------------------------


def test_defaults_are_the_guides() -> None:
    s = parse({"target": SERVICE})
    # "interval: 5s / timeout: 1s / retries: 3"
    assert (s.probe.interval, s.probe.timeout) == ("5s", "1s")
    assert (s.probe.interval_s, s.probe.timeout_s) == (5.0, 1.0)
    assert (s.probe.failure_threshold, s.probe.success_threshold) == (3, 1)
    t = s.thresholds
    assert (t.pool_utilization.degraded, t.pool_utilization.unhealthy) == (0.80, 0.95)
    assert (t.memory_utilization.degraded, t.memory_utilization.unhealthy) == (0.80, 0.95)
    assert t.database_latency_ms.degraded == 100.0
    assert t.probe_latency_ms.degraded == 500.0
    assert t.to_thresholds() == Thresholds(
        pool_degraded=0.80,
        pool_unhealthy=0.95,
        memory_degraded=0.80,
        memory_unhealthy=0.95,
        database_latency_ms=100.0,
        probe_latency_ms=500.0,
    )
    assert t.to_thresholds() == Thresholds()  # the judge's own defaults agree


def test_target_defaults() -> None:
    t = parse({"target": SERVICE}).target
    assert t.service is not None and t.url is None
    assert (t.service.name, t.service.port, t.service.namespace) == ("codebase-mcp", 8000, None)
    assert (t.transport, t.scheme, t.path) == ("streamable-http", "http", None)
    assert t.resource_uri == "health://status"
    assert t.auth is None and t.tls is None


def test_camel_case_fields_and_unknown_fields() -> None:
    s = parse(
        {
            "target": {
                **URL,
                "transport": "sse",
                "resourceUri": "health://custom",
                "auth": {"bearerTokenSecretRef": {"name": "token", "key": "value"}},
                "tls": {"insecureSkipVerify": True},
                "somethingNew": 1,
            },
            "probe": {
                "interval": "10s",
                "timeout": "500ms",
                "failureThreshold": 5,
                "successThreshold": 2,
            },
            "somethingElse": {"restart": True},
        }
    )
    assert s.target.url == URL["url"] and s.target.transport == "sse"
    assert s.target.resource_uri == "health://custom"
    assert s.target.auth is not None and s.target.auth.bearer_token_secret_ref == spec.SecretKeyRef(
        name="token", key="value"
    )
    assert s.target.tls is not None and s.target.tls.insecure_skip_verify
    assert (s.probe.interval_s, s.probe.timeout_s) == (10.0, 0.5)
    assert (s.probe.failure_threshold, s.probe.success_threshold) == (5, 2)


# -- parse: errors name the field -----------------------------------------------------------

# id -> (raw spec, the exact error message)
SPEC_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "both service and url": (
        {"target": {**SERVICE, **URL}},
        "spec.target: Value error, exactly one of target.service and target.url must be set",
    ),
    "neither service nor url": (
        {"target": {"transport": "sse"}},
        "spec.target: Value error, exactly one of target.service and target.url must be set",
    ),
    "no target": ({}, "spec.target: Field required"),
    "service without port": (
        {"target": {"service": {"name": "codebase-mcp"}}},
        "spec.target.service.port: Field required",
    ),
    "unknown transport": (
        {"target": {**URL, "transport": "grpc"}},
        "spec.target.transport: Input should be 'streamable-http', 'sse' or 'http'",
    ),
    "failureThreshold 0": (
        {"target": SERVICE, "probe": {"failureThreshold": 0}},
        "spec.probe.failureThreshold: Input should be greater than or equal to 1",
    ),
    "successThreshold 0": (
        {"target": SERVICE, "probe": {"successThreshold": 0}},
        "spec.probe.successThreshold: Input should be greater than or equal to 1",
    ),
    "pool band not a number": (
        {"target": SERVICE, "thresholds": {"poolUtilization": {"degraded": "high"}}},
        "spec.thresholds.poolUtilization.degraded: Input should be a valid number, "
        "unable to parse string as a number",
    ),
    "timeout equal to interval": (
        {"target": SERVICE, "probe": {"interval": "1s", "timeout": "1s"}},
        "spec.probe.timeout must be shorter than spec.probe.interval",
    ),
    "timeout longer than interval": (
        {"target": SERVICE, "probe": {"interval": "5s", "timeout": "1m"}},
        "spec.probe.timeout must be shorter than spec.probe.interval",
    ),
    "default timeout against a 1s interval": (
        {"target": SERVICE, "probe": {"interval": "1s"}},
        "spec.probe.timeout must be shorter than spec.probe.interval",
    ),
    "timeout equal in other units": (
        {"target": SERVICE, "probe": {"interval": "1m", "timeout": "60000ms"}},
        "spec.probe.timeout must be shorter than spec.probe.interval",
    ),
}


@pytest.mark.parametrize(("raw", "message"), SPEC_ERRORS.values(), ids=SPEC_ERRORS.keys())
def test_spec_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(raw)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


TIMINGS_ACCEPTED = {
    "999ms of 1s": ("1s", "999ms"),
    "1s of 5s": ("5s", "1s"),
    "59s of 1m": ("1m", "59s"),
    "100ms of 1s": ("1s", "100ms"),
}


@pytest.mark.parametrize(
    ("interval", "timeout"), TIMINGS_ACCEPTED.values(), ids=TIMINGS_ACCEPTED.keys()
)
def test_timeout_shorter_than_interval_is_accepted(interval: str, timeout: str) -> None:
    s = parse({"target": SERVICE, "probe": {"interval": interval, "timeout": timeout}})
    assert s.probe.timeout_s < s.probe.interval_s


@pytest.mark.parametrize("field", ["interval", "timeout"])
def test_malformed_duration_error_names_the_field(field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse({"target": SERVICE, "probe": {field: "5x"}})
    assert f"spec.probe.{field}" in str(caught.value)


# -- to_thresholds --------------------------------------------------------------------------


def test_custom_thresholds() -> None:
    s = parse(
        {
            "target": SERVICE,
            "thresholds": {
                "poolUtilization": {"degraded": 0.5, "unhealthy": 0.7},
                "memoryUtilization": {"degraded": 0.6, "unhealthy": 0.9},
                "databaseLatencyMs": {"degraded": 250},
                "probeLatencyMs": {"degraded": 800},
            },
        }
    )
    assert s.thresholds.to_thresholds() == Thresholds(
        pool_degraded=0.5,
        pool_unhealthy=0.7,
        memory_degraded=0.6,
        memory_unhealthy=0.9,
        database_latency_ms=250.0,
        probe_latency_ms=800.0,
    )


def test_a_band_without_unhealthy_keeps_the_default_unhealthy() -> None:
    s = parse({"target": SERVICE, "thresholds": {"poolUtilization": {"degraded": 0.6}}})
    t = s.thresholds.to_thresholds()
    assert (t.pool_degraded, t.pool_unhealthy) == (0.6, 0.95)
    # The other bands keep their defaults too.
    assert (t.memory_degraded, t.memory_unhealthy) == (0.80, 0.95)


@pytest.mark.parametrize("band", ["poolUtilization", "memoryUtilization"])
def test_an_explicit_zero_unhealthy_is_kept(band: str) -> None:
    s = parse({"target": SERVICE, "thresholds": {band: {"degraded": 0.0, "unhealthy": 0.0}}})
    t = s.thresholds.to_thresholds()
    assert (t.pool_unhealthy if band == "poolUtilization" else t.memory_unhealthy) == 0.0


# -- perEndpoint and podDeletion ------------------------------------------------------------


def test_per_endpoint_defaults_and_policy() -> None:
    assert parse({"target": SERVICE}).target.endpoint_policy is None
    on = parse({"target": {**SERVICE, "perEndpoint": {}}}).target
    assert on.per_endpoint is not None and on.per_endpoint.enabled
    assert on.endpoint_policy == "all"  # the strictest: no bad replica goes unnoticed
    majority = parse({"target": {**SERVICE, "perEndpoint": {"policy": "majority"}}})
    assert majority.target.endpoint_policy == "majority"
    off = parse({"target": {**SERVICE, "perEndpoint": {"enabled": False}}})
    assert off.target.endpoint_policy is None


def test_pod_deletion_policy() -> None:
    s = parse(
        {
            "target": {**SERVICE, "perEndpoint": {"policy": "any"}},
            "remediation": {"podDeletion": {"after": "45s"}},
        }
    )
    assert s.remediation is not None
    policy = s.remediation.to_policy()
    assert (policy.pod_deletion.enabled, policy.pod_deletion.after_s) == (True, 45.0)
    assert not policy.restart.enabled
    plain = parse({"target": SERVICE, "remediation": {}}).remediation
    assert plain is not None and not plain.to_policy().pod_deletion.enabled


PER_ENDPOINT_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "perEndpoint with a URL": (
        {"target": {**URL, "perEndpoint": {}}},
        "spec.target: Value error, spec.target.perEndpoint needs spec.target.service "
        "(a URL has no endpoints)",
    ),
    "unknown policy": (
        {"target": {**SERVICE, "perEndpoint": {"policy": "most"}}},
        "spec.target.perEndpoint.policy: Input should be 'any', 'majority' or 'all'",
    ),
    "podDeletion without perEndpoint": (
        {"target": SERVICE, "remediation": {"podDeletion": {}}},
        "spec.remediation.podDeletion needs spec.target.perEndpoint "
        "(the pods are found through the Service's endpoints)",
    ),
    "podDeletion with perEndpoint disabled": (
        {
            "target": {**SERVICE, "perEndpoint": {"enabled": False}},
            "remediation": {"podDeletion": {}},
        },
        "spec.remediation.podDeletion needs spec.target.perEndpoint "
        "(the pods are found through the Service's endpoints)",
    ),
    "podDeletion after not a duration": (
        {
            "target": {**SERVICE, "perEndpoint": {}},
            "remediation": {"podDeletion": {"after": "soon"}},
        },
        "spec.remediation.podDeletion.after: Value error, invalid duration 'soon' "
        "(use e.g. 500ms, 5s, 1m30s)",
    ),
}


@pytest.mark.parametrize(
    ("raw", "message"), PER_ENDPOINT_ERRORS.values(), ids=PER_ENDPOINT_ERRORS.keys()
)
def test_per_endpoint_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(raw)
    assert str(caught.value) == message


def test_disabled_pod_deletion_needs_no_endpoints() -> None:
    s = parse({"target": SERVICE, "remediation": {"podDeletion": {"enabled": False}}})
    assert s.remediation is not None and not s.remediation.to_policy().pod_deletion.enabled


def test_per_endpoint_defaults_repeat_the_crds() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props = schema["properties"]["spec"]["properties"]["target"]["properties"]["perEndpoint"]
    defaults = {k: v["default"] for k, v in props["properties"].items()}
    model = spec.PerEndpointSpec.model_validate({}).model_dump(by_alias=True)
    assert defaults == model == {"enabled": True, "policy": "all"}
    assert props["properties"]["policy"]["enum"] == ["any", "majority", "all"]


def test_monitors_with_the_same_settings_share_one_instance_of_each() -> None:
    """Thousands of monitors: one frozen probe/thresholds/remediation value each, not a copy."""
    a = spec.parse({"target": {"service": {"name": "a", "port": 80}}})
    b = spec.parse(
        {
            "target": {"service": {"name": "b", "port": 80}},
            "thresholds": {"poolUtilization": {"degraded": 0.8, "unhealthy": 0.95}},  # the default
            "remediation": {"dryRun": True},
        }
    )
    c = spec.parse(
        {
            "target": {"service": {"name": "c", "port": 80}},
            "probe": {"interval": "10s"},
            "remediation": {"dryRun": True},
        }
    )
    assert a.probe is b.probe and a.thresholds is b.thresholds
    assert b.remediation is c.remediation
    assert c.probe is not a.probe and c.probe.interval_s == 10.0 and a.probe.interval_s == 5.0
    assert a.target is not b.target
