"""A real Kubernetes control plane (kube-apiserver + etcd) on loopback.

There is no prebuilt control plane to download on the machines this project
targets, so both binaries are built from the Go module proxy at pinned
versions and cached under ``~/.cache/mcp-health-operator/<name>-<version>/``;
a cached binary is reused and nothing is rebuilt unless it is missing.

The API server runs with ``--authorization-mode=RBAC`` and an admin identity
(a static bearer token in ``system:masters``), so tests can also act as
less-privileged ServiceAccounts. There is no kube-controller-manager: no
garbage collection, no Deployment->ReplicaSet->Pod controllers, and deleted
namespaces stay ``Terminating``. Tests assert on the operator's API calls,
not on pods.

Usage::

    python -m mcp_health_testbed.controlplane build
    python -m mcp_health_testbed.controlplane up --kubeconfig /tmp/kc
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mcp_health_testbed import _procs

K8S_VERSION = os.environ.get("MCP_HEALTH_K8S_VERSION", "v1.33.13")
ETCD_VERSION = os.environ.get("MCP_HEALTH_ETCD_VERSION", "v3.5.35")

# k8s.io/kubernetes requires its staging modules at v0.0.0 and relies on
# replace lines; a wrapper module must pin each one to v0.<minor>.<patch>.
_STAGING_MODULES = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
]


def cache_dir() -> Path:
    base = os.environ.get("MCP_HEALTH_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mcp-health-operator"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time across processes (parallel test runs, demo + tests)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go_build(
    *,
    module: str,
    go_mod: str,
    package: str,
    ldflags: str,
    out: Path,
    files: dict[str, str] | None = None,
) -> None:
    """Build ``package`` in a wrapper module (``files``: its own sources, if any)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"the Go toolchain is needed to build {module}; install Go")
    with tempfile.TemporaryDirectory(prefix=f"build-{module}-") as work:
        Path(work, "go.mod").write_text(go_mod)
        for name, text in (files or {}).items():
            Path(work, name).write_text(text)
        env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0")
        # -mod=mod lets `go build` resolve the graph and write go.sum itself;
        # the wrapper module needs no source files of its own.
        subprocess.run(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(Path(work, out.name)),
                package,
            ],
            cwd=work,
            env=env,
            check=True,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(work, out.name)), out)


def etcd_binary(version: str = ETCD_VERSION) -> Path:
    """Path to the cached etcd, building it first if missing."""
    out = cache_dir() / f"etcd-{version}" / "etcd"
    with _build_lock():
        if not out.exists():
            print(f"building etcd {version} from the Go module proxy", file=sys.stderr)
            _go_build(
                module="etcd",
                go_mod=f"module mcphealth.dev/build/etcd\n\ngo 1.24\n\n"
                f"require go.etcd.io/etcd/server/v3 {version}\n",
                package="go.etcd.io/etcd/server/v3",
                ldflags="-s -w",
                out=out,
            )
    return out


def apiserver_binary(version: str = K8S_VERSION) -> Path:
    """Path to the cached kube-apiserver, building it first if missing."""
    return _kubernetes_binary("kube-apiserver", version)


# The node's components, built with the same wrapper module as kube-apiserver.
NODE_COMPONENTS = ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy")


def node_binary(name: str, version: str = K8S_VERSION) -> Path:
    """Path to a cached node component (one of ``NODE_COMPONENTS``), built first if missing."""
    if name not in NODE_COMPONENTS:
        raise ValueError(f"{name!r} is not a node component ({', '.join(NODE_COMPONENTS)})")
    return _kubernetes_binary(name, version)


def kubectl_binary(version: str = K8S_VERSION) -> Path:
    """``kubectl`` from PATH, or one built from the Go module proxy and cached."""
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    return _kubernetes_binary("kubectl", version)


def _kubernetes_binary(name: str, version: str) -> Path:
    out = cache_dir() / f"{name}-{version}" / name
    with _build_lock():
        if not out.exists():
            print(
                f"building {name} {version} from the Go module proxy "
                "(several minutes the first time)",
                file=sys.stderr,
            )
            staging = "v0." + version.removeprefix("v1.")
            replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in _STAGING_MODULES)
            minor = version.split(".")[1]
            _go_build(
                module=name,
                go_mod=f"module mcphealth.dev/build/{name}\n\ngo 1.24\n\n"
                f"require k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n",
                package=f"k8s.io/kubernetes/cmd/{name}",
                ldflags=(
                    f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
                    f"-X k8s.io/component-base/version.gitMajor=1 "
                    f"-X k8s.io/component-base/version.gitMinor={minor}"
                ),
                out=out,
            )
    return out


AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


def audited_calls(log: Path, user: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of each request ``user`` made and was allowed.

    From the audit log; refused requests (401, 403) are left out.
    """
    calls: set[tuple[str, str, str]] = set()
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != user:
            continue
        ref = entry.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery: no object, no RBAC rule
        if (entry.get("responseStatus") or {}).get("code") in (401, 403):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        calls.add((ref.get("apiGroup", ""), resource, entry["verb"]))
    return calls


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver pair with an admin kubeconfig."""

    workdir: Path
    host: str = "127.0.0.1"
    etcd_port: int = 0
    apiserver_port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_args: tuple[str, ...] = ()
    # Log (metadata only) every request a ServiceAccount makes: what the
    # operator, running as the chart's ServiceAccount, really calls.
    audit: bool = False
    _etcd: subprocess.Popen[bytes] | None = None
    _apiserver: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "apiserver.crt"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def sa_signing_key(self) -> Path:
        return self.workdir / "pki" / "sa.key"

    def pids(self) -> dict[str, int]:
        """The running processes: ``apiserver`` and ``etcd`` (for a benchmark's CPU accounting)."""
        procs = {"apiserver": self._apiserver, "etcd": self._etcd}
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    def start(self, *, timeout: float = 120) -> ControlPlane:
        etcd, apiserver = etcd_binary(), apiserver_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        self._start_etcd(etcd, timeout=timeout)
        self._write_credentials(pki)
        self._start_apiserver(apiserver, pki, timeout=timeout)
        self._write_kubeconfig()
        return self

    def _start_etcd(self, binary: Path, *, timeout: float) -> None:
        self.etcd_port = self.etcd_port or _procs.free_port()
        peer = _procs.free_port()
        client_url = f"http://{self.host}:{self.etcd_port}"
        peer_url = f"http://{self.host}:{peer}"
        log = self.workdir / "etcd.log"
        self._etcd = subprocess.Popen(
            [
                str(binary),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--log-level=warn",
                # Test data is disposable; fsync only costs time on a 2-core box.
                "--unsafe-no-fsync",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _procs.wait_for_port(self.host, self.etcd_port, timeout=timeout, proc=self._etcd, log=log)

    def _write_credentials(self, pki: Path) -> None:
        tokens = pki / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        if not self.sa_signing_key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(self.sa_signing_key), "2048"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    "openssl",
                    "rsa",
                    "-in",
                    str(self.sa_signing_key),
                    "-pubout",
                    "-out",
                    str(pki / "sa.pub"),
                ],
                check=True,
                capture_output=True,
            )

    def _start_apiserver(self, binary: Path, pki: Path, *, timeout: float) -> None:
        self.apiserver_port = self.apiserver_port or _procs.free_port()
        log = self.workdir / "kube-apiserver.log"
        args = [
            str(binary),
            f"--etcd-servers=http://{self.host}:{self.etcd_port}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.sa_signing_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--profiling=false",
            *self._audit_args(),
            *self.extra_args,
        ]
        self._apiserver = subprocess.Popen(
            args, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout=timeout, log=log)

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}"]

    def _wait_ready(self, *, timeout: float, log: Path) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the CA file only exists once it answers
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self._apiserver is not None
            if self._apiserver.poll() is not None:
                raise RuntimeError(
                    f"kube-apiserver exited with {self._apiserver.returncode}{_procs.tail(log)}"
                )
            request = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
            )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready within {timeout}s ({last}){_procs.tail(log)}")

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            kubeconfig_text(
                server=self.server, ca_file=self.ca_file, user="admin", token=self.token
            )
        )
        self.kubeconfig.chmod(0o600)

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (an API outage); etcd and the data stay."""
        _procs.stop(self._apiserver)
        self._apiserver = None

    def start_apiserver(self, *, timeout: float = 120) -> None:
        """Start kube-apiserver again on the same port, certificates and etcd."""
        if self._apiserver is not None and self._apiserver.poll() is None:
            return
        pki = self.workdir / "pki"
        self._start_apiserver(apiserver_binary(), pki, timeout=timeout)

    def freeze_apiserver(self) -> None:
        """SIGSTOP kube-apiserver: connections are accepted, nothing is answered (a hung server)."""
        assert self._apiserver is not None
        os.killpg(self._apiserver.pid, signal.SIGSTOP)

    def thaw_apiserver(self) -> None:
        """SIGCONT: the frozen kube-apiserver answers again."""
        assert self._apiserver is not None
        os.killpg(self._apiserver.pid, signal.SIGCONT)

    def stop(self) -> None:
        _procs.stop(self._apiserver)
        _procs.stop(self._etcd)
        self._apiserver = self._etcd = None

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kubeconfig_text(
    *, server: str, ca_file: Path, user: str, token: str, namespace: str = "default"
) -> str:
    """A kubeconfig for ``server`` authenticating with a bearer ``token``."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: local\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {ca_file}\n"
        f"users:\n- name: {user}\n  user:\n    token: {token}\n"
        f"contexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\n"
        f"    namespace: {namespace}\n"
        "current-context: local\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_health_testbed.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) the cached kube-apiserver and etcd")
    build.add_argument(
        "--node", action="store_true", help="also the node components (kubelet, kube-proxy, ...)"
    )
    up = sub.add_parser("up", help="start a control plane and keep it up until interrupted")
    up.add_argument("--kubeconfig", type=Path, help="also copy the admin kubeconfig here")
    up.add_argument("--workdir", type=Path, help="data directory (default: a temporary one)")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(etcd_binary())
        print(apiserver_binary())
        print(kubectl_binary())
        for name in NODE_COMPONENTS if args.node else ():
            print(node_binary(name))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mcp-health-cp-"))
    plane = ControlPlane(workdir=workdir).start()
    if args.kubeconfig:
        shutil.copy(plane.kubeconfig, args.kubeconfig)
    print(f"kube-apiserver ready at {plane.server}")
    print(f"export KUBECONFIG={args.kubeconfig or plane.kubeconfig}", flush=True)
    stopped = False

    def _stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopped:
            time.sleep(0.2)
    finally:
        plane.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
