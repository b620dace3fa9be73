"""The MCPHealthMonitor spec as typed, defaulted values.

Purely data: parses the custom resource's ``spec`` (already validated by the
API server against the CRD schema in ``crds/``) into frozen pydantic models.
The defaults repeat the CRD's, so a spec read from anywhere (tests, an older
object stored before a default existed) means the same thing.
"""

from __future__ import annotations

import re
import weakref
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcp_health_operator.core.endpoints import Policy as EndpointPolicy
from mcp_health_operator.core.judge import Thresholds
from mcp_health_operator.core.remediation import (
    PodDeletionPolicy,
    Policy,
    RestartPolicy,
    ScalingPolicy,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"1m30s"`` → 90.0 seconds (Go ``time.Duration`` spelling, no sign)."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 5s, 1m30s)")
    return total


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class SecretKeyRef(_Spec):
    name: str
    key: str


class SecretRef(_Spec):
    name: str


class ServiceRef(_Spec):
    name: str
    port: int | str
    namespace: str | None = None


class Auth(_Spec):
    bearer_token_secret_ref: SecretKeyRef | None = Field(None, alias="bearerTokenSecretRef")
    headers_secret_ref: SecretRef | None = Field(None, alias="headersSecretRef")


class TLS(_Spec):
    ca_secret_ref: SecretKeyRef | None = Field(None, alias="caSecretRef")
    insecure_skip_verify: bool = Field(False, alias="insecureSkipVerify")


class PerEndpointSpec(_Spec):
    """Probe each ready endpoint of the Service, and judge the monitor by ``policy``."""

    enabled: bool = True
    policy: Literal["any", "majority", "all"] = "all"

    @property
    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(self.policy)


class TargetSpec(_Spec):
    service: ServiceRef | None = None
    url: str | None = None
    transport: Literal["streamable-http", "sse", "http"] = "streamable-http"
    scheme: Literal["http", "https"] = "http"
    path: str | None = None
    resource_uri: str = Field("health://status", alias="resourceUri")
    auth: Auth | None = None
    tls: TLS | None = None
    per_endpoint: PerEndpointSpec | None = Field(None, alias="perEndpoint")

    @model_validator(mode="after")
    def _one_target(self) -> TargetSpec:
        if (self.service is None) == (self.url is None):
            raise ValueError("exactly one of target.service and target.url must be set")
        if self.per_endpoint is not None and self.url is not None:
            raise ValueError(
                "spec.target.perEndpoint needs spec.target.service (a URL has no endpoints)"
            )
        return self

    @property
    def endpoint_policy(self) -> EndpointPolicy | None:
        """The policy when each endpoint is probed, else None."""
        pe = self.per_endpoint
        return pe.endpoint_policy if pe is not None and pe.enabled else None


class ProbeSpec(_Spec):
    interval: str = "5s"
    timeout: str = "1s"
    failure_threshold: int = Field(3, ge=1, alias="failureThreshold")
    success_threshold: int = Field(1, ge=1, alias="successThreshold")
    method: Literal["auto", "healthResource", "handshake"] = "auto"
    expect_tools: tuple[str, ...] = Field((), alias="expectTools")

    @field_validator("interval", "timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # raises, and pydantic names the field
        return value

    # Read on every probe; a frozen spec's values never change, so each is
    # worked out once (a cached_property is no field: not in dumps or equality).
    @cached_property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    @cached_property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)


class Band(_Spec):
    degraded: float
    unhealthy: float | None = None


class ThresholdsSpec(_Spec):
    pool_utilization: Band = Field(
        default_factory=lambda: Band(degraded=0.80, unhealthy=0.95), alias="poolUtilization"
    )
    memory_utilization: Band = Field(
        default_factory=lambda: Band(degraded=0.80, unhealthy=0.95), alias="memoryUtilization"
    )
    database_latency_ms: Band = Field(
        default_factory=lambda: Band(degraded=100.0), alias="databaseLatencyMs"
    )
    probe_latency_ms: Band = Field(
        default_factory=lambda: Band(degraded=500.0), alias="probeLatencyMs"
    )

    def to_thresholds(self) -> Thresholds:
        return self._thresholds

    @cached_property
    def _thresholds(self) -> Thresholds:
        # Asked on every probe; the spec is frozen, and so is what it makes.
        return Thresholds(
            pool_degraded=self.pool_utilization.degraded,
            pool_unhealthy=_or(self.pool_utilization.unhealthy, 0.95),
            memory_degraded=self.memory_utilization.degraded,
            memory_unhealthy=_or(self.memory_utilization.unhealthy, 0.95),
            database_latency_ms=self.database_latency_ms.degraded,
            probe_latency_ms=self.probe_latency_ms.degraded,
        )


class WorkloadRef(_Spec):
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str
    container: str | None = None  # default: the first container


class RestartSpec(_Spec):
    enabled: bool = True
    after: str = "30s"

    _after = field_validator("after")(lambda cls, v: _checked_duration(v))


class PodDeletionSpec(_Spec):
    enabled: bool = True
    after: str = "30s"

    _after = field_validator("after")(lambda cls, v: _checked_duration(v))


class ConfigMapKeyRef(_Spec):
    name: str
    key: str


class ToolRef(_Spec):
    name: str = "scale_pool"
    argument: str = "size"


class ScaleDownSpec(_Spec):
    enabled: bool = False
    after: str = "30m"

    _after = field_validator("after")(lambda cls, v: _checked_duration(v))


class PoolScalingSpec(_Spec):
    enabled: bool = True
    after: str = "30s"
    step: int = Field(5, ge=1)
    max: int = Field(50, ge=1)
    method: Literal["env", "configMap", "mcpTool"] = "mcpTool"
    env_var: str = Field("DB_POOL_MAX_SIZE", alias="envVar")
    config_map: ConfigMapKeyRef | None = Field(None, alias="configMap")
    tool: ToolRef = Field(default_factory=lambda: ToolRef.model_validate({}))
    scale_down: ScaleDownSpec = Field(
        default_factory=lambda: ScaleDownSpec.model_validate({}), alias="scaleDown"
    )

    _after = field_validator("after")(lambda cls, v: _checked_duration(v))

    @model_validator(mode="after")
    def _method_has_its_target(self) -> PoolScalingSpec:
        if self.method == "configMap" and self.config_map is None:
            raise ValueError("poolScaling.configMap is required when method is configMap")
        return self


class RemediationSpec(_Spec):
    dry_run: bool = Field(False, alias="dryRun")
    cooldown: str = "10m"
    max_per_hour: int = Field(3, ge=1, alias="maxPerHour")
    workload: WorkloadRef | None = None
    restart: RestartSpec | None = None
    pod_deletion: PodDeletionSpec | None = Field(None, alias="podDeletion")
    pool_scaling: PoolScalingSpec | None = Field(None, alias="poolScaling")

    _cooldown = field_validator("cooldown")(lambda cls, v: _checked_duration(v))

    @model_validator(mode="after")
    def _workload_when_needed(self) -> RemediationSpec:
        needs = (self.restart is not None and self.restart.enabled) or (
            self.pool_scaling is not None
            and self.pool_scaling.enabled
            and self.pool_scaling.method == "env"
        )
        if needs and self.workload is None:
            raise ValueError("remediation.workload is required for restart and env scaling")
        return self

    def to_policy(self) -> Policy:
        return self._policy

    @cached_property
    def _policy(self) -> Policy:
        # Asked on every probe of a monitor that remediates; made once, as
        # the spec and the policy are both frozen.
        restart = self.restart
        scaling = self.pool_scaling
        pods = self.pod_deletion
        return Policy(
            restart=RestartPolicy(
                enabled=restart is not None and restart.enabled,
                after_s=parse_duration(restart.after) if restart else 30.0,
            ),
            pod_deletion=PodDeletionPolicy(
                enabled=pods is not None and pods.enabled,
                after_s=parse_duration(pods.after) if pods else 30.0,
            ),
            scaling=ScalingPolicy(
                enabled=scaling is not None and scaling.enabled,
                after_s=parse_duration(scaling.after) if scaling else 30.0,
                step=scaling.step if scaling else 5,
                maximum=scaling.max if scaling else 50,
                scale_down=scaling is not None and scaling.scale_down.enabled,
                scale_down_after_s=parse_duration(scaling.scale_down.after) if scaling else 1800.0,
            ),
            cooldown_s=parse_duration(self.cooldown),
            max_per_hour=self.max_per_hour,
            dry_run=self.dry_run,
        )


def _checked_duration(value: str) -> str:
    parse_duration(value)
    return value


def _or(value: float | None, default: float) -> float:
    return default if value is None else value  # 0 is a threshold, not "unset"


# Thousands of monitors share a handful of probe, threshold and remediation
# settings: one frozen instance of each value (and what it works out once)
# instead of a copy per monitor. Weak: a value no monitor uses is forgotten.
_SHARED: weakref.WeakValueDictionary[_Spec, _Spec] = weakref.WeakValueDictionary()


class MonitorSpec(_Spec):
    target: TargetSpec
    probe: ProbeSpec = Field(
        default_factory=lambda: ProbeSpec.model_validate({}), validate_default=True
    )
    thresholds: ThresholdsSpec = Field(
        default_factory=lambda: ThresholdsSpec.model_validate({}), validate_default=True
    )
    remediation: RemediationSpec | None = None

    @field_validator("probe", "thresholds", "remediation", mode="after")
    @classmethod
    def _shared(cls, value: _Spec | None) -> _Spec | None:
        return None if value is None else _SHARED.setdefault(value, value)


class SpecError(ValueError):
    """The spec cannot be used; the message names the field."""


def parse(raw: dict[str, Any]) -> MonitorSpec:
    try:
        spec = MonitorSpec.model_validate(raw)
        if spec.probe.timeout_s >= spec.probe.interval_s:
            raise SpecError("spec.probe.timeout must be shorter than spec.probe.interval")
        if spec.target.transport == "http" and (
            spec.probe.method == "handshake" or spec.probe.expect_tools
        ):
            raise SpecError(
                "spec.probe.method handshake and spec.probe.expectTools need an MCP transport "
                "(spec.target.transport http is a plain GET)"
            )
        pods = spec.remediation.pod_deletion if spec.remediation else None
        if pods is not None and pods.enabled and spec.target.endpoint_policy is None:
            raise SpecError(
                "spec.remediation.podDeletion needs spec.target.perEndpoint "
                "(the pods are found through the Service's endpoints)"
            )
        return spec
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"spec.{where}: {first['msg']}" if where else first["msg"]) from None
    except ValueError as exc:
        raise SpecError(str(exc)) from None
