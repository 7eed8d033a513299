{{/* The operator's RBAC rules, split by where they can be granted (see rbac-operator.yaml). */}}

{{- define "jwks.operatorNamespacedRules" -}}
# Watch the keysets, patch them (finalizer, Kopf's annotations) and their status.
- apiGroups: [jwks.dev]
  resources: [jwkskeysets]
  verbs: [get, list, watch, patch]
- apiGroups: [jwks.dev]
  resources: [jwkskeysets/status]
  verbs: [patch]
# Set ownerReferences with blockOwnerDeletion (deletionPolicy: Delete).
- apiGroups: [jwks.dev]
  resources: [jwkskeysets/finalizers]
  verbs: [update]
# The Secret (private keys) and ConfigMap (public JWKS) of each keyset, written by merge patch.
# No delete: the garbage collector removes them through ownerReferences (deletionPolicy Delete).
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get, list, watch, create, patch]
# Kopf's Events, through the core v1 API.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and (include "jwks.peering" .) (not (include "jwks.clusterwide" .)) }}
# Kopf peering between replicas, in the KopfPeering the chart creates.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
{{- define "jwks.operatorClusterRules" -}}
# Kopf's discovery: namespaces and CRDs, read-only.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if and (include "jwks.peering" .) (include "jwks.clusterwide" .) }}
# Kopf peering between replicas, in the ClusterKopfPeering the chart creates.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
