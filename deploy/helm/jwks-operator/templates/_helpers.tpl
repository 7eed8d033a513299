{{/* Names, labels and the few decisions shared by several templates. */}}

{{- define "jwks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jwks.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jwks.operatorName" -}}
{{- printf "%s-operator" (include "jwks.fullname" .) }}
{{- end }}

{{- define "jwks.serverName" -}}
{{- printf "%s-server" (include "jwks.fullname" .) }}
{{- end }}

{{- define "jwks.operatorServiceAccount" -}}
{{- default (include "jwks.operatorName" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "jwks.serverServiceAccount" -}}
{{- default (include "jwks.serverName" .) .Values.server.serviceAccount.name }}
{{- end }}

{{- define "jwks.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "jwks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jwks-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "server"). */}}
{{- define "jwks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jwks.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jwks.componentLabels" -}}
{{ include "jwks.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jwks.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when several operator replicas share the work through Kopf peering. */}}
{{- define "jwks.peering" -}}
{{- if gt (int .Values.operator.replicas) 1 }}true{{- end }}
{{- end }}

{{- define "jwks.peeringName" -}}
{{- default .Release.Name .Values.operator.peeringName }}
{{- end }}

{{/* "true" when the chart watches every namespace (ClusterRoles), "" for a namespace list. */}}
{{- define "jwks.clusterwide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/* The scope flags shared by `run` and `serve`, one YAML list item per argument. */}}
{{- define "jwks.scopeArgs" -}}
{{- if include "jwks.clusterwide" . }}
- --all-namespaces
{{- else }}
{{- range .Values.watchNamespaces }}
- --namespace
- {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A /tmp for Python's tempfile under readOnlyRootFilesystem. */}}
{{- define "jwks.tmpVolume" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}

{{/* Egress of both pods when networkPolicy.apiServerCIDRs is set: DNS and the API server. */}}
{{- define "jwks.egressRules" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
- to:
    {{- range .Values.networkPolicy.apiServerCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret the server mounts when server.tls.enabled. */}}
{{- define "jwks.serverTlsSecret" -}}
{{- default (printf "%s-tls" (include "jwks.serverName" .)) .Values.server.tls.secretName }}
{{- end }}


{{/*
The client-side API rate limit flags, only for the values that are set (0 is a value:
"no limit"); unset, the program's own defaults apply, so they are written down once.
*/}}
{{- define "jwks.kubeApiArgs" -}}
{{- if not (kindIs "invalid" .qps) }}
- --kube-api-qps
- {{ .qps | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .burst) }}
- --kube-api-burst
- {{ .burst | toString | quote }}
{{- end }}
{{- end }}
