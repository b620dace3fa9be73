"""CoreDNS built from source answers cluster names from the real control plane, and nothing else."""

from __future__ import annotations

import json
import secrets
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_health_testbed import _procs, controlplane, coredns
from mcp_health_testbed.controlplane import ControlPlane

# The first test may compile CoreDNS (minutes on a 2-core machine); every DNS
# query below has its own short deadline, so a hang still fails quickly.
pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(1800)]

TYPE_A, TYPE_PTR = 1, 12
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5


@dataclass
class Reply:
    rcode: int
    answers: list[tuple[int, str]]  # (type, decoded rdata)


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at ``offset``, and the offset just past it."""
    labels: list[str] = []
    end: int | None = None
    while True:
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        offset += 1
        if length == 0:
            break
        labels.append(msg[offset : offset + length].decode())
        offset += length
    return ".".join(labels) + ".", end if end is not None else offset


def query(port: int, name: str, qtype: int = TYPE_A, *, timeout: float = 2) -> Reply:
    """One DNS query over UDP to 127.0.0.1:``port``, written and parsed by hand."""
    ident = secrets.randbits(16)
    question = b"".join(
        bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")
    )
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0"
    packet += struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, ("127.0.0.1", port))
        msg, _ = sock.recvfrom(4096)
    got, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", msg[:12])
    assert got == ident and flags & 0x8000, "not a response to this query"
    offset = 12
    for _ in range(qdcount):
        offset = _read_name(msg, offset)[1] + 4
    answers: list[tuple[int, str]] = []
    for _ in range(ancount):
        offset = _read_name(msg, offset)[1]
        rtype, _cls, _ttl, rdlength = struct.unpack("!HHIH", msg[offset : offset + 10])
        offset += 10
        rdata = msg[offset : offset + rdlength]
        if rtype == TYPE_A:
            answers.append((rtype, socket.inet_ntoa(rdata)))
        elif rtype == TYPE_PTR:
            answers.append((rtype, _read_name(msg, offset)[0]))
        else:
            answers.append((rtype, rdata.hex()))
        offset += rdlength
    return Reply(rcode=flags & 0xF, answers=answers)


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(controlplane.kubectl_binary()), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.fixture(scope="module")
def binary() -> Path:
    return coredns.coredns_binary()


@pytest.fixture(scope="module")
def dns_port(
    binary: Path, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """CoreDNS on loopback, watching the control plane through its admin kubeconfig."""
    workdir = tmp_path_factory.mktemp("coredns")
    port, health, ready = (_procs.free_port() for _ in range(3))
    conf = workdir / "Corefile"
    conf.write_text(
        coredns.corefile(
            listen=f".:{port}",
            bind="127.0.0.1",
            health=f"127.0.0.1:{health}",
            ready=f"127.0.0.1:{ready}",
            kubeconfig=control_plane.kubeconfig,
        )
    )
    log = workdir / "coredns.log"
    proc = subprocess.Popen(
        [str(binary), "-conf", str(conf)],
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{ready}/ready", proc, log)
        yield port
    finally:
        _procs.stop(proc)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    # /ready turns 200 only once the kubernetes plugin has synced its caches.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"coredns exited with {proc.returncode}{_procs.tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"coredns not ready within {timeout}s{_procs.tail(log)}")


@pytest.fixture(scope="module")
def demo_ip(control_plane: ControlPlane, dns_port: int) -> str:
    """The ClusterIP of Service ``default/demo``, created after CoreDNS started watching."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kubectl(control_plane, "apply", "-f", "-", stdin=json.dumps(service))
    ip = kubectl(
        control_plane, "get", "service", "demo", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert ip.count(".") == 3, ip
    return ip


def _resolve_until(port: int, name: str, qtype: int, expected: str, timeout: float = 30) -> Reply:
    """Ask until ``expected`` is answered: the watch delivers a new Service asynchronously."""
    deadline = time.monotonic() + timeout
    reply = query(port, name, qtype)
    while (qtype, expected) not in reply.answers and time.monotonic() < deadline:
        time.sleep(0.2)
        reply = query(port, name, qtype)
    return reply


def test_a_service_name_resolves_to_its_cluster_ip(dns_port: int, demo_ip: str) -> None:
    reply = _resolve_until(dns_port, "demo.default.svc.cluster.local", TYPE_A, demo_ip)
    assert reply.rcode == NOERROR
    assert reply.answers == [(TYPE_A, demo_ip)]


def test_the_cluster_ip_resolves_back_to_the_service_name(dns_port: int, demo_ip: str) -> None:
    reverse = ".".join(reversed(demo_ip.split("."))) + ".in-addr.arpa"
    reply = _resolve_until(dns_port, reverse, TYPE_PTR, "demo.default.svc.cluster.local.")
    assert reply.rcode == NOERROR
    assert reply.answers == [(TYPE_PTR, "demo.default.svc.cluster.local.")]


def test_a_missing_service_is_nxdomain(dns_port: int) -> None:
    reply = query(dns_port, "absent.default.svc.cluster.local")
    assert reply.rcode == NXDOMAIN
    assert reply.answers == []


@pytest.mark.parametrize("name", ["example.com", "kubernetes.io", "demo.default.svc.other.local"])
def test_names_outside_the_cluster_domain_are_not_forwarded(dns_port: int, name: str) -> None:
    reply = query(dns_port, name)
    assert reply.rcode in (REFUSED, SERVFAIL)
    assert reply.answers == []


def test_only_the_cluster_dns_plugins_are_usable(binary: Path, tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(f".:{_procs.free_port()} {{\n    bind 127.0.0.1\n    forward . 127.0.0.1\n}}\n")
    run = subprocess.run(
        [str(binary), "-conf", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode != 0
    assert "Unknown directive 'forward'" in run.stdout + run.stderr


def test_forward_is_not_compiled_in(binary: Path) -> None:
    listed = subprocess.run(
        [str(binary), "-plugins"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert {"kubernetes", "cache", "loop", "health", "ready"} <= set(listed)
    assert "forward" not in listed


def test_second_build_reuses_the_cached_binary(binary: Path) -> None:
    before = binary.stat().st_mtime_ns
    started = time.monotonic()
    assert coredns.coredns_binary() == binary
    assert binary.stat().st_mtime_ns == before
    assert time.monotonic() - started < 5
    assert binary.parent == controlplane.cache_dir() / f"coredns-{coredns.COREDNS_VERSION}"
