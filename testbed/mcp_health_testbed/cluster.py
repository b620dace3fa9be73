"""A real single-node Kubernetes cluster on this machine: ``make cluster``.

Built from the same cached binaries as the control plane (kube-apiserver,
etcd) plus the node: kubelet, kube-controller-manager, kube-scheduler and
kube-proxy (iptables mode), all from the Go module proxy; containerd, runc and
the CNI bridge/host-local plugins from Debian; CoreDNS as a pod. Images are
built locally (``testing.images``) and imported into containerd: there is no
registry.

Everything the cluster writes lives under one folder (``cluster_dir()``),
except what the kernel and the node components insist on placing elsewhere;
those are recorded at ``up`` and removed at ``down``: the bridge and its
veths, network namespaces, iptables chains, cgroups, a few well-known paths
(``/run/containerd``, ``/var/log/containers``, ...) and the sysctls kubelet
and routing change. ``down`` checks that nothing is left and says what is.

Network: pods on the bridge ``mcph0`` (10.244.0.0/24, the node and API
server at 10.244.0.1), Services in 10.96.0.0/16, cluster DNS 10.96.0.10.
Traffic from pods to anything that is not the cluster's own is dropped, so
nothing leaves the machine.

Usage::

    python -m mcp_health_testbed.cluster up     # idempotent
    python -m mcp_health_testbed.cluster status
    python -m mcp_health_testbed.cluster down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_health_testbed import _procs, controlplane

NODE_NAME = "mcph-node"
BRIDGE = "mcph0"
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CGROUP_ROOT = "mcp-health-cluster"
ISOLATE_CHAIN = "MCPH-ISOLATE"

# Paths outside cluster_dir() that containerd, kubelet or the CNI plugins
# create whatever they are told; removed at down only if up found them absent.
FOREIGN_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/var/run/netns",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
    "/etc/kubernetes",
)

# kubelet sets these (container_manager_linux.go) and routing needs ip_forward;
# their previous values are restored at down.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/bridge/bridge-nf-call-iptables",
)

REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "ip6tables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "openssl": "openssl",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
}
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
DEBIAN_PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "iproute2",
    "buildah",
    "debootstrap",
)


class ClusterError(RuntimeError):
    """The cluster cannot be started here; the message names what is missing."""


def cluster_dir() -> Path:
    return Path(os.environ.get("MCP_HEALTH_CLUSTER_DIR", controlplane.cache_dir() / "cluster"))


@dataclass(frozen=True)
class Layout:
    """Every path of one cluster, under ``root``."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"


def layout() -> Layout:
    return Layout(cluster_dir())


# --- preflight -------------------------------------------------------------------


def preflight() -> None:
    """Fail with one message naming everything this machine lacks to run pods."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("root (containerd, kubelet and the bridge need it)")
    for command, package in REQUIRED_COMMANDS.items():
        if shutil.which(command) is None:
            missing.append(f"the command {command} (Debian package {package})")
    for plugin in CNI_PLUGINS:
        if not (CNI_BIN / plugin).exists():
            missing.append(f"the CNI plugin {CNI_BIN / plugin} (containernetworking-plugins)")
    for subsystem in ("cpu", "cpuset", "memory", "pids"):
        if not Path("/sys/fs/cgroup", subsystem).is_dir():
            missing.append(f"the cgroup v1 hierarchy /sys/fs/cgroup/{subsystem}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("the overlay filesystem (containerd's snapshotter)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        missing.append("bridge netfilter (the br_netfilter module): Services need it")
    if not Path("/dev/kmsg").exists():
        missing.append("/dev/kmsg (kubelet's OOM watcher reads it)")
    if shutil.which("go") is None:
        missing.append("Go (the node components are built from the Go module proxy)")
    if missing:
        raise ClusterError(
            "this machine cannot run the cluster; missing:\n  - "
            + "\n  - ".join(missing)
            + f"\n(`bash hack/system-deps.sh {' '.join(DEBIAN_PACKAGES)}` installs the packages)"
        )


# --- small helpers ------------------------------------------------------------------


def _run(*argv: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _ok(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys", name)


def _read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _sysctl_path(name).write_text(value)


# --- certificates -------------------------------------------------------------------


def _make_pki(pki: Path) -> None:
    """A cluster CA and the certificates the components present to each other."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    if not (pki / "ca.crt").exists():
        _run(
            "openssl", "req", "-x509", *ec, "-keyout", str(pki / "ca.key"),
            "-out", str(pki / "ca.crt"), "-days", "3650", "-subj", "/CN=mcp-health-cluster-ca",
        )  # fmt: skip
    api_sans = [
        f"IP:{NODE_IP}",
        "IP:10.96.0.1",
        "IP:127.0.0.1",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
    ]
    _sign(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", api_sans)
    _sign(pki, "kubelet", f"/CN={NODE_NAME}", "serverAuth", [f"IP:{NODE_IP}", f"DNS:{NODE_NAME}"])
    # The API server's identity towards the kubelet: system:masters passes
    # kubelet's webhook authorization (logs, exec, port-forward).
    _sign(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver", "clientAuth", [])
    if not (pki / "sa.key").exists():
        _run("openssl", "genrsa", "-out", str(pki / "sa.key"), "2048")
        _run("openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _sign(pki: Path, name: str, subject: str, usage: str, sans: list[str]) -> None:
    if (pki / f"{name}.crt").exists():
        return
    ext = [f"extendedKeyUsage={usage}", "keyUsage=digitalSignature,keyEncipherment"]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    extfile = _write(pki / f"{name}.ext", "\n".join(ext) + "\n")
    csr = pki / f"{name}.csr"
    _run(
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(pki / f"{name}.key"), "-out", str(csr), "-subj", subject,
    )  # fmt: skip
    _run(
        "openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
        "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
        "-extfile", str(extfile), "-out", str(pki / f"{name}.crt"),
    )  # fmt: skip


# --- processes ------------------------------------------------------------------------


def _spawn(lay: Layout, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start a daemon that outlives this process; its pid is kept in ``pids/``."""
    lay.logs.mkdir(parents=True, exist_ok=True)
    lay.pids.mkdir(parents=True, exist_ok=True)
    with (lay.logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    (lay.pids / name).write_text(f"{proc.pid} {argv[0]}\n")
    return proc.pid


def _alive(lay: Layout, name: str) -> int | None:
    """The daemon's pid if it is still that daemon (pids are reused)."""
    try:
        pid_text, binary = (lay.pids / name).read_text().split(maxsplit=1)
        pid = int(pid_text)
        exe = os.readlink(f"/proc/{pid}/exe")
    except (OSError, ValueError):
        return None
    if Path(exe.removesuffix(" (deleted)")).name != Path(binary.strip()).name:
        return None
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return None
    return pid


def _kill(pid: int, timeout: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _wait(what: str, check: Any, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # any failure is "not yet" until the deadline
            last = exc
        time.sleep(0.5)
    raise ClusterError(f"{what} not ready within {timeout:.0f}s ({last}){_procs.tail(log)}")


# --- the cluster ------------------------------------------------------------------------

DAEMONS = (
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)


@dataclass
class Cluster:
    """A handle on the cluster in ``layout``: its kubeconfig and API address."""

    lay: Layout

    @property
    def kubeconfig(self) -> Path:
        return self.lay.kubeconfig

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.lay.state_file.read_text())
        return data

    @property
    def server(self) -> str:
        return str(self.state["server"])

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        argv = [str(controlplane.kubectl_binary()), "--kubeconfig", str(self.kubeconfig), *args]
        return _run(*argv, check=check, input=input)


def running() -> Cluster | None:
    """The cluster if every daemon of it is up and the node is Ready."""
    lay = layout()
    if not lay.state_file.exists():
        return None
    if any(_alive(lay, name) is None for name in DAEMONS):
        return None
    cluster = Cluster(lay)
    try:
        return cluster if _node_ready(cluster) else None
    except ClusterError:
        return None


def up(*, build: bool = True) -> Cluster:
    """Start the cluster, or return the one already running; a half-up one is torn down.

    ``build=False`` uses the cached binaries and images as they are (tests of
    the life cycle); by default what changed is rebuilt and imported again.
    """
    from mcp_health_testbed import images

    found = running()
    if found is not None:
        if build:  # the code may have changed since: rebuild what did, import again
            images.build()
            images.import_images(str(found.lay.containerd_socket))
        return found
    preflight()
    if layout().root.exists():
        down()
    binaries = _binaries()
    if build:
        images.build()
    lay = layout()
    try:
        _record_host(lay)
        _start(lay, binaries)
        images.import_images(str(lay.containerd_socket))
        cluster = Cluster(lay)
        _addons(cluster)
        _wait("the node", lambda: _node_ready(cluster), 120, lay.logs / "kubelet.log")
        _wait("cluster DNS", lambda: _dns_ready(cluster), 120, lay.logs / "kubelet.log")
    except BaseException:
        with contextlib.suppress(Exception):
            down()
        raise
    return cluster


def _binaries() -> dict[str, Path]:
    found = {name: controlplane.node_binary(name) for name in controlplane.NODE_COMPONENTS}
    found["etcd"] = controlplane.etcd_binary()
    found["kube-apiserver"] = controlplane.apiserver_binary()
    return found


def _record_host(lay: Layout) -> None:
    """What was here before: so down removes exactly what up made."""
    lay.root.mkdir(parents=True, exist_ok=True)
    netns = set()
    for folder in ("/run/netns", "/var/run/netns"):
        with contextlib.suppress(OSError):
            netns.update(os.listdir(folder))
    state = {
        "absent_paths": [p for p in FOREIGN_PATHS if not os.path.lexists(p)],
        "sysctls": {name: _read_sysctl(name) for name in SYSCTLS},
        "netns_before": sorted(netns),
    }
    _write(lay.state_file, json.dumps(state, indent=1))


def _update_state(lay: Layout, **values: object) -> None:
    state = json.loads(lay.state_file.read_text())
    state.update(values)
    _write(lay.state_file, json.dumps(state, indent=1))


def _start(lay: Layout, bins: dict[str, Path]) -> None:
    _make_pki(lay.pki)
    _network_up()
    _cgroups_up()
    token = os.urandom(16).hex()
    _write(lay.pki / "tokens.csv", f'{token},admin,admin,"system:masters"\n', 0o600)
    api_port = _procs.free_port(NODE_IP)
    server = f"https://{NODE_IP}:{api_port}"
    _update_state(lay, server=server)
    _write(
        lay.kubeconfig,
        controlplane.kubeconfig_text(
            server=server, ca_file=lay.pki / "ca.crt", user="admin", token=token
        ),
        0o600,
    )
    _start_containerd(lay)
    _start_etcd(lay, bins["etcd"])
    _start_apiserver(lay, bins["kube-apiserver"], api_port)
    _start_node(lay, bins)


def _network_up() -> None:
    if not _ok("ip", "link", "show", BRIDGE):
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _write_sysctl("net/ipv4/ip_forward", "1")
    _write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
    # Pods may talk to pods, Services (DNAT happens before FORWARD) and this
    # host; anything else they send is dropped, so nothing leaves the machine.
    for binary in ("iptables",):
        if not _ok(binary, "-S", ISOLATE_CHAIN):
            _run(binary, "-N", ISOLATE_CHAIN)
        _run(binary, "-F", ISOLATE_CHAIN)
        _run(binary, "-A", ISOLATE_CHAIN, "-d", CLUSTER_CIDR, "-j", "RETURN")
        _run(binary, "-A", ISOLATE_CHAIN, "-j", "DROP")
        if not _ok(binary, "-C", "FORWARD", "-i", BRIDGE, "-j", ISOLATE_CHAIN):
            _run(binary, "-I", "FORWARD", "1", "-i", BRIDGE, "-j", ISOLATE_CHAIN)
    # Pods get no IPv6 route, but drop forwarded IPv6 from the bridge all the same.
    if not _ok("ip6tables", "-S", ISOLATE_CHAIN):
        _run("ip6tables", "-N", ISOLATE_CHAIN)
    _run("ip6tables", "-F", ISOLATE_CHAIN)
    _run("ip6tables", "-A", ISOLATE_CHAIN, "-j", "DROP")
    if not _ok("ip6tables", "-C", "FORWARD", "-i", BRIDGE, "-j", ISOLATE_CHAIN):
        _run("ip6tables", "-I", "FORWARD", "1", "-i", BRIDGE, "-j", ISOLATE_CHAIN)


def _cgroup_hierarchies() -> list[Path]:
    found = []
    for entry in Path("/sys/fs/cgroup").iterdir():
        if entry.is_dir() and not entry.is_symlink() and (entry / "cgroup.procs").exists():
            found.append(entry)
    return found


def _cgroups_up() -> None:
    """kubelet wants its cgroup root to exist in every hierarchy."""
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset" or (hierarchy / "cpuset.cpus").exists():
            # A new cpuset starts empty; children could hold no task.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not (root / knob).read_text().strip():
                    (root / knob).write_text((hierarchy / knob).read_text())


def _start_containerd(lay: Layout) -> None:
    base = lay.root / "containerd"
    lay.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    config = f"""\
        version = 2
        root = "{base / "root"}"
        state = "{base / "state"}"
        [grpc]
          address = "{lay.containerd_socket}"
        [ttrpc]
          address = "{base / "containerd.sock.ttrpc"}"
        [debug]
          address = ""
        [plugins."io.containerd.internal.v1.opt"]
          path = "{base / "opt"}"
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "localhost/mcp-health/pause:3.10"
          # This machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
          restrict_oom_score_adj = true
          enable_selinux = false
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "overlayfs"
            default_runtime_name = "runc"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                SystemdCgroup = false
                Root = "{base / "runc"}"
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "{CNI_BIN}"
            conf_dir = "{lay.cni_conf_dir}"
        """
    conf = _write(base / "config.toml", textwrap.dedent(config))
    cni = {
        "cniVersion": "1.0.0",
        "name": "mcph",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(lay.root / "cni" / "ipam"),
                },
            }
        ],
    }
    _write(lay.cni_conf_dir / "10-mcph.conflist", json.dumps(cni, indent=1))
    _spawn(lay, "containerd", ["containerd", "--config", str(conf)])
    _wait(
        "containerd",
        lambda: _run("ctr", "--address", str(lay.containerd_socket), "version", check=False),
        60,
        lay.logs / "containerd.log",
    )


def _start_etcd(lay: Layout, binary: Path) -> None:
    port, peer = _procs.free_port(), _procs.free_port()
    _update_state(lay, etcd=f"http://127.0.0.1:{port}")
    _spawn(
        lay,
        "etcd",
        [
            str(binary),
            "--name=default",
            f"--data-dir={lay.root / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{port}",
            f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--log-level=warn",
            "--unsafe-no-fsync",  # disposable data; fsync only costs time here
        ],
    )
    _procs.wait_for_port("127.0.0.1", port, timeout=60, log=lay.logs / "etcd.log")


def _start_apiserver(lay: Layout, binary: Path, port: int) -> None:
    pki = lay.pki
    _spawn(
        lay,
        "kube-apiserver",
        [
            str(binary),
            f"--etcd-servers={json.loads(lay.state_file.read_text())['etcd']}",
            # Pods reach it through the `kubernetes` Service, so it listens on the bridge.
            f"--bind-address={NODE_IP}",
            f"--advertise-address={NODE_IP}",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ],
    )
    cluster = Cluster(lay)
    _wait("kube-apiserver", lambda: _readyz(cluster), 120, lay.logs / "kube-apiserver.log")


def _readyz(cluster: Cluster) -> bool:
    ctx = ssl.create_default_context(cafile=str(cluster.lay.pki / "ca.crt"))
    token = (cluster.lay.pki / "tokens.csv").read_text().split(",")[0]
    request = urllib.request.Request(
        f"{cluster.server}/readyz", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=ctx, timeout=2) as response:
        return bool(response.status == 200)


def _start_node(lay: Layout, bins: dict[str, Path]) -> None:
    pki, kc = lay.pki, str(lay.kubeconfig)
    _spawn(
        lay,
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            # Pods need the kube-root-ca.crt ConfigMap to trust the API server.
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_procs.free_port()}",
        ],
    )
    _spawn(
        lay,
        "kube-scheduler",
        [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={_procs.free_port()}",
        ],
    )
    resolv = _write(lay.root / "resolv.conf", "# no upstream: nothing leaves the machine\n")
    kubelet_config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{lay.containerd_socket}",
        "clusterDNS": [DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": _procs.free_port(),
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(lay.pod_logs),
        "serializeImagePulls": False,
        # Images cannot be pulled again here: never collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "rotateCertificates": False,
        "protectKernelDefaults": False,
        "maxPods": 110,
        # Mounted ConfigMaps follow their object within a sync (1 min by default).
        "syncFrequency": "10s",
    }
    config = _write(lay.root / "kubelet" / "config.yaml", json.dumps(kubelet_config, indent=1))
    _spawn(
        lay,
        "kubelet",
        [
            str(bins["kubelet"]),
            f"--config={config}",
            f"--kubeconfig={kc}",
            f"--root-dir={lay.root / 'kubelet' / 'root'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
    )
    proxy_config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": kc},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "clusterCIDR": CLUSTER_CIDR,
        "healthzBindAddress": f"127.0.0.1:{_procs.free_port()}",
        "metricsBindAddress": f"127.0.0.1:{_procs.free_port()}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # 0 leaves the host's conntrack sysctls as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
    }
    proxy = _write(lay.root / "kube-proxy.json", json.dumps(proxy_config, indent=1))
    _spawn(lay, "kube-proxy", [str(bins["kube-proxy"]), f"--config={proxy}"])


def _node_ready(cluster: Cluster) -> bool:
    out = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if not out:
        return False
    node = json.loads(out)
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _dns_ready(cluster: Cluster) -> bool:
    out = cluster.kubectl(
        "-n", "kube-system", "get", "deploy", "coredns", "-o", "json", check=False
    )
    return bool(out) and json.loads(out).get("status", {}).get("availableReplicas", 0) >= 1


def _addons(cluster: Cluster) -> None:
    """Cluster DNS (CoreDNS as a pod) and the cluster's own namespaces."""
    from mcp_health_testbed import coredns

    _wait("the default ServiceAccount", lambda: _has_default_sa(cluster), 60)
    corefile = coredns.corefile(CLUSTER_DOMAIN, listen=".:1053")
    cluster.kubectl("apply", "-f", "-", input=coredns_manifest(corefile))


def _has_default_sa(cluster: Cluster) -> bool:
    return bool(cluster.kubectl("-n", "kube-system", "get", "sa", "default", check=False))


def coredns_manifest(corefile: str) -> str:
    """CoreDNS as a cluster's DNS: RBAC, Corefile, Deployment and the kube-dns Service."""
    from mcp_health_testbed import coredns

    image = f"localhost/mcp-health/coredns:{coredns.COREDNS_VERSION}"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "coredns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 1053, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 1053, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 2,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "securityContext": {
                                    "runAsUser": 65532,
                                    "runAsNonRoot": True,
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "clusterIP": DNS_IP,
                "selector": {"k8s-app": "kube-dns"},
                # CoreDNS runs without root, so it listens on 1053 behind port 53.
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                ],
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


# --- down ---------------------------------------------------------------------------------


def down() -> list[str]:
    """Stop everything and remove what up made; returns what could not be removed."""
    lay = layout()
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(lay.state_file.read_text())
    for name in reversed(DAEMONS):
        if name == "containerd":
            continue
        pid = _alive(lay, name)
        if pid is not None:
            _kill(pid)
    _kill_cgroup_tasks()
    _kill_shims(lay)
    pid = _alive(lay, "containerd")
    if pid is not None:
        _kill(pid)
    _unmount_under(lay.root)
    _remove_netns(set(state.get("netns_before", [])))
    _network_down()
    _remove_cgroups()
    _remove_container_log_links(lay)
    for name, value in state.get("sysctls", {}).items():
        if value is not None:
            _write_sysctl(name, value)
    for path in state.get("absent_paths", []):
        if os.path.lexists(path):
            _unmount_under(Path(path))
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(lay.root, ignore_errors=True)
    return leftovers(state)


def leftovers(state: dict[str, Any] | None = None) -> list[str]:
    """What of a cluster is still on this machine (empty after a clean down)."""
    lay = layout()
    left: list[str] = []
    if lay.root.exists():
        left.append(f"folder {lay.root}")
    if _run("ip", "link", "show", BRIDGE, check=False):
        left.append(f"bridge {BRIDGE}")
    for line in _run("ip", "-o", "link", "show", "type", "veth", check=False).splitlines():
        if f"master {BRIDGE}" in line:
            left.append("veth " + line.split(":")[1].strip())
    for save in ("iptables-save", "ip6tables-save"):
        for line in _run(save, check=False).splitlines():
            if "KUBE-" in line or ISOLATE_CHAIN in line:
                left.append(f"{save}: {line}")
                break
    for hierarchy in _cgroup_hierarchies():
        if (hierarchy / CGROUP_ROOT).exists():
            left.append(f"cgroup {hierarchy / CGROUP_ROOT}")
    for mount in _mounts():
        if mount.startswith(str(lay.root)) or "/netns/cni-" in mount:
            left.append(f"mount {mount}")
    for path in (state or {}).get("absent_paths", []):
        if os.path.lexists(path):
            left.append(f"path {path}")
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(lay.root) in cmd:
                    left.append(f"process {pid_dir.name}: {cmd[:120]}")
    return left


def _kill_cgroup_tasks() -> None:
    """Every process of every pod: they live under the cluster's cgroup root."""
    for _ in range(3):
        pids: set[int] = set()
        for hierarchy in _cgroup_hierarchies():
            root = hierarchy / CGROUP_ROOT
            if root.exists():
                for procs in root.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids.update(int(p) for p in procs.read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _kill_shims(lay: Layout) -> None:
    """containerd's shims outlive containerd; ours name our socket."""
    needle = str(lay.containerd_socket).encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (pid_dir / "cmdline").read_bytes()
            if b"containerd-shim" in cmd and needle in cmd:
                os.kill(int(pid_dir.name), signal.SIGKILL)


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        points.append(point)
    return points


def _unmount_under(root: Path) -> None:
    prefix = str(root)
    for point in sorted(
        (p for p in _mounts() if p == prefix or p.startswith(prefix + "/")),
        key=len,
        reverse=True,
    ):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_netns(before: set[str]) -> None:
    for folder in ("/run/netns", "/var/run/netns"):
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith("cni-") and name not in before:
                    path = Path(folder, name)
                    subprocess.run(["umount", "-l", str(path)], capture_output=True)
                    with contextlib.suppress(OSError):
                        path.unlink()


def _network_down() -> None:
    for line in _run("ip", "-o", "link", "show", "type", "veth", check=False).splitlines():
        if f"master {BRIDGE}" in line:
            name = line.split(":")[1].strip().split("@")[0]
            _run("ip", "link", "del", name, check=False)
    _run("ip", "link", "del", BRIDGE, check=False)
    for family in ("iptables", "ip6tables"):
        _drop_chains(f"{family}-save", f"{family}-restore")


def _drop_chains(save: str, restore: str) -> None:
    """Remove every KUBE-* chain (kube-proxy's and kubelet's) and ours, rule by rule."""
    dump = _run(save, check=False)
    if "KUBE-" not in dump and ISOLATE_CHAIN not in dump:
        return
    out: list[str] = []
    for line in dump.splitlines():
        if line.startswith(":") and ("KUBE-" in line or ISOLATE_CHAIN in line):
            continue
        if line.startswith("-A") and ("KUBE-" in line or ISOLATE_CHAIN in line):
            continue
        out.append(line)
    _run(restore, input="\n".join(out) + "\n", check=False)


def _remove_cgroups() -> None:
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / CGROUP_ROOT
        if not root.exists():
            continue
        for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _remove_container_log_links(lay: Layout) -> None:
    folder = Path("/var/log/containers")
    with contextlib.suppress(OSError):
        for link in folder.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(lay.pod_logs)):
                    link.unlink()


# --- CLI ------------------------------------------------------------------------------------


@contextlib.contextmanager
def session() -> Iterator[Cluster]:
    """A cluster for a test session: reuses one already up, else starts and later stops it."""
    found = running()
    cluster = up()  # also brings a running cluster's images up to date
    try:
        yield cluster
    finally:
        if found is None:
            left = down()
            if left:
                raise ClusterError("cluster-down left:\n  " + "\n  ".join(left))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_health_testbed.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the cluster (or reuse the running one)")
    sub.add_parser("down", help="stop it and remove everything it made")
    sub.add_parser("status", help="say whether it runs")
    sub.add_parser("preflight", help="check this machine can run pods")
    args = parser.parse_args(argv)
    try:
        if args.command == "preflight":
            preflight()
            print("this machine can run the cluster")
        elif args.command == "up":
            started = time.monotonic()
            cluster = up()
            print(f"cluster up in {time.monotonic() - started:.0f}s at {cluster.server}")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            left = down()
            if left:
                print("left behind:\n  " + "\n  ".join(left), file=sys.stderr)
                return 1
            print("cluster down; nothing left behind")
        else:
            found = running()
            print(f"running at {found.server}" if found else "not running")
            return 0 if found else 3
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
