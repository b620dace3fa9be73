"""kube.resolver: a spec → what to probe, and the dependencies the watches requeue it for."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from mcp_health_operator.core import spec as specs
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.targets import Refused
from mcp_health_operator.kube import resolver
from mcp_health_operator.kube.api import Kube, NotFound, ServicePort


class FakeKube:
    def __init__(self, services: dict[str, ServicePort], secrets: dict[str, dict[str, str]]):
        self.services, self.secrets = services, secrets

    async def service_port(self, namespace: str, name: str, port: int | str) -> ServicePort:
        if name not in self.services:
            raise NotFound(f"Service {namespace}/{name} not found")
        return self.services[name]

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.secrets:
            raise NotFound(f"Secret {namespace}/{name} not found")
        return self.secrets[name]


def resolve(
    target: dict[str, Any],
    *,
    services: dict[str, ServicePort] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
    config: Config | None = None,
) -> resolver.Single | resolver.PerEndpoint:
    kube = cast(Kube, FakeKube(services or {}, secrets or {}))
    r = resolver.Resolver(kube, config or Config())
    return asyncio.run(r.resolve(specs.parse({"target": target}), "team-a"))


def test_a_service_by_port_name_is_its_cluster_name_at_the_port_number() -> None:
    got = resolve(
        {"service": {"name": "mcp", "port": "http"}},
        services={"mcp": ServicePort(8080, "http", None)},
    )
    assert isinstance(got, resolver.Single)
    # The trailing dot: no DNS search path is consulted.
    assert got.target.url == "http://mcp.team-a.svc.cluster.local.:8080"


def test_the_cluster_domain_is_the_configured_one_and_tls_names_keep_no_dot() -> None:
    services = {"mcp": ServicePort(8443, "", None)}
    target = {"service": {"name": "mcp", "port": 8443}, "scheme": "https"}
    got = resolve(target, services=services, config=Config(cluster_domain="corp.internal"))
    assert isinstance(got, resolver.Single)
    # Certificates name the Service without the dot; the TLS check binds the answer to it.
    assert got.target.url == "https://mcp.team-a.svc.corp.internal:8443"


def test_secrets_outside_the_allowed_namespaces_are_refused_before_any_read() -> None:
    target = {
        "service": {"name": "mcp", "port": 8000},
        "auth": {"bearerTokenSecretRef": {"name": "tok", "key": "token"}},
    }
    services = {"mcp": ServicePort(8000, "", None)}
    secrets = {"tok": {"token": "t"}}
    for allowed in ((), ("team-b",)):
        with pytest.raises(Refused) as refused:
            resolve(
                target,
                services=services,
                secrets=secrets,
                config=Config(secret_namespaces=allowed),
            )
        assert refused.value.reason == "SecretNotAllowed"
        assert "team-a" in refused.value.message
    got = resolve(
        target, services=services, secrets=secrets, config=Config(secret_namespaces=("team-a",))
    )
    assert isinstance(got, resolver.Single)


def test_credentials_come_from_the_secrets_the_spec_names() -> None:
    got = resolve(
        {
            "service": {"name": "mcp", "port": 8000},
            "auth": {"bearerTokenSecretRef": {"name": "tok", "key": "token"}},
        },
        services={"mcp": ServicePort(8000, "", None)},
        secrets={"tok": {"token": "s3cret\n"}},
    )
    assert isinstance(got, resolver.Single)
    assert got.target.headers == {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize(
    ("services", "secrets", "reason"),
    [
        ({}, {}, "ServiceNotFound"),
        ({"mcp": ServicePort(8000, "", None)}, {}, "SecretNotFound"),
        ({"mcp": ServicePort(8000, "", None)}, {"tok": {}}, "SecretKeyNotFound"),
    ],
)
def test_what_is_missing_is_the_reason(
    services: dict[str, ServicePort], secrets: dict[str, dict[str, str]], reason: str
) -> None:
    target = {
        "service": {"name": "mcp", "port": 8000},
        "auth": {"bearerTokenSecretRef": {"name": "tok", "key": "token"}},
    }
    with pytest.raises(Refused) as refused:
        resolve(target, services=services, secrets=secrets)
    assert refused.value.reason == reason


def test_an_externalname_service_is_refused_unless_url_targets_allow_its_host() -> None:
    services = {"mcp": ServicePort(8000, "mcp", "mcp.example.invalid")}
    with pytest.raises(Refused) as refused:
        resolve({"service": {"name": "mcp", "port": 8000}}, services=services)
    assert refused.value.reason == "TargetNotAllowed"
    assert "ExternalName" in refused.value.message
    assert "mcp.example.invalid" in refused.value.message
    allowed = Config(allow_url_targets=True, url_allow_list=("http://mcp.example.invalid:8000",))
    got = resolve({"service": {"name": "mcp", "port": 8000}}, services=services, config=allowed)
    assert isinstance(got, resolver.Single)
    assert got.target.url == "http://mcp.example.invalid:8000"


def test_an_externalname_service_has_no_endpoints_to_probe_one_by_one() -> None:
    services = {"mcp": ServicePort(8000, "mcp", "mcp.example.invalid")}
    target = {"service": {"name": "mcp", "port": "mcp"}, "perEndpoint": {"policy": "all"}}
    with pytest.raises(Refused, match="no endpoints"):
        resolve(target, services=services)


def test_dependencies_name_the_service_its_slices_and_the_secrets() -> None:
    spec = specs.parse(
        {
            "target": {
                "service": {"name": "mcp", "port": "mcp"},
                "perEndpoint": {"policy": "all"},
                "auth": {"bearerTokenSecretRef": {"name": "tok", "key": "token"}},
                "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}},
            }
        }
    )
    assert resolver.dependencies(spec, "team-a") == {
        ("Service", "team-a", "mcp"),
        ("EndpointSlice", "team-a", "mcp"),
        ("Secret", "team-a", "tok"),
        ("Secret", "team-a", "ca"),
    }
    single = specs.parse({"target": {"service": {"name": "mcp", "port": 8000}}})
    assert resolver.dependencies(single, "team-a") == {("Service", "team-a", "mcp")}
