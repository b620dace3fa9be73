"""A monitor's spec → what to probe: the Service's port, the Secrets' credentials, the guard.

Read when a monitor starts, when its spec changes, and when a Service,
Secret or EndpointSlice it depends on changes (the fleet's shared watches
requeue it; see ``dependencies``). Every destination passes the core's
``targets.refusal`` whatever the configuration says.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from mcp_health_operator.core import spec as specs
from mcp_health_operator.core import targets
from mcp_health_operator.core.config import Config
from mcp_health_operator.core.targets import Method, Refused, Target, Transport
from mcp_health_operator.kube.api import Kube, NotFound, ServicePort

Dependency = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class Single:
    """One address to probe."""

    target: Target


@dataclass(frozen=True, slots=True)
class PerEndpoint:
    """Each ready endpoint of a Service; ``template`` is the target without its URL."""

    namespace: str
    service: str
    port_name: str
    template: Target


async def addresses(host: str) -> list[str]:
    """The addresses ``host`` resolves to (none if it does not), for the target checks."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def display(spec: specs.MonitorSpec | None) -> str:
    """The target as the status and the metrics name it."""
    if spec is None:
        return ""
    t = spec.target
    if t.service is not None:
        ns = f"{t.service.namespace}/" if t.service.namespace else ""
        return f"svc/{ns}{t.service.name}:{t.service.port}"
    return t.url or ""


def dependencies(spec: specs.MonitorSpec, namespace: str) -> frozenset[Dependency]:
    """The Services, Secrets and EndpointSlices (by Service name) the spec reads."""
    deps: set[Dependency] = set()
    t = spec.target
    if t.service is not None:
        svc_ns = t.service.namespace or namespace
        deps.add(("Service", svc_ns, t.service.name))
        if t.endpoint_policy is not None:
            deps.add(("EndpointSlice", svc_ns, t.service.name))
    refs = []
    if t.auth is not None:
        refs += [t.auth.headers_secret_ref, t.auth.bearer_token_secret_ref]
    if t.tls is not None:
        refs.append(t.tls.ca_secret_ref)
    deps.update(("Secret", namespace, ref.name) for ref in refs if ref is not None)
    return frozenset(deps)


class Resolver:
    def __init__(self, kube: Kube, config: Config) -> None:
        self.kube = kube
        self.config = config

    async def resolve(self, spec: specs.MonitorSpec, namespace: str) -> Single | PerEndpoint:
        """What ``spec`` (of a monitor in ``namespace``) probes; raises ``Refused``."""
        t = spec.target
        template = Target(
            url="",
            transport=Transport(t.transport),
            resource_uri=t.resource_uri,
            insecure_skip_verify=bool(t.tls and t.tls.insecure_skip_verify),
            method=Method(spec.probe.method),
            expect_tools=spec.probe.expect_tools,
        )
        if t.service is not None and t.endpoint_policy is not None:
            svc_ns = self._service_namespace(t.service, namespace)
            port = await self._service_port(svc_ns, t.service)
            if port.external_name is not None:
                raise Refused(
                    "TargetNotAllowed",
                    f"Service {svc_ns}/{t.service.name} is an ExternalName "
                    f"({port.external_name}): it has no endpoints to probe one by one",
                )
            return PerEndpoint(
                svc_ns,
                t.service.name,
                port.name,
                await self._with_credentials(spec, namespace, template),
            )
        url, named = await self._url(spec, namespace)
        if t.path:
            url = url.rstrip("/") + "/" + t.path.lstrip("/")
        await self._guard(url, resolve=not named)
        target = await self._with_credentials(spec, namespace, template)
        return Single(replace(target, url=url))

    async def _url(self, spec: specs.MonitorSpec, namespace: str) -> tuple[str, bool]:
        """The target's URL, and whether it is exempt from resolving here (``--resolve``)."""
        t = spec.target
        transport = Transport(t.transport)
        if t.url is not None:
            if not self.config.url_allowed(t.url):
                raise Refused(
                    "TargetNotAllowed",
                    f"URL targets are not allowed by the operator's configuration "
                    f"(spec.target.url {targets.endpoint(t.url, transport)})",
                )
            return t.url, False
        assert t.service is not None
        svc_ns = self._service_namespace(t.service, namespace)
        port = await self._service_port(svc_ns, t.service)
        if port.external_name is not None:
            # An alias of an outside name: the same rules as a URL target.
            url = f"{t.scheme}://{port.external_name}:{port.number}"
            if not self.config.url_allowed(url):
                raise Refused(
                    "TargetNotAllowed",
                    f"Service {svc_ns}/{t.service.name} is an ExternalName for "
                    f"{port.external_name}: probing it is probing a URL target, which the "
                    f"operator's configuration does not allow",
                )
            return url, False
        host = f"{t.service.name}.{svc_ns}.svc.{self.config.cluster_domain}"
        short = f"{t.service.name}.{svc_ns}.svc:{port.number}"
        # --resolve: a Service name the operator cannot resolve where it runs (tests, demo).
        mapped = self.config.resolve.get(f"{host}:{port.number}") or self.config.resolve.get(short)
        if mapped is not None:
            return f"{t.scheme}://{mapped}", True
        # Fully qualified, with the trailing dot: no DNS search path is tried,
        # so no other domain's answer can stand in for the Service's. Over
        # TLS the name stays as certificates carry it (without the dot): there
        # the certificate check binds whatever answers to the Service's name.
        dot = "" if t.scheme == "https" else "."
        return f"{t.scheme}://{host}{dot}:{port.number}", False

    async def _service_port(self, namespace: str, service: specs.ServiceRef) -> ServicePort:
        try:
            return await self.kube.service_port(namespace, service.name, service.port)
        except NotFound as exc:
            raise Refused("ServiceNotFound", str(exc)) from None

    def _service_namespace(self, service: specs.ServiceRef, namespace: str) -> str:
        svc_ns = service.namespace or namespace
        if svc_ns != namespace and not self.config.allow_cross_namespace:
            raise Refused(
                "TargetNotAllowed",
                f"spec.target.service.namespace {svc_ns!r} differs from the monitor's "
                f"namespace {namespace!r}; the operator allows only its own namespace",
            )
        return svc_ns

    async def _guard(self, url: str, *, resolve: bool) -> None:
        """Refuse metadata, link-local and API-server destinations, whatever the config says."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # Every address the host resolves to here is checked: the same rules
        # for a Service's name as for a URL's host.
        resolved = await addresses(host) if resolve else []
        api_ips: list[str] = []
        if self.config.api_server is not None:
            api_ips = await addresses(self.config.api_server[0])
        reason = targets.refusal(
            host=host,
            port=port,
            resolved=resolved,
            api_server=self.config.api_server,
            api_server_ips=api_ips,
            cluster_domain=self.config.cluster_domain,
        )
        if reason is not None:
            raise Refused("TargetNotAllowed", f"{reason}; the operator never probes it")

    async def _with_credentials(
        self, spec: specs.MonitorSpec, namespace: str, target: Target
    ) -> Target:
        """``target`` with the headers and CA the spec's Secrets hold."""
        headers: dict[str, str] = {}
        ca_data: str | None = None
        auth, tls = spec.target.auth, spec.target.tls
        named = (auth and (auth.headers_secret_ref or auth.bearer_token_secret_ref)) or (
            tls and tls.ca_secret_ref
        )
        if named and not self.config.secrets_allowed(namespace):
            raise Refused(
                "SecretNotAllowed",
                f"the operator is not allowed to read Secrets in namespace {namespace} "
                "(the chart's targets.readSecrets / targets.secretNamespaces)",
            )
        try:
            if auth is not None and auth.headers_secret_ref is not None:
                headers.update(await self.kube.secret_data(namespace, auth.headers_secret_ref.name))
            if auth is not None and auth.bearer_token_secret_ref is not None:
                token = await self._secret_key(namespace, auth.bearer_token_secret_ref)
                headers["Authorization"] = f"Bearer {token.strip()}"
            if tls is not None and tls.ca_secret_ref is not None:
                ca_data = await self._secret_key(namespace, tls.ca_secret_ref)
        except NotFound as exc:
            raise Refused("SecretNotFound", str(exc)) from None
        return replace(target, headers=headers, ca_data=ca_data)

    async def _secret_key(self, namespace: str, ref: specs.SecretKeyRef) -> str:
        data = await self.kube.secret_data(namespace, ref.name)
        if ref.key not in data:
            raise Refused(
                "SecretKeyNotFound", f"Secret {namespace}/{ref.name} has no key {ref.key}"
            )
        return data[ref.key]
