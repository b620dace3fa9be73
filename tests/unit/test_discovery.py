"""Discovery's decisions, without a server: annotations, other operators' MCPServers,
the generated monitor, and the plan (hand-written wins, one monitor per Service)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from mcp_health_operator.core import discovery as d
from mcp_health_operator.core.spec import parse

NS = "team-a"


def service(
    name: str = "api",
    annotations: dict[str, str] | None = None,
    ports: list[tuple[str, int]] | None = None,
    uid: str = "svc-uid",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "annotations": {d.MONITOR_ANNOTATION: "true", **(annotations or {})},
        },
        "spec": {
            "ports": [
                {"name": n, "port": p} if n else {"port": p}
                for n, p in (ports if ports is not None else [("mcp", 8000)])
            ]
        },
    }


def candidate(found: object) -> d.Candidate:
    assert isinstance(found, d.Candidate), found
    return found


def problem(found: object) -> d.Problem:
    assert isinstance(found, d.Problem), found
    return found


# -- Services -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "True", "false", "yes", ""])
def test_only_true_asks_for_a_monitor(value: str | None) -> None:
    svc = service()
    if value is None:
        del svc["metadata"]["annotations"][d.MONITOR_ANNOTATION]
    else:
        svc["metadata"]["annotations"][d.MONITOR_ANNOTATION] = value
    assert d.from_service(svc) is None


def test_an_annotated_service_with_defaults() -> None:
    c = candidate(d.from_service(service()))
    assert c.source == "service" and c.namespace == NS and c.name == "api"
    assert c.owner == d.Owner("v1", "Service", "api", "svc-uid")
    assert c.endpoint == d.Endpoint(service="api", port="mcp", transport="streamable-http")


@pytest.mark.parametrize(
    ("ports", "port"),
    [
        ([("", 8080)], 8080),  # the only port, unnamed: its number
        ([("web", 8080)], "web"),  # the only port, named: its name (a moved number is followed)
        ([("metrics", 9090), ("http", 8080)], "http"),
        ([("http", 8080), ("mcp", 8000), ("metrics", 9090)], "mcp"),  # mcp before http
    ],
)
def test_the_default_port(ports: list[tuple[str, int]], port: int | str) -> None:
    assert candidate(d.from_service(service(ports=ports))).endpoint.port == port


def test_several_ports_and_none_named_mcp_or_http_needs_the_annotation() -> None:
    p = problem(d.from_service(service(ports=[("a", 1), ("b", 2)])))
    assert p.reason == "InvalidMonitorAnnotation"
    assert "mcphealth.dev/port is needed" in p.message and "a=1, b=2" in p.message


@pytest.mark.parametrize(
    ("value", "port", "says"),
    [
        ("8000", 8000, None),
        ("mcp", "mcp", None),
        ("9999", None, 'mcphealth.dev/port="9999": the Service has no port 9999 (ports: mcp=8000)'),
        ("web", None, 'mcphealth.dev/port="web": the Service has no port named "web"'),
        ("70000", None, 'mcphealth.dev/port="70000": not a port number'),
    ],
)
def test_the_port_annotation(value: str, port: int | str | None, says: str | None) -> None:
    found = d.from_service(service(annotations={d.PORT_ANNOTATION: value}))
    if says is None:
        assert candidate(found).endpoint.port == port
    else:
        assert says in problem(found).message


def test_every_annotation_is_carried_into_the_monitor() -> None:
    c = candidate(
        d.from_service(
            service(
                annotations={
                    d.PORT_ANNOTATION: "8000",
                    d.PATH_ANNOTATION: "/api/mcp",
                    d.TRANSPORT_ANNOTATION: "sse",
                    d.METHOD_ANNOTATION: "handshake",
                    d.INTERVAL_ANNOTATION: "30s",
                }
            )
        )
    )
    assert d.monitor_spec(c.endpoint) == {
        "target": {
            "service": {"name": "api", "port": 8000},
            "transport": "sse",
            "path": "/api/mcp",
        },
        "probe": {"interval": "30s", "method": "handshake"},
    }


BAD = {
    "interval not a duration": (d.INTERVAL_ANNOTATION, "5x", "not a duration"),
    "interval too short": (d.INTERVAL_ANNOTATION, "500ms", "between 1s and 1h"),
    "interval too long": (d.INTERVAL_ANNOTATION, "2h", "between 1s and 1h"),
    "transport": (d.TRANSPORT_ANNOTATION, "websocket", "one of streamable-http, sse, http"),
    "method": (d.METHOD_ANNOTATION, "ping", "one of auto, healthResource, handshake"),
    "path": (d.PATH_ANNOTATION, "mcp", "must start with /"),
    "path with a query": (d.PATH_ANNOTATION, "/mcp?x=1", "plain path"),
}


@pytest.mark.parametrize(("key", "value", "why"), BAD.values(), ids=BAD.keys())
def test_a_bad_annotation_is_a_problem_naming_it_and_why(key: str, value: str, why: str) -> None:
    p = problem(d.from_service(service(annotations={key: value})))
    assert p.reason == d.INVALID_ANNOTATION and p.owner.kind == "Service"
    assert f'{key}="{value}"' in p.message and why in p.message, p.message


def test_all_bad_annotations_are_named_at_once() -> None:
    bad = {d.INTERVAL_ANNOTATION: "soon", d.TRANSPORT_ANNOTATION: "grpc"}
    message = problem(d.from_service(service(annotations=bad))).message
    assert d.INTERVAL_ANNOTATION in message and d.TRANSPORT_ANNOTATION in message


def test_the_handshake_needs_an_mcp_transport() -> None:
    bad = {d.TRANSPORT_ANNOTATION: "http", d.METHOD_ANNOTATION: "handshake"}
    message = problem(d.from_service(service(annotations=bad))).message
    assert d.METHOD_ANNOTATION in message and d.TRANSPORT_ANNOTATION in message


def test_a_one_second_interval_gets_a_shorter_timeout() -> None:
    c = candidate(d.from_service(service(annotations={d.INTERVAL_ANNOTATION: "1s"})))
    spec = d.monitor_spec(c.endpoint)
    assert spec["probe"] == {"interval": "1s", "timeout": "500ms"}
    assert parse(spec).probe.timeout_s < parse(spec).probe.interval_s


# -- other operators' MCPServers --------------------------------------------------------


def server(group: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid"},
        "spec": spec,
    }


TOOLHIVE, KMCP, LIFECYCLE = (
    d.SOURCES["toolhive.stacklok.dev"],
    d.SOURCES["kagent.dev"],
    d.SOURCES["mcp.x-k8s.io"],
)

LOCATED = {
    "toolhive stdio (proxied as streamable-http)": (
        TOOLHIVE,
        {"image": "x", "transport": "stdio"},
        d.Endpoint("mcp-fetch-proxy", 8080, "streamable-http", "/mcp"),
    ),
    "toolhive stdio proxied as sse": (
        TOOLHIVE,
        {"transport": "stdio", "proxyMode": "sse", "proxyPort": 9000},
        d.Endpoint("mcp-fetch-proxy", 9000, "sse", "/sse"),
    ),
    "toolhive sse": (
        TOOLHIVE,
        {"transport": "sse"},
        d.Endpoint("mcp-fetch-proxy", 8080, "sse", "/sse"),
    ),
    "toolhive before proxyPort (spec.port)": (
        TOOLHIVE,
        {"transport": "streamable-http", "port": 8123},
        d.Endpoint("mcp-fetch-proxy", 8123, "streamable-http", "/mcp"),
    ),
    "kmcp": (
        KMCP,
        {"deployment": {"image": "x", "port": 3001}, "transportType": "stdio"},
        d.Endpoint("fetch", 3001, "streamable-http", "/mcp"),
    ),
    "kmcp, the CRD's default port": (
        KMCP,
        {"deployment": {"image": "x"}},
        d.Endpoint("fetch", 3000, "streamable-http", "/mcp"),
    ),
    "mcp-lifecycle-operator": (
        LIFECYCLE,
        {"config": {"port": 8080, "path": "/api/mcp"}},
        d.Endpoint("fetch", 8080, "streamable-http", "/api/mcp"),
    ),
    "mcp-lifecycle-operator, default path": (
        LIFECYCLE,
        {"config": {"port": 8080}},
        d.Endpoint("fetch", 8080, "streamable-http", "/mcp"),
    ),
    "mcp-lifecycle-operator, bring your own Service": (
        LIFECYCLE,
        {"serviceRef": {"name": "mine"}, "config": {}},
        d.Endpoint("mine", "mcp", "streamable-http", "/mcp"),
    ),
    "mcp-lifecycle-operator, TLS": (
        LIFECYCLE,
        {
            "config": {"port": 8443},
            "transport": {
                "tls": {
                    "enabled": True,
                    "caBundleSecret": {"name": "ca"},
                    "insecureSkipVerify": False,
                }
            },
        },
        d.Endpoint("fetch", 8443, "streamable-http", "/mcp", scheme="https", ca_secret="ca"),
    ),
}


@pytest.mark.parametrize(("source", "spec", "endpoint"), LOCATED.values(), ids=LOCATED.keys())
def test_an_mcp_server_is_located_as_its_operator_does(
    source: d.Source, spec: dict[str, Any], endpoint: d.Endpoint
) -> None:
    c = candidate(d.from_mcp_server(source, "v1beta1", server(source.group, "fetch", spec)))
    assert c.endpoint == endpoint
    assert c.source == source.name
    assert c.owner == d.Owner(f"{source.group}/v1beta1", "MCPServer", "fetch", "fetch-uid")
    assert d.validate(c) == c  # the operator's own spec parser takes it


def test_tls_of_the_lifecycle_operator_goes_into_the_monitor() -> None:
    spec = {
        "config": {"port": 8443},
        "transport": {"tls": {"enabled": True, "caBundleSecret": {"name": "ca"}}},
    }
    c = candidate(d.from_mcp_server(LIFECYCLE, "v1alpha1", server(LIFECYCLE.group, "x", spec)))
    target = d.monitor_spec(c.endpoint)["target"]
    assert target["scheme"] == "https"
    assert target["tls"] == {"caSecretRef": {"name": "ca", "key": "ca.crt"}}


UNLOCATED = {
    "toolhive, a transport not over HTTP": (TOOLHIVE, {"transport": "grpc"}, "spec.transport"),
    "kmcp, a port that is not one": (KMCP, {"deployment": {"port": "x"}}, "spec.deployment.port"),
    "lifecycle, no port": (LIFECYCLE, {"config": {}}, "spec.config.port is not set"),
}


@pytest.mark.parametrize(("source", "spec", "says"), UNLOCATED.values(), ids=UNLOCATED.keys())
def test_an_mcp_server_that_does_not_say_where_is_a_problem(
    source: d.Source, spec: dict[str, Any], says: str
) -> None:
    p = problem(d.from_mcp_server(source, "v1alpha1", server(source.group, "fetch", spec)))
    assert p.reason == d.NOT_GENERATED and says in p.message


def test_a_toolhive_service_name_too_long_is_a_problem() -> None:
    p = problem(d.from_mcp_server(TOOLHIVE, "v1beta1", server(TOOLHIVE.group, "x" * 55, {})))
    assert "longer than 63" in p.message


def test_every_source_records_where_its_facts_come_from() -> None:
    assert {s.name for s in d.SOURCES.values()} == {"toolhive", "kmcp", "mcp-lifecycle-operator"}
    for s in d.SOURCES.values():
        assert (s.kind, s.plural) == ("MCPServer", "mcpservers")
        assert s.references and all(": " in r for r in s.references)


# -- the generated monitor ---------------------------------------------------------------


def test_the_generated_monitor_is_labelled_and_owned_by_its_source() -> None:
    c = candidate(d.from_service(service()))
    body = d.monitor_body(c)
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"]) == ("mcphealth.dev/v1alpha1", "MCPHealthMonitor")
    assert (meta["name"], meta["namespace"]) == ("api", NS)
    assert meta["labels"] == {"mcphealth.dev/generated-by": "service"}
    assert meta["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Service", "name": "api", "uid": "svc-uid", "controller": True}
    ]
    assert meta["annotations"] == {d.HASH_ANNOTATION: d.spec_hash(c)}
    parse(body["spec"])


def generated(c: d.Candidate, **changes: Any) -> d.Existing:
    body = d.monitor_body(c)
    body["metadata"]["uid"] = f"m-{c.name}"
    existing = d.existing(body)
    return d.Existing(**{**{f: getattr(existing, f) for f in existing.__slots__}, **changes})


def hand_written(name: str, target: str) -> d.Existing:
    return d.existing(
        {
            "metadata": {"name": name, "namespace": NS, "uid": f"h-{name}"},
            "spec": {"target": {"service": {"name": target, "port": 8000}}},
        }
    )


def test_reading_an_existing_monitor() -> None:
    e = hand_written("mine", "api")
    assert e.generated_by is None and e.target == (NS, "api") and e.controller_uid is None
    g = generated(candidate(d.from_service(service())))
    assert g.generated_by == "service" and g.controller_uid == "svc-uid" and g.target == (NS, "api")


# -- the plan ----------------------------------------------------------------------------

ALL = ("service", "toolhive", "kmcp", "mcp-lifecycle-operator")


def test_a_new_candidate_is_created_and_then_left_alone() -> None:
    c = candidate(d.from_service(service()))
    assert d.plan(NS, [c], [], [], ALL).creates == (c,)
    assert d.plan(NS, [c], [], [generated(c)], ALL) == d.Plan()


def test_a_changed_annotation_updates_the_monitor() -> None:
    old = candidate(d.from_service(service()))
    new = candidate(d.from_service(service(annotations={d.INTERVAL_ANNOTATION: "30s"})))
    current = generated(old)
    assert d.plan(NS, [new], [], [current], ALL).updates == ((current, new),)


def test_a_removed_setting_is_removed_from_the_monitor() -> None:
    old = candidate(d.from_service(service(annotations={d.PATH_ANNOTATION: "/x"})))
    new = candidate(d.from_service(service()))
    assert d.plan(NS, [new], [], [generated(old)], ALL).updates


def test_a_hand_edited_generated_monitor_is_put_back() -> None:
    c = candidate(d.from_service(service()))
    edited = generated(c, spec={"target": {"service": {"name": "api", "port": 9999}}})
    assert d.plan(NS, [c], [], [edited], ALL).updates == ((edited, c),)


def test_server_defaults_do_not_count_as_a_change() -> None:
    c = candidate(d.from_service(service()))
    spec = d.monitor_spec(c.endpoint)
    defaulted = {
        "target": {**spec["target"], "scheme": "http", "resourceUri": "health://status"},
        "probe": {"interval": "5s", "timeout": "1s", "failureThreshold": 3, "successThreshold": 1},
    }
    assert d.plan(NS, [c], [], [generated(c, spec=defaulted)], ALL) == d.Plan()


def test_a_monitor_whose_source_is_gone_is_deleted_if_its_source_is_listed() -> None:
    c = candidate(d.from_service(service()))
    current = generated(c)
    assert d.plan(NS, [], [], [current], ALL).deletes == (current,)
    # Not listed yet (or not followed): left alone.
    assert d.plan(NS, [], [], [current], ("toolhive",)) == d.Plan()


def test_a_bad_annotation_keeps_the_monitor_as_it_was_and_is_noticed() -> None:
    c = candidate(d.from_service(service()))
    p = problem(d.from_service(service(annotations={d.INTERVAL_ANNOTATION: "soon"})))
    plan = d.plan(NS, [], [p], [generated(c)], ALL)
    assert not plan.creates and not plan.updates and not plan.deletes
    assert [(n.type, n.reason, n.owner.name) for n in plan.notices] == [
        ("Warning", "InvalidMonitorAnnotation", "api")
    ]


def test_a_hand_written_monitor_of_the_service_wins() -> None:
    c = candidate(d.from_service(service()))
    mine = hand_written("mine", "api")
    plan = d.plan(NS, [c], [], [mine], ALL)
    assert not plan.creates and not plan.deletes
    [notice] = plan.notices
    assert notice.reason == d.NOT_GENERATED and "mine" in notice.message
    # Generated first, then a hand-written one appears: the generated one goes.
    current = generated(c)
    assert d.plan(NS, [c], [], [current, mine], ALL).deletes == (current,)
    # Even if its source is not listed yet.
    assert d.plan(NS, [c], [], [current, mine], ()).deletes == (current,)


def test_a_hand_written_monitor_of_the_same_name_is_never_touched() -> None:
    c = candidate(d.from_service(service()))
    namesake = hand_written("api", "other")
    plan = d.plan(NS, [c], [], [namesake], ALL)
    assert plan.creates == () and plan.updates == () and plan.deletes == ()
    [notice] = plan.notices
    assert notice.type == "Warning" and "not generated" in notice.message


def test_one_monitor_per_service_the_annotation_first() -> None:
    from_svc = candidate(d.from_service(service(name="mcp-fetch-proxy", ports=[("http", 8080)])))
    from_th = candidate(d.from_mcp_server(TOOLHIVE, "v1beta1", server(TOOLHIVE.group, "fetch", {})))
    assert from_svc.name == from_th.name == "mcp-fetch-proxy"
    plan = d.plan(NS, [from_th, from_svc], [], [], ALL)
    assert plan.creates == (from_svc,)
    [notice] = plan.notices
    assert notice.owner == from_th.owner and "Service mcp-fetch-proxy" in notice.message
    # Generated from ToolHive already: taken over (label and owner) by the annotation.
    current = generated(from_th)
    assert d.plan(NS, [from_th, from_svc], [], [current], ALL).updates == ((current, from_svc),)


def test_monitors_being_deleted_and_other_namespaces_are_left_alone() -> None:
    c = candidate(d.from_service(service()))
    assert d.plan(NS, [c], [], [generated(c, deleting=True, spec={})], ALL) == d.Plan()
    assert d.plan("elsewhere", [c], [], [generated(c)], ALL) == d.Plan()


def test_the_update_patch_tests_before_it_writes() -> None:
    old = candidate(d.from_service(service()))
    new = candidate(d.from_service(service(annotations={d.INTERVAL_ANNOTATION: "30s"})))
    ops = d.update_patch(generated(old), new)
    assert ops[:2] == [
        {"op": "test", "path": "/metadata/uid", "value": "m-api"},
        {"op": "test", "path": "/metadata/labels/mcphealth.dev~1generated-by", "value": "service"},
    ]
    assert {"op": "add", "path": "/spec", "value": d.monitor_spec(new.endpoint)} in ops
    assert ops[-2]["path"] == "/metadata/ownerReferences"
    bare = d.update_patch(generated(old, has_annotations=False), new)
    assert {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {d.HASH_ANNOTATION: d.spec_hash(new)},
    } in bare
    assert d.still_generated_patch(generated(old)) == ops[:2]


# -- settings --------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    assert d.settings_from_env({}) == d.Settings()
    assert not d.Settings().enabled
    s = d.settings_from_env(
        {
            d.ENV_SERVICES: "true",
            d.ENV_GROUPS: "kagent.dev, toolhive.stacklok.dev,kagent.dev",
            d.ENV_RECHECK: "5",
        }
    )
    assert s == d.Settings(True, ("kagent.dev", "toolhive.stacklok.dev"), 5.0) and s.enabled
    assert [x.name for x in s.sources] == ["kmcp", "toolhive"]
    with pytest.raises(ValueError, match=r"unknown MCPServer API group 'example\.com'"):
        d.settings_from_env({d.ENV_GROUPS: "example.com"})
    with pytest.raises(ValueError, match=d.ENV_SERVICES):
        d.settings_from_env({d.ENV_SERVICES: "maybe"})


def test_the_flags_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_health_operator.runtime import discovery_flags

    parser = argparse.ArgumentParser()
    discovery_flags.add_arguments(parser)
    monkeypatch.setenv(d.ENV_GROUPS, "kagent.dev")
    assert discovery_flags.settings_of(parser.parse_args([])) == d.Settings(False, ("kagent.dev",))
    args = parser.parse_args(
        ["--discover-services", "--discover-group", "mcp.x-k8s.io", "--discover-recheck", "2"]
    )
    assert discovery_flags.settings_of(args) == d.Settings(True, ("mcp.x-k8s.io",), 2.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--discover-group", "example.com"])


@pytest.mark.parametrize(
    ("namespace", "patterns", "watched"),
    [
        ("a", (), True),
        ("a", ("a", "b"), True),
        ("c", ("a", "b"), False),
        ("team-x", ("team-*",), True),
        ("team-x", ("team-*", "!team-x"), False),
        ("other", ("!team-x",), True),
    ],
)
def test_namespace_scope(namespace: str, patterns: tuple[str, ...], watched: bool) -> None:
    assert d.in_scope(namespace, patterns) is watched


@pytest.mark.parametrize(
    ("patterns", "exact"),
    [
        ((), False),  # every namespace
        (("team-a", "team-b"), True),
        (("team-a", "team-*"), False),
        (("!kube-system",), False),
        (("team-[ab]",), False),
        (("team-?",), False),
    ],
)
def test_exact_names_are_watched_each_and_globs_over_all(
    patterns: tuple[str, ...], exact: bool
) -> None:
    assert d.exact_names(patterns) is exact
