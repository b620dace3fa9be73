#!/usr/bin/env bash
# Resolve every dependency (the operator's and all extras: dev, examples,
# bench) afresh in a throw-away venv and pin the result into constraints.txt.
# `make setup`, the image build and `make bench-kube` install within it, so a
# fresh clone gets the versions the tests last passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
# From a copy: a build of the sources leaves build/ directories behind.
mkdir "$tmp/src"
cp -r pyproject.toml README.md operator testbed "$tmp/src/"
"$tmp/venv/bin/pip" install -q "$tmp/src[dev,examples,bench]" "$tmp/src/testbed"
{
  echo "# Every dependency pinned: the versions the tests passed on (pip constraints)."
  echo "# Made by \`make lock\` (hack/lock.sh); edit pyproject.toml, not this file."
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -iv '^mcp[-_]health'
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
