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
{{- if and $v.remediation.enabled (not $v.remediation.workloadKinds) -}}
  {{- fail "remediation.enabled=true needs at least one entry in remediation.workloadKinds (Deployment, StatefulSet); set remediation.enabled=false to turn remediation off" -}}
{{- end -}}
{{- end -}}

{{/*
The namespaced permissions of the operator, as RBAC rules: the same list goes
into the ClusterRole (scope cluster) and into each Role (scope namespaced).
*/}}
{{- define "mcp-health-operator.rules" -}}
# Watch monitors (kopf lists and watches; the loop reads them).
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors]
  verbs: [get, list, watch]
# Write the verdict into the status subresource (JSON merge patch).
- apiGroups: [mcphealth.dev]
  resources: [mcphealthmonitors/status]
  verbs: [get, patch, update]
# Post Events on transitions, and bump the count of a repeated one.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# Resolve a Service target's port (by number or name); watch Services so a
# monitor follows its Service's creation, port changes and deletion.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
# Find the endpoints behind a Service target.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
{{- if .Values.targets.readSecrets }}
# Read the auth (bearer token, headers) and TLS CA Secrets monitors name, and
# watch them so a rotated token is read at once.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
{{- end }}
{{- if .Values.remediation.enabled }}
# Remediation: read a workload and stamp its pod template (rollout restart) or
# set its pool size; never create or delete workloads.
- apiGroups: [apps]
  resources:
  {{- range .Values.remediation.workloadKinds }}
    - {{ lower . }}s
  {{- end }}
  verbs: [get, list, patch]
# Remediation: pool size kept in a ConfigMap.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, patch]
# Remediation: restart the pod behind one failing endpoint.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, delete]
{{- end }}
{{- end -}}

{{/* Cluster-scoped read-only rules for kopf's discovery of CRDs. */}}
{{- define "mcp-health-operator.crdRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}
