"""spec.remediation: the defaults, the policy they make, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_health_operator.core.remediation import Policy, RestartPolicy, ScalingPolicy
from mcp_health_operator.core.spec import RemediationSpec, SpecError, parse

CRD = Path(__file__).resolve().parents[2] / "crds" / "mcphealth.dev_mcphealthmonitors.yaml"
SERVICE = {"service": {"name": "codebase-mcp", "port": 8000}}
WORKLOAD = {"name": "codebase"}


def remediation(raw: dict[str, Any]) -> RemediationSpec:
    spec = parse({"target": SERVICE, "remediation": raw}).remediation
    assert spec is not None
    return spec


def test_remediation_is_off_by_default() -> None:
    assert parse({"target": SERVICE}).remediation is None


def test_spec_defaults() -> None:
    r = remediation({"workload": WORKLOAD, "restart": {}, "poolScaling": {}})
    assert (r.dry_run, r.cooldown, r.max_per_hour) == (False, "10m", 3)
    assert r.workload is not None
    assert (r.workload.kind, r.workload.name, r.workload.container) == (
        "Deployment",
        "codebase",
        None,
    )
    assert r.restart is not None and (r.restart.enabled, r.restart.after) == (True, "30s")
    p = r.pool_scaling
    assert p is not None
    assert (p.enabled, p.after, p.step, p.max, p.method) == (True, "30s", 5, 50, "mcpTool")
    assert (p.env_var, p.config_map) == ("DB_POOL_MAX_SIZE", None)
    assert (p.tool.name, p.tool.argument) == ("scale_pool", "size")
    assert (p.scale_down.enabled, p.scale_down.after) == (False, "30m")


def _crd_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The defaults the API server fills in, for a section that is present."""
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop:
            out[name] = prop["default"]
        elif prop.get("type") == "object" and "properties" in prop:
            out[name] = _crd_defaults(prop)
    return out


def _within(model: dict[str, Any], crd: dict[str, Any], path: str = "") -> list[str]:
    """Where the model's value differs from the CRD's default."""
    wrong = []
    for name, value in crd.items():
        where = f"{path}.{name}".lstrip(".")
        if isinstance(value, dict):
            wrong += _within(model.get(name) or {}, value, where)
        elif model.get(name) != value:
            wrong.append(f"{where}: model {model.get(name)!r}, CRD {value!r}")
    return wrong


def test_the_models_defaults_repeat_the_crds() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaults = _crd_defaults(schema["properties"]["spec"]["properties"]["remediation"])
    # Every section the CRD defaults is in the comparison.
    assert {
        "cooldown",
        "maxPerHour",
        "dryRun",
        "restart",
        "podDeletion",
        "poolScaling",
        "workload",
    } <= set(defaults)
    assert defaults["poolScaling"]["scaleDown"] == {"enabled": False, "after": "30m"}
    model = RemediationSpec.model_validate(
        {"workload": WORKLOAD, "restart": {}, "podDeletion": {}, "poolScaling": {}}
    ).model_dump(by_alias=True)
    assert _within(model, defaults) == []


DEFAULT_SCALING = ScalingPolicy(
    enabled=True,
    after_s=30.0,
    step=5,
    maximum=50,
    scale_down=False,
    scale_down_after_s=1800.0,
)

# id -> (spec.remediation, the policy it makes)
POLICIES: dict[str, tuple[dict[str, Any], Policy]] = {
    "empty: nothing enabled, the rails at their defaults": (
        {},
        Policy(
            restart=RestartPolicy(enabled=False, after_s=30.0),
            scaling=ScalingPolicy(enabled=False),
            cooldown_s=600.0,
            max_per_hour=3,
            dry_run=False,
        ),
    ),
    "restart section: on, after 30s": (
        {"workload": WORKLOAD, "restart": {}},
        Policy(restart=RestartPolicy(enabled=True, after_s=30.0), cooldown_s=600.0),
    ),
    "restart disabled: no workload needed": (
        {"restart": {"enabled": False}},
        Policy(restart=RestartPolicy(enabled=False, after_s=30.0)),
    ),
    "poolScaling section: on, after 30s, step 5, max 50, scale-down off at 30m": (
        {"poolScaling": {}},
        Policy(scaling=DEFAULT_SCALING),
    ),
    "poolScaling disabled": (
        {"poolScaling": {"enabled": False}},
        Policy(scaling=ScalingPolicy(enabled=False)),
    ),
    "scale-down on with its default window": (
        {"poolScaling": {"scaleDown": {"enabled": True}}},
        Policy(
            scaling=ScalingPolicy(
                enabled=True, scale_down=True, scale_down_after_s=1800.0, step=5, maximum=50
            )
        ),
    ),
    "everything set": (
        {
            "dryRun": True,
            "cooldown": "1m30s",
            "maxPerHour": 5,
            "workload": {"kind": "StatefulSet", "name": "codebase", "container": "server"},
            "restart": {"after": "2m"},
            "poolScaling": {
                "after": "45s",
                "step": 2,
                "max": 20,
                "method": "env",
                "envVar": "POOL_MAX",
                "scaleDown": {"enabled": True, "after": "1h"},
            },
        },
        Policy(
            restart=RestartPolicy(enabled=True, after_s=120.0),
            scaling=ScalingPolicy(
                enabled=True,
                after_s=45.0,
                step=2,
                maximum=20,
                scale_down=True,
                scale_down_after_s=3600.0,
            ),
            cooldown_s=90.0,
            max_per_hour=5,
            dry_run=True,
        ),
    ),
    "cooldown 0s: no cooldown, the budget alone": (
        {"cooldown": "0s"},
        Policy(cooldown_s=0.0),
    ),
    "sub-second durations": (
        {"workload": WORKLOAD, "restart": {"after": "1500ms"}, "cooldown": "500ms"},
        Policy(restart=RestartPolicy(enabled=True, after_s=1.5), cooldown_s=0.5),
    ),
}


@pytest.mark.parametrize(("raw", "policy"), POLICIES.values(), ids=POLICIES.keys())
def test_to_policy(raw: dict[str, Any], policy: Policy) -> None:
    assert remediation(raw).to_policy() == policy


# id -> spec.remediation that must be accepted
ACCEPTED: dict[str, dict[str, Any]] = {
    "restart disabled without a workload": {"restart": {"enabled": False}},
    "MCP-tool scaling without a workload": {"poolScaling": {"method": "mcpTool"}},
    "configMap scaling with its configMap, without a workload": {
        "poolScaling": {"method": "configMap", "configMap": {"name": "pool", "key": "max"}}
    },
    "env scaling disabled without a workload": {"poolScaling": {"enabled": False, "method": "env"}},
    "env scaling with a workload": {"workload": WORKLOAD, "poolScaling": {"method": "env"}},
    "a StatefulSet": {"workload": {"kind": "StatefulSet", "name": "db"}, "restart": {}},
}


@pytest.mark.parametrize("raw", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(raw: dict[str, Any]) -> None:
    assert remediation(raw).to_policy().max_per_hour == 3


_DURATION_HINT = "(use e.g. 500ms, 5s, 1m30s)"

# id -> (spec.remediation, the exact error message)
ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "restart without a workload": (
        {"restart": {}},
        "spec.remediation: Value error, remediation.workload is required for restart and env "
        "scaling",
    ),
    "env scaling without a workload": (
        {"poolScaling": {"method": "env"}},
        "spec.remediation: Value error, remediation.workload is required for restart and env "
        "scaling",
    ),
    "configMap method without its configMap": (
        {"poolScaling": {"method": "configMap"}},
        "spec.remediation.poolScaling: Value error, poolScaling.configMap is required when "
        "method is configMap",
    ),
    "configMap without its key": (
        {"poolScaling": {"method": "configMap", "configMap": {"name": "pool"}}},
        "spec.remediation.poolScaling.configMap.key: Field required",
    ),
    "bad cooldown": (
        {"cooldown": "ten minutes"},
        f"spec.remediation.cooldown: Value error, invalid duration 'ten minutes' {_DURATION_HINT}",
    ),
    "bad restart.after": (
        {"workload": WORKLOAD, "restart": {"after": "30"}},
        f"spec.remediation.restart.after: Value error, invalid duration '30' {_DURATION_HINT}",
    ),
    "bad poolScaling.after": (
        {"poolScaling": {"after": "1d"}},
        f"spec.remediation.poolScaling.after: Value error, invalid duration '1d' {_DURATION_HINT}",
    ),
    "bad poolScaling.scaleDown.after": (
        {"poolScaling": {"scaleDown": {"enabled": True, "after": "-30m"}}},
        "spec.remediation.poolScaling.scaleDown.after: Value error, invalid duration '-30m' "
        f"{_DURATION_HINT}",
    ),
    "maxPerHour 0": (
        {"maxPerHour": 0},
        "spec.remediation.maxPerHour: Input should be greater than or equal to 1",
    ),
    "step 0": (
        {"poolScaling": {"step": 0}},
        "spec.remediation.poolScaling.step: Input should be greater than or equal to 1",
    ),
    "max 0": (
        {"poolScaling": {"max": 0}},
        "spec.remediation.poolScaling.max: Input should be greater than or equal to 1",
    ),
    "unknown method": (
        {"poolScaling": {"method": "sql"}},
        "spec.remediation.poolScaling.method: Input should be 'env', 'configMap' or 'mcpTool'",
    ),
    "a DaemonSet": (
        {"workload": {"kind": "DaemonSet", "name": "agent"}, "restart": {}},
        "spec.remediation.workload.kind: Input should be 'Deployment' or 'StatefulSet'",
    ),
    "workload without a name": (
        {"workload": {"kind": "Deployment"}},
        "spec.remediation.workload.name: Field required",
    ),
}


@pytest.mark.parametrize(("raw", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse({"target": SERVICE, "remediation": raw})
    assert str(caught.value) == message
