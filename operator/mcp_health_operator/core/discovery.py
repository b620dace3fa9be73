"""Discovery: which MCPHealthMonitors the operator generates, decided without I/O.

Three kinds of input, all plain mappings as the API server returns them:

* a Service annotated ``mcphealth.dev/monitor: "true"`` (``from_service``),
  with optional annotations for the port, path, transport, probe method
  and interval; a bad value is a ``Problem`` naming the annotation;
* an ``MCPServer`` of ToolHive, kmcp or the Kubernetes SIG's
  mcp-lifecycle-operator (``from_mcp_server``), located by the naming rules
  and fields of the operator that made it (``SOURCES``, with their sources);
* the monitors that exist (``existing``).

``plan`` turns one namespace's candidates and monitors into what to create,
update and delete, and which Events to post. Its rules: one monitor per
Service (named after it); a hand-written monitor (no
``mcphealth.dev/generated-by`` label) always wins, whether it targets the
Service or merely has the name; generated monitors are owned (controller
reference) by the object they come from, so Kubernetes' garbage collector
deletes them with it.

Nothing here imports kopf, a Kubernetes client, HTTP or mcp.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mcp_health_operator.core.spec import SpecError, parse, parse_duration

GROUP, VERSION, KIND = "mcphealth.dev", "v1alpha1", "MCPHealthMonitor"

# On a generated monitor: where it came from (``kubectl get mcphealth -l ...``).
GENERATED_LABEL = "mcphealth.dev/generated-by"
# On a generated monitor: a digest of what was generated, so that a setting
# removed at the source (say the path annotation) is removed from the monitor.
HASH_ANNOTATION = "mcphealth.dev/generated-hash"

# On a Service: "true" asks for a monitor; the others refine it.
MONITOR_ANNOTATION = "mcphealth.dev/monitor"
PORT_ANNOTATION = "mcphealth.dev/port"
PATH_ANNOTATION = "mcphealth.dev/path"
TRANSPORT_ANNOTATION = "mcphealth.dev/transport"
METHOD_ANNOTATION = "mcphealth.dev/method"
INTERVAL_ANNOTATION = "mcphealth.dev/interval"

SERVICE_SOURCE = "service"
TRANSPORTS = ("streamable-http", "sse", "http")
METHODS = ("auto", "healthResource", "handshake")
# A Service port the monitor uses when the annotation names none and the
# Service has more than one.
DEFAULT_PORT_NAMES = ("mcp", "http")

# Event reasons (on the Service or MCPServer a monitor would be generated from).
INVALID_ANNOTATION = "InvalidMonitorAnnotation"
NOT_GENERATED = "MonitorNotGenerated"
GENERATED = "MonitorGenerated"
NORMAL, WARNING = "Normal", "Warning"


# -- the objects ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """The object a generated monitor belongs to (its controller owner reference)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        # No blockOwnerDeletion: it would need update rights on the owner's
        # finalizers, and nothing is gained by delaying the owner's deletion.
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }

    def describe(self) -> str:
        group = self.api_version.partition("/")[0] if "/" in self.api_version else ""
        return f"{self.kind}{'.' + group if group else ''} {self.name}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to probe a server: what a generated monitor's spec says."""

    service: str
    port: int | str
    transport: str = "streamable-http"
    path: str | None = None
    scheme: str | None = None  # None: the monitor's default (http)
    ca_secret: str | None = None  # a Secret with the CA bundle under ``ca.crt``
    insecure_skip_verify: bool = False
    method: str | None = None  # None: the monitor's default (auto)
    interval: str | None = None  # None: the monitor's default (5s)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A server that should have a generated monitor."""

    source: str  # the label value: "service", "toolhive", ...
    namespace: str
    owner: Owner
    endpoint: Endpoint

    @property
    def name(self) -> str:
        """One monitor per Service: the monitor is named after the Service it probes."""
        return self.endpoint.service


@dataclass(frozen=True, slots=True)
class Problem:
    """An object that asked for a monitor and cannot have one; posted as an Event on it."""

    source: str
    namespace: str
    owner: Owner
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Existing:
    """An MCPHealthMonitor as it is."""

    namespace: str
    name: str
    uid: str
    generated_by: str | None  # None: hand-written
    controller_uid: str | None
    target: tuple[str, str] | None  # (namespace, Service name) of a Service target
    spec: Mapping[str, Any]
    spec_hash: str | None
    has_labels: bool = True
    has_annotations: bool = True
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """An Event to post on ``owner`` (the planner says what; the controller says when)."""

    namespace: str
    owner: Owner
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    creates: tuple[Candidate, ...] = ()
    updates: tuple[tuple[Existing, Candidate], ...] = ()
    deletes: tuple[Existing, ...] = ()
    notices: tuple[Notice, ...] = ()


# -- reading what the API server returns ----------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def existing(obj: Mapping[str, Any]) -> Existing:
    """An MCPHealthMonitor (a dict or kopf body) as the planner sees it."""
    meta = _meta(obj)
    namespace = str(meta.get("namespace") or "")
    labels = _map(meta.get("labels"))
    annotations = _map(meta.get("annotations"))
    controller = next(
        (
            ref
            for ref in meta.get("ownerReferences") or ()
            if isinstance(ref, Mapping) and ref.get("controller")
        ),
        None,
    )
    spec = _map(obj.get("spec"))
    service = _map(_map(spec.get("target")).get("service"))
    target = (
        (str(service.get("namespace") or namespace), str(service["name"]))
        if service.get("name")
        else None
    )
    generated_by = labels.get(GENERATED_LABEL)
    return Existing(
        namespace=namespace,
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generated_by=str(generated_by) if generated_by else None,
        controller_uid=str(controller.get("uid")) if controller else None,
        target=target,
        spec=_plain(spec),
        spec_hash=annotations.get(HASH_ANNOTATION),
        has_labels=bool(labels),
        has_annotations=bool(annotations),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (kopf bodies are views)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- Services -------------------------------------------------------------------------


def wants_monitor(service: Mapping[str, Any]) -> bool:
    """The Service asks for a monitor (exactly "true"; anything else is no)."""
    return _map(_meta(service).get("annotations")).get(MONITOR_ANNOTATION) == "true"


def from_service(service: Mapping[str, Any]) -> Candidate | Problem | None:
    """An annotated Service's monitor, or the Problem with its annotations; None if not asked."""
    if not wants_monitor(service):
        return None
    meta = _meta(service)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    owner = Owner("v1", "Service", name, str(meta.get("uid") or ""))
    annotations = _map(meta.get("annotations"))
    spec = _map(service.get("spec"))
    ports = [
        (str(p.get("name") or ""), int(p["port"]))
        for p in spec.get("ports") or ()
        if isinstance(p, Mapping) and isinstance(p.get("port"), int)
    ]
    errors: list[str] = []

    def check(key: str, rule: Callable[[str], str | None]) -> str | None:
        raw = annotations.get(key)
        if raw is None:
            return None
        value = str(raw)
        why = rule(value)
        if why is not None:
            errors.append(f"{key}={json.dumps(value)}: {why}")
            return None
        return value

    given_port = annotations.get(PORT_ANNOTATION)
    port = _service_port(None if given_port is None else str(given_port), ports, errors)
    path = check(PATH_ANNOTATION, _path_problem)
    transport = check(TRANSPORT_ANNOTATION, _choice(TRANSPORTS))
    method = check(METHOD_ANNOTATION, _choice(METHODS))
    interval = check(INTERVAL_ANNOTATION, _interval_problem)
    if transport == "http" and method == "handshake":
        errors.append(
            f'{METHOD_ANNOTATION}="handshake" needs an MCP transport, and '
            f'{TRANSPORT_ANNOTATION}="http" is a plain GET of the health document'
        )
    if errors or port is None:
        return Problem(
            SERVICE_SOURCE,
            namespace,
            owner,
            INVALID_ANNOTATION,
            f"invalid annotation {'; '.join(errors)}",
        )
    endpoint = Endpoint(
        service=name,
        port=port,
        transport=transport or "streamable-http",
        path=path,
        method=method,
        interval=interval,
    )
    return Candidate(SERVICE_SOURCE, namespace, owner, endpoint)


def _service_port(
    value: str | None, ports: list[tuple[str, int]], errors: list[str]
) -> int | str | None:
    listed = ", ".join(f"{n}={p}" if n else str(p) for n, p in ports) or "none"
    if value is None:
        if len(ports) == 1:
            only_name, only_port = ports[0]
            return only_name or only_port
        for wanted in DEFAULT_PORT_NAMES:
            if any(n == wanted for n, _ in ports):
                return wanted
        errors.append(
            f"{PORT_ANNOTATION} is needed: the Service has "
            f"{len(ports) or 'no'} port{'s' if len(ports) != 1 else ''} ({listed}) and none "
            f"named {' or '.join(DEFAULT_PORT_NAMES)}"
        )
        return None
    text = value.strip()
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 65535:
            errors.append(f"{PORT_ANNOTATION}={json.dumps(value)}: not a port number (1-65535)")
            return None
        if ports and not any(p == number for _, p in ports):
            errors.append(
                f"{PORT_ANNOTATION}={json.dumps(value)}: the Service has no port {number} "
                f"(ports: {listed})"
            )
            return None
        return number
    if not any(n == text for n, _ in ports):
        errors.append(
            f"{PORT_ANNOTATION}={json.dumps(value)}: the Service has no port named "
            f"{json.dumps(text)} (ports: {listed})"
        )
        return None
    return text


def _path_problem(value: str) -> str | None:
    if not value.startswith("/"):
        return "must start with /"
    if len(value) > 1024:
        return "longer than 1024 characters"
    if any(c.isspace() for c in value) or "?" in value or "#" in value:
        return "must be a plain path (no spaces, ? or #)"
    return None


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str | None]:
    def rule(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return rule


def _interval_problem(value: str) -> str | None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return "not a duration (use e.g. 30s, 1m, 1m30s)"
    if not 1.0 <= seconds <= 3600.0:
        return "must be between 1s and 1h"
    return None


# -- other operators' MCPServers --------------------------------------------------------


class SourceError(ValueError):
    """The object does not say where its server is; the message names the field."""


@dataclass(frozen=True, slots=True)
class Source:
    """An operator whose ``MCPServer`` objects get monitors, and how to find their Service."""

    name: str  # the generated-by label value
    group: str
    versions: tuple[str, ...]  # the served versions known, newest first
    locate: Callable[[str, Mapping[str, Any]], Endpoint]  # (name, spec) -> Endpoint
    references: tuple[str, ...]  # where the facts come from (repository: path)
    kind: str = "MCPServer"
    plural: str = "mcpservers"


def _int(value: Any, field_name: str, default: int | None = None) -> int:
    if value is None or value == 0:
        if default is None:
            raise SourceError(f"{field_name} is not set")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SourceError(f"{field_name} is {value!r}, not a port number")
    return value


def _toolhive(name: str, spec: Mapping[str, Any]) -> Endpoint:
    # cmd/thv-operator/pkg/controllerutil/resources.go CreateProxyServiceName:
    # the proxy Service is "mcp-<name>-proxy", one port named "http", number
    # MCPServer.GetProxyPort(): spec.proxyPort, else (before #4467, April
    # 2026) spec.port, else 8080. pkg/transport/url.go GenerateMCPServerURL:
    # sse → /sse; streamable-http → /mcp; stdio is proxied as spec.proxyMode
    # (default streamable-http).
    port = spec.get("proxyPort") or spec.get("port")
    number = _int(port, "spec.proxyPort", default=8080)
    transport = str(spec.get("transport") or "stdio")
    mode = str(spec.get("proxyMode") or "streamable-http") if transport == "stdio" else transport
    if mode not in ("sse", "streamable-http"):
        raise SourceError(f"spec.transport {transport!r} is not served over HTTP by ToolHive")
    return Endpoint(
        service=f"mcp-{name}-proxy",
        port=number,
        transport=mode,
        path="/sse" if mode == "sse" else "/mcp",
    )


def _kmcp(name: str, spec: Mapping[str, Any]) -> Endpoint:
    # pkg/controller/transportadapter/transportadapter_translator.go
    # translateTransportAdapterService: a Service named after the MCPServer,
    # one port "http" = spec.deployment.port (CRD default 3000). kagent's
    # ConvertMCPServerToRemoteMCPServer (go/internal/controller/translator/
    # agent/utils.go) reaches it as http://<name>.<ns>:<port>/mcp, Streamable HTTP.
    deployment = _map(spec.get("deployment"))
    number = _int(deployment.get("port"), "spec.deployment.port", default=3000)
    return Endpoint(service=name, port=number, transport="streamable-http", path="/mcp")


def _lifecycle(name: str, spec: Mapping[str, Any]) -> Endpoint:
    # internal/controller/mcpserver_controller_service.go createService: a
    # Service named after the MCPServer, one port "mcp" = spec.config.port;
    # with spec.serviceRef (bring your own, mcpserver_controller_byo.go) that
    # Service, at spec.config.port or else its port named "mcp". The path is
    # spec.config.path (default /mcp); spec.transport.tls.enabled means https,
    # with the CA bundle under "ca.crt" of spec.transport.tls.caBundleSecret.
    config = _map(spec.get("config"))
    byo = str(_map(spec.get("serviceRef")).get("name") or "")
    # Bring your own Service without spec.config.port: its port named "mcp".
    explicit = config.get("port") or not byo
    port: int | str = _int(config.get("port"), "spec.config.port") if explicit else "mcp"
    path = str(config.get("path") or "/mcp")
    if not path.startswith("/"):
        raise SourceError(f"spec.config.path {path!r} does not start with /")
    endpoint = Endpoint(service=byo or name, port=port, transport="streamable-http", path=path)
    tls = _map(_map(spec.get("transport")).get("tls"))
    if not tls.get("enabled"):
        return endpoint
    ca_secret = str(_map(tls.get("caBundleSecret")).get("name") or "")
    return replace(
        endpoint,
        scheme="https",
        ca_secret=ca_secret or None,
        insecure_skip_verify=bool(tls.get("insecureSkipVerify")),
    )


SOURCES: dict[str, Source] = {
    s.group: s
    for s in (
        Source(
            name="toolhive",
            group="toolhive.stacklok.dev",
            versions=("v1beta1", "v1alpha1"),
            locate=_toolhive,
            references=(
                "stacklok/toolhive: deploy/charts/operator-crds/files/crds/"
                "toolhive.stacklok.dev_mcpservers.yaml",
                "stacklok/toolhive: cmd/thv-operator/controllers/mcpserver_controller.go",
                "stacklok/toolhive: cmd/thv-operator/pkg/controllerutil/resources.go",
                "stacklok/toolhive: cmd/thv-operator/api/v1beta1/mcpserver_types.go",
                "stacklok/toolhive: pkg/transport/url.go",
            ),
        ),
        Source(
            name="kmcp",
            group="kagent.dev",
            versions=("v1alpha1",),
            locate=_kmcp,
            references=(
                "kagent-dev/kmcp: config/crd/bases/kagent.dev_mcpservers.yaml",
                "kagent-dev/kmcp: api/v1alpha1/mcpserver_types.go",
                "kagent-dev/kmcp: pkg/controller/transportadapter/transportadapter_translator.go",
                "kagent-dev/kagent: go/internal/controller/translator/agent/utils.go",
            ),
        ),
        Source(
            name="mcp-lifecycle-operator",
            group="mcp.x-k8s.io",
            versions=("v1beta1", "v1alpha1"),
            locate=_lifecycle,
            references=(
                "kubernetes-sigs/mcp-lifecycle-operator: config/crd/bases/"
                "mcp.x-k8s.io_mcpservers.yaml",
                "kubernetes-sigs/mcp-lifecycle-operator: api/v1beta1/mcpserver_types.go",
                "kubernetes-sigs/mcp-lifecycle-operator: "
                "internal/controller/mcpserver_controller_service.go",
                "kubernetes-sigs/mcp-lifecycle-operator: "
                "internal/controller/mcpserver_controller_byo.go",
            ),
        ),
    )
}
# When two sources want a monitor for the same Service, the first of these wins:
# the Service's own annotation is the most explicit request.
PRIORITY = (SERVICE_SOURCE, *(s.name for s in SOURCES.values()))


def from_mcp_server(source: Source, version: str, obj: Mapping[str, Any]) -> Candidate | Problem:
    """The monitor of one MCPServer of ``source`` (read at ``version``), or why it cannot
    have one."""
    meta = _meta(obj)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    owner = Owner(f"{source.group}/{version}", source.kind, name, str(meta.get("uid") or ""))
    try:
        endpoint = source.locate(name, _map(obj.get("spec")))
    except SourceError as exc:
        return Problem(source.name, namespace, owner, NOT_GENERATED, f"no monitor: {exc}")
    if len(endpoint.service) > 63:
        return Problem(
            source.name,
            namespace,
            owner,
            NOT_GENERATED,
            f"no monitor: the Service name {endpoint.service!r} is longer than 63 characters",
        )
    return Candidate(source.name, namespace, owner, endpoint)


# -- the generated monitor ---------------------------------------------------------------


def monitor_spec(endpoint: Endpoint) -> dict[str, Any]:
    """The generated monitor's ``spec``: only what the source says; the CRD defaults the rest."""
    target: dict[str, Any] = {
        "service": {"name": endpoint.service, "port": endpoint.port},
        "transport": endpoint.transport,
    }
    if endpoint.path is not None:
        target["path"] = endpoint.path
    if endpoint.scheme is not None:
        target["scheme"] = endpoint.scheme
    tls: dict[str, Any] = {}
    if endpoint.ca_secret is not None:
        tls["caSecretRef"] = {"name": endpoint.ca_secret, "key": "ca.crt"}
    if endpoint.insecure_skip_verify:
        tls["insecureSkipVerify"] = True
    if tls:
        target["tls"] = tls
    probe: dict[str, Any] = {}
    if endpoint.interval is not None:
        probe["interval"] = endpoint.interval
        seconds = parse_duration(endpoint.interval)
        if seconds <= 1.0:
            # The default timeout (1s) must stay shorter than the interval.
            probe["timeout"] = f"{int(seconds * 500)}ms"
    if endpoint.method is not None:
        probe["method"] = endpoint.method
    spec: dict[str, Any] = {"target": target}
    if probe:
        spec["probe"] = probe
    return spec


def spec_hash(candidate: Candidate) -> str:
    """What was generated, in 16 hex digits (the spec, the source and the owner)."""
    text = json.dumps(
        [candidate.source, candidate.owner.uid, monitor_spec(candidate.endpoint)], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def monitor_body(candidate: Candidate) -> dict[str, Any]:
    """The whole MCPHealthMonitor to create."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": candidate.name,
            "namespace": candidate.namespace,
            "labels": {GENERATED_LABEL: candidate.source},
            "annotations": {HASH_ANNOTATION: spec_hash(candidate)},
            "ownerReferences": [candidate.owner.reference()],
        },
        "spec": monitor_spec(candidate.endpoint),
    }


def update_patch(current: Existing, candidate: Candidate) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) making ``current`` the candidate's monitor.

    Its first operations test that the object is still the generated
    monitor it was (same UID, same generated-by label): a monitor replaced
    meanwhile by a hand-written one of the same name is never touched.
    """
    label_path = "/metadata/labels/" + _pointer(GENERATED_LABEL)
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/uid", "value": current.uid},
        {"op": "test", "path": label_path, "value": current.generated_by},
        {"op": "replace", "path": label_path, "value": candidate.source},
    ]
    digest = spec_hash(candidate)
    if current.has_annotations:
        ops.append(
            {
                "op": "add",
                "path": "/metadata/annotations/" + _pointer(HASH_ANNOTATION),
                "value": digest,
            }
        )
    else:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {HASH_ANNOTATION: digest}}
        )
    ops.append(
        {"op": "add", "path": "/metadata/ownerReferences", "value": [candidate.owner.reference()]}
    )
    ops.append({"op": "add", "path": "/spec", "value": monitor_spec(candidate.endpoint)})
    return ops


def still_generated_patch(current: Existing) -> list[dict[str, Any]]:
    """A JSON patch that changes nothing and fails unless ``current`` is still as known
    (checked just before a delete, which takes no such precondition here)."""
    return [
        {"op": "test", "path": "/metadata/uid", "value": current.uid},
        {
            "op": "test",
            "path": "/metadata/labels/" + _pointer(GENERATED_LABEL),
            "value": current.generated_by,
        },
    ]


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def validate(candidate: Candidate) -> Candidate | Problem:
    """The candidate, if its monitor would pass the operator's own reading of a spec."""
    try:
        parse(monitor_spec(candidate.endpoint))
    except SpecError as exc:
        reason = INVALID_ANNOTATION if candidate.source == SERVICE_SOURCE else NOT_GENERATED
        return Problem(candidate.source, candidate.namespace, candidate.owner, reason, str(exc))
    return candidate


# -- the plan ----------------------------------------------------------------------------


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _subset(v, have[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


def up_to_date(current: Existing, candidate: Candidate) -> bool:
    return (
        current.generated_by == candidate.source
        and current.controller_uid == candidate.owner.uid
        and current.spec_hash == spec_hash(candidate)
        # The spec as generated is still there (nobody edited it by hand).
        and _subset(monitor_spec(candidate.endpoint), current.spec)
    )


@dataclass
class _Planning:
    namespace: str
    creates: list[Candidate] = field(default_factory=list)
    updates: list[tuple[Existing, Candidate]] = field(default_factory=list)
    deletes: list[Existing] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def notice(self, owner: Owner, type: str, reason: str, message: str) -> None:
        self.notices.append(Notice(self.namespace, owner, type, reason, message))


def plan(
    namespace: str,
    candidates: Iterable[Candidate],
    problems: Iterable[Problem],
    monitors: Iterable[Existing],
    prunable: Iterable[str],
) -> Plan:
    """What to do in ``namespace``.

    ``candidates`` and ``problems``: every object of the namespace that asks
    for a monitor, as read. ``monitors``: the monitors that exist there.
    ``prunable``: the sources whose objects are all known (listed), so that a
    generated monitor of theirs with no candidate may be deleted; a monitor
    generated by any other source (one not followed, or not listed yet) is
    left alone.

    A Problem keeps its object's generated monitor as it was (the last valid
    settings keep being probed) and posts its Event.
    """
    out = _Planning(namespace)
    mine = [m for m in monitors if m.namespace == namespace]
    by_name = {m.name: m for m in mine}
    hand_written: dict[str, str] = {}
    for m in sorted(mine, key=lambda m: m.name):
        if m.generated_by is None and m.target is not None and m.target[0] == namespace:
            hand_written.setdefault(m.target[1], m.name)
    kept = set()
    for problem in problems:
        if problem.namespace != namespace:
            continue
        kept.add(problem.owner.uid)
        out.notice(problem.owner, WARNING, problem.reason, problem.message)

    chosen: dict[str, Candidate] = {}
    ranked = sorted(
        (c for c in candidates if c.namespace == namespace),
        key=lambda c: (_rank(c.source), c.owner.kind, c.owner.name),
    )
    for c in ranked:
        svc = c.endpoint.service
        if svc in hand_written:
            out.notice(
                c.owner,
                NORMAL,
                NOT_GENERATED,
                f"the hand-written MCPHealthMonitor {hand_written[svc]} watches Service {svc}; "
                "no monitor is generated",
            )
            continue
        if c.name in chosen:
            other = chosen[c.name]
            out.notice(
                c.owner,
                NORMAL,
                NOT_GENERATED,
                f"Service {svc} is watched by the monitor generated from {other.owner.describe()}",
            )
            continue
        current = by_name.get(c.name)
        if current is not None and current.generated_by is None:
            out.notice(
                c.owner,
                WARNING,
                NOT_GENERATED,
                f"an MCPHealthMonitor named {c.name} exists and was not generated; "
                "it is left alone and no monitor is generated",
            )
            continue
        chosen[c.name] = c
        if current is None:
            out.creates.append(c)
        elif not current.deleting and not up_to_date(current, c):
            out.updates.append((current, c))

    may_prune = set(prunable)
    for m in mine:
        if m.generated_by is None or m.name in chosen or m.deleting:
            continue
        superseded = m.target is not None and m.target[1] in hand_written
        if superseded or (m.controller_uid not in kept and m.generated_by in may_prune):
            out.deletes.append(m)
    return Plan(tuple(out.creates), tuple(out.updates), tuple(out.deletes), tuple(out.notices))


def _rank(source: str) -> int:
    return PRIORITY.index(source) if source in PRIORITY else len(PRIORITY)


# -- settings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What the operator discovers (``--discover-*`` flags, ``MCP_HEALTH_DISCOVER_*``)."""

    services: bool = False
    groups: tuple[str, ...] = ()  # API groups of SOURCES
    recheck_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.services or bool(self.groups)

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(SOURCES[g] for g in self.groups)


ENV_SERVICES = "MCP_HEALTH_DISCOVER_SERVICES"
ENV_GROUPS = "MCP_HEALTH_DISCOVER_GROUPS"
ENV_RECHECK = "MCP_HEALTH_DISCOVER_RECHECK"


def settings(
    services: bool = False, groups: Iterable[str] = (), recheck_s: float = 60.0
) -> Settings:
    """Checked settings; ValueError names what is wrong."""
    wanted: list[str] = []
    for group in groups:
        group = group.strip()
        if not group:
            continue
        if group not in SOURCES:
            raise ValueError(
                f"discovery: unknown MCPServer API group {group!r} (known: {', '.join(SOURCES)})"
            )
        if group not in wanted:
            wanted.append(group)
    if not recheck_s > 0:
        raise ValueError(f"discovery: the re-check period must be positive, not {recheck_s!r}")
    return Settings(services=services, groups=tuple(wanted), recheck_s=recheck_s)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """``MCP_HEALTH_DISCOVER_SERVICES=true``, ``MCP_HEALTH_DISCOVER_GROUPS=a,b``,
    ``MCP_HEALTH_DISCOVER_RECHECK=SECONDS``; ValueError names a bad one."""
    flag = env.get(ENV_SERVICES, "").strip().lower()
    if flag not in ("", "true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{ENV_SERVICES}={env[ENV_SERVICES]!r}: expected true or false")
    recheck = env.get(ENV_RECHECK, "").strip()
    try:
        recheck_s = float(recheck) if recheck else 60.0
    except ValueError:
        raise ValueError(f"{ENV_RECHECK}={recheck!r}: expected seconds") from None
    return settings(
        services=flag in ("true", "1", "yes"),
        groups=env.get(ENV_GROUPS, "").split(","),
        recheck_s=recheck_s,
    )


def exact_names(patterns: tuple[str, ...]) -> bool:
    """Are the watched namespaces all exact names (none: every namespace, not exact)?"""
    return bool(patterns) and not any(set("*?[!") & set(p) for p in patterns)


def in_scope(namespace: str, patterns: tuple[str, ...]) -> bool:
    """Is ``namespace`` watched (kopf's spelling: exact names or globs, ``!glob`` excludes)?"""
    if not patterns:
        return True
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    if any(fnmatch.fnmatchcase(namespace, p) for p in exclude):
        return False
    return not include or any(fnmatch.fnmatchcase(namespace, p) for p in include)
