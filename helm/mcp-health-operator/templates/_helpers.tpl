{{/* Chart name, possibly overridden. */}}
{{- define "mcp-health-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: "<release>-<name>", or the release name when it contains the name. */}}
{{- define "mcp-health-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcp-health-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-health-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-health-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mcp-health-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-health-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mcp-health-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-health-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mcp-health-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when a watchNamespaces entry is a kopf glob rather than an exact name. */}}
{{- define "mcp-health-operator.hasNamespaceGlobs" -}}
{{- range .Values.watchNamespaces -}}
{{- if regexMatch "[*?\\[\\]!]" . -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Fail early, with a message naming the values, on combinations that cannot
work. Included by every template that depends on them, so `helm template`,
`helm lint` and `helm install` all refuse.
*/}}
{{- define "mcp-health-operator.validate" -}}
{{- $v := .Values -}}
{{- if eq $v.rbac.scope "namespaced" -}}
  {{- if not $v.watchNamespaces -}}
    {{- fail "rbac.scope=namespaced needs watchNamespaces: list the namespaces to watch (each gets a Role and RoleBinding), or use rbac.scope=cluster to watch all namespaces" -}}
  {{- end -}}
  {{- if include "mcp-health-operator.hasNamespaceGlobs" . -}}
    {{- fail (printf "rbac.scope=namespaced needs exact namespace names in watchNamespaces (a Role cannot be bound to a pattern); got %v. Use rbac.scope=cluster for globs" $v.watchNamespaces) -}}
  {{- end -}}
{{- end -}}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.service.enabled) -}}
  {{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true (the ServiceMonitor selects the metrics Service)" -}}
{{- end -}}
{{- if and (eq $v.membership.mode "off") (gt (int $v.replicaCount) 1) -}}
  {{- fail "replicaCount > 1 needs membership.mode shard or leader: with mode off every pod would probe and remediate every monitor" -}}
{{- end -}}
{{- if ge (float64 $v.membership.renewSeconds) (float64 $v.membership.leaseDurationSeconds) -}}
  {{- fail "membership.renewSeconds must be less than leaseDurationSeconds" -}}
{{- end -}}
{{- if and $v.targets.readSecrets (eq $v.rbac.scope "cluster") (not $v.targets.secretNamespaces) (not $v.targets.secretsClusterWide) -}}
  {{- fail "targets.readSecrets=true with rbac.scope=cluster needs targets.secretNamespaces (a Role in each listed namespace) or, as an explicit choice, targets.secretsClusterWide=true (every Secret of the cluster)" -}}
{{- end -}}
{{- if and $v.remediation.enabled (eq $v.rbac.scope "cluster") (not $v.remediation.namespaces) (not $v.remediation.clusterWide) -}}
  {{- fail "remediation.enabled=true with rbac.scope=cluster needs remediation.namespaces (a Role in each listed namespace) or, as an explicit choice, remediation.clusterWide=true (patch workloads and ConfigMaps, delete Pods in every namespace)" -}}
{{- end -}}
{{- if and (not $v.targets.readSecrets) (or $v.targets.secretNamespaces $v.targets.secretsClusterWide) -}}
  {{- fail "targets.secretNamespaces / targets.secretsClusterWide need targets.readSecrets=true" -}}
{{- end -}}
{{- if and (not $v.remediation.enabled) (or $v.remediation.namespaces $v.remediation.clusterWide) -}}
  {{- fail "remediation.namespaces / remediation.clusterWide need remediation.enabled=true" -}}
{{- end -}}
{{- if eq $v.rbac.scope "namespaced" -}}
  {{- if or $v.targets.secretsClusterWide $v.remediation.clusterWide -}}
    {{- fail "targets.secretsClusterWide and remediation.clusterWide need rbac.scope=cluster" -}}
  {{- end -}}
  {{- range (concat $v.targets.secretNamespaces $v.remediation.namespaces) -}}
    {{- if not (has . $v.watchNamespaces) -}}
      {{- fail (printf "namespace %q of targets.secretNamespaces / remediation.namespaces is not in watchNamespaces: with rbac.scope=namespaced the operator only sees monitors there" .) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if and $v.remediation.enabled (not $v.remediation.workloadKinds) -}}
  {{- fail "remediation.enabled=true needs at least one entry in remediation.workloadKinds (Deployment, StatefulSet); set remediation.enabled=false to turn remediation off" -}}
{{- end -}}
{{- end -}}

{{/*
The monitoring permissions of the operator, as RBAC rules, and nothing else:
the same list goes into the ClusterRole (scope cluster) and into each Role
(scope namespaced). Secrets and remediation are opt-ins with rules of their
own (below); discovery's rules come with its values. tests/e2e/test_chart_rbac.py
holds each verb to an API call the operator makes.
*/}}
{{- define "mcp-health-operator.rules" -}}
# Watch monitors (kopf lists and watches them; the resync lists them).
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors]
  verbs: [list, watch]
# Write the verdict into the status subresource (JSON merge patch).
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors/status]
  verbs: [patch]
# Post Events on transitions, and bump the count of a repeated one.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# Resolve a Service target's port; watch Services so a monitor follows its
# Service's creation, port changes and deletion.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
# Find the endpoints behind a Service target (per-endpoint monitors), and
# watch them so a rollout or a scale is seen at once.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
{{- include "mcp-health-operator.discoveryRules" . }}
{{- end -}}

{{/*
discovery: write the monitors it generates (create; patch, a JSON patch that
first tests the object is still the generated one; delete), and list and
watch the MCPServers of each followed API group. No get, no update: the
monitors and MCPServers are read from their listings and watches.
*/}}
{{- define "mcp-health-operator.discoveryRules" -}}
{{- $d := .Values.discovery -}}
{{- if or $d.services.enabled $d.mcpServers.groups }}
# discovery: create, update and delete the monitors it generates.
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors]
  verbs: [create, patch, delete]
{{- end }}
{{- range $d.mcpServers.groups }}
# discovery: the MCPServers of {{ . }}.
- apiGroups: [{{ . }}]
  resources: [mcpservers]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* targets.readSecrets: the auth and TLS Secrets monitors name, watched so a rotated token is read at once. */}}
{{- define "mcp-health-operator.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
{{- end -}}

{{/*
remediation.enabled: restart a workload (stamp its pod template), set its
pool size (an env var, or a ConfigMap key), delete the pod behind a failing
endpoint; read each first for its owner's consent label. Never create or
delete workloads. The monitor is read fresh before an action (the ledger's
compare-and-swap).
*/}}
{{- define "mcp-health-operator.remediationRules" -}}
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors]
  verbs: [get]
- apiGroups: [apps]
  resources:
  {{- range .Values.remediation.workloadKinds }}
    - {{ lower . }}s
  {{- end }}
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, delete]
{{- end -}}

{{/* The namespaces of the Secrets Roles, space-separated ("" when none or cluster-wide). */}}
{{- define "mcp-health-operator.secretNamespaces" -}}
{{- $v := .Values -}}
{{- if and $v.targets.readSecrets (not $v.targets.secretsClusterWide) -}}
{{- join " " (uniq (default $v.watchNamespaces $v.targets.secretNamespaces)) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces of the remediation Roles, space-separated ("" when none or cluster-wide). */}}
{{- define "mcp-health-operator.remediationNamespaces" -}}
{{- $v := .Values -}}
{{- if and $v.remediation.enabled (not $v.remediation.clusterWide) -}}
{{- join " " (uniq (default $v.watchNamespaces $v.remediation.namespaces)) -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped read-only rules for kopf's discovery of CRDs. */}}
{{- define "mcp-health-operator.crdRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}
