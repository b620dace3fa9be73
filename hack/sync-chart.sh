#!/usr/bin/env bash
# The Helm chart carries copies of files that have one source elsewhere in the
# repository (Helm's .Files cannot reach outside the chart directory):
#
#   crds/*.yaml                               -> helm/mcp-health-operator/crds/
#   deploy/prometheus/mcp-health-rules.yaml   -> helm/mcp-health-operator/files/
#   deploy/grafana/mcp-health-dashboard.json  -> helm/mcp-health-operator/files/
#
# Usage: hack/sync-chart.sh          copy the sources into the chart
#        hack/sync-chart.sh --check  exit 1, naming the files, if a copy differs
# tests/packaging/test_chart.py runs the check in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=helm/mcp-health-operator
pairs=()
for crd in crds/*.yaml; do
  pairs+=("$crd" "$chart/crds/$(basename "$crd")")
done
pairs+=(deploy/prometheus/mcp-health-rules.yaml "$chart/files/mcp-health-rules.yaml")
pairs+=(deploy/grafana/mcp-health-dashboard.json "$chart/files/mcp-health-dashboard.json")

check=false
[[ ${1:-} == --check ]] && check=true

stale=0
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
  src=${pairs[i]} dst=${pairs[i + 1]}
  if $check; then
    if ! cmp -s "$src" "$dst"; then
      echo "$dst differs from $src" >&2
      stale=1
    fi
  else
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
  fi
done
# A CRD removed from crds/ must not linger in the chart.
for dst in "$chart"/crds/*.yaml; do
  [[ -e $dst ]] || continue
  if [[ ! -e crds/$(basename "$dst") ]]; then
    if $check; then
      echo "$dst has no source in crds/" >&2
      stale=1
    else
      rm "$dst"
    fi
  fi
done
if ((stale)); then
  echo "the chart's copies are stale: run 'make chart-sync' (hack/sync-chart.sh)" >&2
  exit 1
fi
