{{- define "hometwin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hometwin.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hometwin
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hometwin.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "hometwin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hometwin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hometwin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hometwin.allowedImages" -}}
{{- if .Values.operator.allowedImages -}}
{{- join "," .Values.operator.allowedImages -}}
{{- else -}}
{{- printf "%s:*" .Values.image.repository -}}
{{- end -}}
{{- end -}}

{{/* Exactly what the operator does, nothing more (see operator/handlers.py, reconcile.py, kube.py). */}}
{{- define "hometwin.rules" -}}
- apiGroups: ["hometwin.io"]
  resources: ["homes"]
  verbs: ["get", "list", "watch", "patch"]        # kopf watches and annotates; status refresh reads
- apiGroups: ["hometwin.io"]
  resources: ["homes/status"]
  verbs: ["get", "patch"]
- apiGroups: ["hometwin.io"]
  resources: ["homes/finalizers"]
  verbs: ["update"]                               # ownerReferences with blockOwnerDeletion
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]              # one per Home: its principals' credentials (hometwin.auth)
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]              # watch: a deleted spec ConfigMap is put back
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]              # one per Home, owned by it (deleted with it)
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]              # the router's, owned by the Home
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]                               # kopf's warnings (invalid Home)
{{- end -}}
