{{/*
Names and labels, in one place so every object agrees (selectors, ServiceMonitors and the test pod
depend on it).
*/}}

{{/* The chart name, or nameOverride; 63 characters is the limit of a label value and a DNS label. */}}
{{- define "mnist-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else <release>-<name>, else just <release> when it
already contains the name (so `helm install mnist-operator .` gives `mnist-operator`, not a stutter).
*/}}
{{- define "mnist-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Pushgateway's objects: <fullname>-pushgateway, shortened so the suffix survives truncation. */}}
{{- define "mnist-operator.pushgateway.fullname" -}}
{{- printf "%s-pushgateway" (include "mnist-operator.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{- define "mnist-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "mnist-operator.labels" -}}
helm.sh/chart: {{ include "mnist-operator.chart" . }}
app.kubernetes.io/name: {{ include "mnist-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnist-operator
{{- end }}

{{/*
Selector labels of one component (operator, pushgateway, test). They never change across upgrades:
a Deployment's selector is immutable.
Usage: include "mnist-operator.selectorLabels" (dict "context" . "component" "operator")
*/}}
{{- define "mnist-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-operator.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: the common ones plus its component. */}}
{{- define "mnist-operator.componentLabels" -}}
{{ include "mnist-operator.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mnist-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mnist-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mnist-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mnist-operator.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) }}
{{- end }}

{{- define "mnist-operator.testImage" -}}
{{- if .Values.tests.image.repository }}
{{- printf "%s:%s" .Values.tests.image.repository (default "latest" .Values.tests.image.tag) }}
{{- else }}
{{- include "mnist-operator.image" . }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, comma-separated (MNIST_OPERATOR_NAMESPACES); empty means the
whole cluster. Namespaced RBAC with no list watches the release namespace: the operator could not
read trainings anywhere else.
*/}}
{{- define "mnist-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- else if eq .Values.rbac.scope "namespace" }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The Pushgateway trainers push to when their spec names none (MNIST_OPERATOR_PUSHGATEWAY_URL): the
bundled one's Service, else externalUrl, else nothing. Both at once is refused: it would be unclear
which one the operator polls.
*/}}
{{- define "mnist-operator.pushgatewayUrl" -}}
{{- if and .Values.pushgateway.enabled .Values.pushgateway.externalUrl }}
{{- fail "pushgateway.externalUrl is set but pushgateway.enabled is true: set pushgateway.enabled=false to use the external Pushgateway, or clear externalUrl to use the bundled one" }}
{{- end }}
{{- if .Values.pushgateway.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "mnist-operator.pushgateway.fullname" .) .Release.Namespace (int .Values.pushgateway.port) }}
{{- else }}
{{- .Values.pushgateway.externalUrl | trimSuffix "/" }}
{{- end }}
{{- end }}

{{/* The operator's liveness URL, as passed to `mnist-operator run --liveness`. */}}
{{- define "mnist-operator.livenessUrl" -}}
{{- printf "http://%s:%d/healthz" .Values.health.bindAddress (int .Values.health.port) }}
{{- end }}

{{/*
RBAC rules for trainings, Jobs, pods and events: namespaced resources, granted cluster-wide by a
ClusterRole or per watched namespace by a Role. Kept identical to manifests/rbac.yaml (a test compares).
*/}}
{{- define "mnist-operator.namespacedRules" -}}
# Watch trainings, keep kopf's bookkeeping annotations, delete them after ttlSecondsAfterFinished.
- apiGroups: [training.mnist-operator.io]
  resources: [mnisttrainings]
  verbs: [get, list, watch, patch, delete]
# Write the live status.
- apiGroups: [training.mnist-operator.io]
  resources: [mnisttrainings/status]
  verbs: [get, patch]
# Create each training's Job, read it back, and follow it; suspend/resume it.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
# Create a multi-worker training's headless Service (its workers' DNS names); read back one that exists.
- apiGroups: [""]
  resources: [services]
  verbs: [get, create]
# Follow trainer pods for phase, exit codes and failure reasons. Read-only.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Read Kueue's Workloads of queued trainings, for the Queued status and its reason. Read-only.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list]
# Post an Event on every phase change.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The one cluster-scoped rule: a Role cannot grant it, so it is a ClusterRole in both scopes. */}}
{{- define "mnist-operator.clusterRules" -}}
# kopf notices CRDs installed or removed while it runs. Read-only.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}

{{/* The leader-election Lease, in the release namespace only (manifests/rbac.yaml has the same). */}}
{{- define "mnist-operator.leaderElectionRules" -}}
# Replicas elect one leader on a Lease: read it, create it once, renew or take it over.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
