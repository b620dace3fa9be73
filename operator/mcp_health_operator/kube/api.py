"""All Kubernetes I/O of the monitoring loop, in one place (lightkube, async).

Status patches go to the status subresource as JSON merge patches; Events are
created, or bumped (count, lastTimestamp) when the aggregator says a repeat;
these, the frequent writes, are plain requests (``rest``), as is the periodic
listing of the monitors' UIDs. Services and Secrets are read in the
monitor's own namespace.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType
from pydantic import BaseModel, ConfigDict, Field

from mcp_health_operator.core.conditions import timestamp
from mcp_health_operator.core.discovery import exact_names
from mcp_health_operator.core.events import EventSpec, Post
from mcp_health_operator.kube.rest import MERGE_PATCH, Rest, RestError

GROUP, VERSION, KIND, PLURAL = "mcphealth.dev", "v1alpha1", "MCPHealthMonitor", "mcphealthmonitors"
Monitor = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
COMPONENT = "mcp-health-operator"
# A list of the objects' metadata alone (PartialObjectMetadataList); plain
# JSON from an API server too old to know it.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE = 500  # objects per list request (kubectl's chunk size)

log = logging.getLogger(__name__)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Meta(_Lenient):
    uid: str | None = None


class _Item(_Lenient):
    metadata: _Meta | None = None


class _ListMeta(_Lenient):
    continue_: str | None = Field(None, alias="continue")


class _UIDPage(_Lenient):
    """A page of a metadata-only list, as far as it is read: the UIDs, the next page's token.

    Parsed by pydantic from the bytes, the fields not named here (most of
    it: managedFields) never become Python objects. Listing 1,000 monitors
    costs the client ~15 ms of CPU so; the same list through json.loads
    ~60 ms, and lightkube's list of the whole objects ~100 ms.
    """

    items: list[_Item] | None = None
    metadata: _ListMeta | None = None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str


class NotFound(LookupError):
    """The object named does not exist."""


class Conflict(Exception):
    """A write with a resourceVersion precondition lost: the object changed meanwhile."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    name: str  # "" when unnamed
    external_name: str | None  # the alias of an ExternalName Service


class Kube:
    def __init__(self, client: AsyncClient, *, instance: str | None = None) -> None:
        self.client = client
        self.rest = Rest(client)
        self.instance = instance or socket.gethostname()
        self.status_writes = 0
        self.event_posts = 0
        # The spec of each Service the shared watch delivered (see ``service_seen``):
        # a monitor reads its Service from here, not with a GET of its own
        # (a cold start of N monitors was N GETs beside the watch's listing).
        self._services: dict[tuple[str, str], dict[str, Any]] = {}

    async def close(self) -> None:
        await self.rest.close()
        await self.client.close()

    async def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], *, resource_version: str | None = None
    ) -> bool:
        """Merge-patch the status; False when the monitor is gone.

        With ``resource_version`` the patch applies only to that version of
        the object (the API server's optimistic concurrency); else Conflict.
        """
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}/status"
        code, answer = await self.rest.send("PATCH", path, body, MERGE_PATCH)
        if code == 404:
            return False
        if code == 409:
            raise Conflict(str(RestError(code, answer)))
        if code != 200:
            raise RestError(code, answer)
        self.status_writes += 1
        return True

    async def post_event(
        self, ref: ObjectRef, spec: EventSpec, post: Post, *, when: datetime | None = None
    ) -> None:
        """Create or bump an Event; ``when`` it happened, if it is posted late (default now)."""
        now = when or datetime.now(UTC)
        self.event_posts += 1
        events = f"/api/v1/namespaces/{ref.namespace}/events"
        if not post.create:
            bump = {"count": post.count, "lastTimestamp": timestamp(now), "message": post.message}
            code, answer = await self.rest.send("PATCH", f"{events}/{post.name}", bump, MERGE_PATCH)
            if code == 200:
                return
            if code != 404:
                raise RestError(code, answer)
            # Expired (event TTL) or deleted: post it anew under the same name.
        stamp = timestamp(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": post.name, "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": spec.reason,
            "message": post.message,
            "type": spec.type,
            "count": post.count,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": COMPONENT, "host": self.instance},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self.instance,
        }
        code, answer = await self.rest.send("POST", events, event)
        if code not in (201, 409):  # 409: posted already (a retry after a lost answer)
            raise RestError(code, answer)

    async def _get(self, resource: Any, namespace: str, name: str) -> Any:
        """The object, or None when it does not exist (404)."""
        try:
            return await self.client.get(resource, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def monitor(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The monitor as the API server has it now (not the watch's copy); None if gone."""
        obj = await self._get(Monitor, ref.namespace, ref.name)
        if obj is None or obj.metadata.uid != ref.uid:
            return None
        return dict(obj.to_dict())

    async def monitor_uids(self, namespaces: tuple[str, ...]) -> set[str]:
        """The UIDs of the monitors that exist now: in ``namespaces`` if they are
        exact names, else cluster-wide (globs are matched by the caller).

        A list of their metadata only, in pages, of which only the UIDs are
        decoded (``_UIDPage``); the list verb on the monitors, as before.
        """
        exact = exact_names(tuple(namespaces))
        scopes: list[str | None] = list(namespaces) if exact else [None]
        uids: set[str] = set()
        for namespace in scopes:
            where = f"/namespaces/{namespace}" if namespace else ""
            path = f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}"
            token = ""
            while True:
                query = {"limit": LIST_PAGE} | ({"continue": token} if token else {})
                code, answer = await self.rest.get(
                    f"{path}?{urlencode(query)}", accept=METADATA_LIST
                )
                if code != 200:
                    raise RestError(code, answer)
                page = _UIDPage.model_validate_json(answer)
                for item in page.items or ():
                    if item.metadata is not None and item.metadata.uid:
                        uids.add(item.metadata.uid)
                token = (page.metadata.continue_ if page.metadata else None) or ""
                if not token:
                    break
        return uids

    def service_seen(self, namespace: str, name: str, spec: dict[str, Any] | None) -> None:
        """The watch delivered a Service (its spec), or its deletion (None)."""
        if spec is None:
            self._services.pop((namespace, name), None)
        else:
            self._services[(namespace, name)] = {
                "type": spec.get("type"),
                "externalName": spec.get("externalName"),
                "ports": [
                    {"port": p.get("port"), "name": p.get("name")} for p in spec.get("ports") or ()
                ],
            }

    async def service_port(self, namespace: str, name: str, port: int | str) -> ServicePort:
        """The Service's port ``port`` (a number or a port name), and its ExternalName if any.

        From the shared watch's copy when it has one (a change there requeues
        the monitor, so a newer copy is read again); else one plain GET through
        ``rest`` (lightkube's client cost a third of a cold start's CPU).
        """
        spec = self._services.get((namespace, name))
        if spec is None:
            spec = await self._service_spec(namespace, name)
        external = spec.get("externalName") if spec.get("type") == "ExternalName" else None
        for p in spec.get("ports") or ():
            if p.get("port") == port or (p.get("name") is not None and p.get("name") == port):
                return ServicePort(int(p["port"]), p.get("name") or "", external)
        if external is not None and isinstance(port, int):
            # An ExternalName Service needs no ports: the name is an alias.
            return ServicePort(port, "", external)
        raise NotFound(f"Service {namespace}/{name} has no port {port}")

    async def _service_spec(self, namespace: str, name: str) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/services/{quote(name, safe='')}"
        code, answer = await self.rest.get(path)
        if code == 404:
            raise NotFound(f"Service {namespace}/{name} not found")
        if code != 200:
            raise RestError(code, answer)
        spec = json.loads(answer).get("spec")
        return spec if isinstance(spec, dict) else {}

    async def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The Service's EndpointSlices as dicts (one list call, by the service-name label)."""
        labels: dict[str, Any] = {"kubernetes.io/service-name": service}
        return [
            dict(s.to_dict())
            async for s in self.client.list(EndpointSlice, namespace=namespace, labels=labels)
        ]

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self._get(Secret, namespace, name)
        if secret is None:
            raise NotFound(f"Secret {namespace}/{name} not found")
        out = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        out.update(secret.stringData or {})
        return out

    # -- remediation: always in the monitor's own namespace ----------------------

    async def workload(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The Deployment or StatefulSet as a dict, or None if it does not exist."""
        obj = await self._get(_WORKLOADS[kind], namespace, name)
        return None if obj is None else dict(obj.to_dict())

    async def restart(self, namespace: str, kind: str, name: str, when: datetime) -> None:
        """What ``kubectl rollout restart`` does: stamp the pod template."""
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": timestamp(when)}
                    }
                }
            }
        }
        await self.client.patch(
            _WORKLOADS[kind], name, patch, namespace=namespace, patch_type=PatchType.STRATEGIC
        )

    async def set_env(
        self, namespace: str, kind: str, name: str, container: str, var: str, value: str
    ) -> None:
        """Set one environment variable of one container (strategic merge by name)."""
        env = [{"name": var, "value": value}]
        patch = {"spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}}}
        await self.client.patch(
            _WORKLOADS[kind], name, patch, namespace=namespace, patch_type=PatchType.STRATEGIC
        )

    async def delete_pod(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Delete one pod, but only the pod the endpoint named (not a namesake made since)."""
        pod = await self._get(Pod, namespace, name)
        if pod is None:
            raise NotFound(f"Pod {namespace}/{name} not found")
        if uid is not None and pod.metadata is not None and pod.metadata.uid != uid:
            raise NotFound(f"Pod {namespace}/{name} was replaced (uid {pod.metadata.uid})")
        if pod.metadata is not None and pod.metadata.deletionTimestamp is not None:
            return  # already on its way out
        try:
            await self.client.delete(Pod, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def labels(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """The labels of a ConfigMap or Pod (None if it does not exist)."""
        obj = await self._get(_LABELLED[kind], namespace, name)
        if obj is None:
            return None
        return dict((obj.metadata.labels if obj.metadata else None) or {})

    async def config_value(self, namespace: str, name: str, key: str) -> str | None:
        cm = await self._get(ConfigMap, namespace, name)
        if cm is None:
            raise NotFound(f"ConfigMap {namespace}/{name} not found")
        return (cm.data or {}).get(key)

    async def set_config_value(self, namespace: str, name: str, key: str, value: str) -> None:
        await self.client.patch(
            ConfigMap,
            name,
            {"data": {key: value}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )


_WORKLOADS: dict[str, Any] = {"Deployment": Deployment, "StatefulSet": StatefulSet}
_LABELLED: dict[str, Any] = {"ConfigMap": ConfigMap, "Pod": Pod}
