"""``helm`` v3, built from the Go module proxy at a pinned version and cached.

No prebuilt helm download is reachable on the machines this project targets,
so, like kube-apiserver and etcd (see :mod:`controlplane`), helm is built
from its module (``helm.sh/helm/v3/cmd/helm``) through a wrapper module and
cached under ``~/.cache/mcp-health-operator/helm-<version>/helm``. A cached
binary is reused; a ``helm`` on PATH is used only when ``MCP_HEALTH_HELM`` is
set to ``path`` (tests want the pinned version, not whatever is installed).

Usage::

    python -m mcp_health_testbed.helm build    # prints the binary's path
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mcp_health_testbed.controlplane import _build_lock, _go_build, cache_dir

# v3.19 is the newest helm line whose go.mod still accepts Go 1.24 (the
# project's minimum); v3.20+ need Go 1.25/1.26.
HELM_VERSION = os.environ.get("MCP_HEALTH_HELM_VERSION", "v3.19.5")
# The Kubernetes version helm reports to charts (.Capabilities.KubeVersion)
# when it does not talk to a cluster (helm template, helm lint); helm's own
# Makefile derives it from its client-go (v0.34 for helm v3.19).
_K8S_MINOR = os.environ.get("MCP_HEALTH_HELM_K8S_MINOR", "34")


def helm_binary(version: str = HELM_VERSION) -> Path:
    """Path to the cached helm, building it first if missing."""
    if os.environ.get("MCP_HEALTH_HELM") == "path":
        found = shutil.which("helm")
        if found:
            return Path(found)
    out = cache_dir() / f"helm-{version}" / "helm"
    with _build_lock():
        if not out.exists():
            print(
                f"building helm {version} from the Go module proxy (a few minutes the first time)",
                file=sys.stderr,
            )
            pkg = "helm.sh/helm/v3"
            _go_build(
                module="helm",
                go_mod=f"module mcphealth.dev/build/helm\n\ngo 1.24\n\nrequire {pkg} {version}\n",
                package=f"{pkg}/cmd/helm",
                ldflags=(
                    f"-s -w -X {pkg}/internal/version.version={version} "
                    f"-X {pkg}/internal/version.gitTreeState=clean "
                    f"-X {pkg}/pkg/lint/rules.k8sVersionMajor=1 "
                    f"-X {pkg}/pkg/lint/rules.k8sVersionMinor={_K8S_MINOR} "
                    f"-X {pkg}/pkg/chartutil.k8sVersionMajor=1 "
                    f"-X {pkg}/pkg/chartutil.k8sVersionMinor={_K8S_MINOR}"
                ),
                out=out,
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m mcp_health_testbed.helm build", file=sys.stderr)
        return 2
    print(helm_binary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
