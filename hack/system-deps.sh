#!/usr/bin/env bash
# Installs the system packages this project needs when they are missing.
# Python packages go into .venv (see the Makefile); the control plane is
# built from the Go module proxy (python -m mcp_health_testbed.controlplane build).
set -euo pipefail

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v promtool >/dev/null || need_apt+=(prometheus)  # prometheus + promtool for the alert rule tests
for pkg in "$@"; do need_apt+=("$pkg"); done

if ((${#need_apt[@]})); then
  missing=()
  for pkg in "${need_apt[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# A packaged PostgreSQL starts a cluster of its own; tests start their own
# throwaway clusters on free ports instead, so nothing else is configured here.

if ! command -v go >/dev/null; then
  echo "Go >= 1.24 is needed to build kube-apiserver and etcd (https://go.dev/dl)" >&2
  exit 1
fi
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if ((go_minor < 24)); then
  echo "Go >= 1.24 is needed to build kube-apiserver $(go env GOVERSION) is too old" >&2
  exit 1
fi
