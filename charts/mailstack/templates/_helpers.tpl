{{/* Names, labels and image references shared by the templates. */}}

{{- define "mailstack.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailstack.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mailstack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailstack.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailstack.labels" -}}
{{ include "mailstack.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mailstack
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mailstack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailstack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given; (list image defaultTag). */}}
{{- define "mailstack.imageRef" -}}
{{- $image := index . 0 -}}
{{- $defaultTag := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $defaultTag $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The RBAC rules of the operator, the same for a ClusterRole (all namespaces) and a Role (one
namespace). Each rule is what the controller does, no more (see controller/kinds.py and
tests/unit/test_chart.py, which checks the two agree).
*/}}
{{- define "mailstack.rules" -}}
# The resources it serves: watched (read from the watch cache, never fetched one by one);
# MailDomains and MailServers get kopf's finalizer and annotations; all get their status written.
- apiGroups: [mailstack.dev]
  resources: [maildomains, mailservers]
  verbs: [list, watch, patch]
- apiGroups: [mailstack.dev]
  resources: [mailboxes]
  verbs: [list, watch]
- apiGroups: [mailstack.dev]
  resources: [maildomains/status, mailboxes/status, mailservers/status]
  verbs: [patch]
# ownerReferences with blockOwnerDeletion need this (OwnerReferencesPermissionEnforcement).
- apiGroups: [mailstack.dev]
  resources: [maildomains/finalizers, mailservers/finalizers]
  verbs: [update]
# Children, applied server-side (patch; create when new). Secrets are also read: Mailbox
# passwords and relay credentials, and the rendered keys and certificates, which are reused.
# Secrets and Certificates are deleted when a TLS issuer change leaves one behind; Services
# (with the StatefulSets, Certificate, DNSEndpoint) when a MailDomain may no longer serve its
# domain (a withdrawn grant, a policy limit, an older claim).
- apiGroups: [""]
  resources: [secrets, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, serviceaccounts]
  verbs: [get, list, watch, create, patch]
# StatefulSets are deleted (orphaning pods and claims) and recreated when storage changes.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [get, list, watch, create, patch, delete]
# The externalDNS provider's records; deleted when the MailDomain switches to another provider.
- apiGroups: [externaldns.k8s.io]
  resources: [dnsendpoints]
  verbs: [get, list, watch, create, patch, delete]
# Mail volumes: listed for the Finalized Event and maxStorage (what the claims request, kept
# ones of deleted MailDomains too). The StatefulSets' claim retention policy deletes
# them (storage.retention Delete), never the operator.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list]
# Events: the operator's own are created; a StatefulSet's are listed while its pods are
# missing, for the admission message of a refused pod (its FailedCreate Event).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
# The MTA pods, listed by label for their addresses: the operator reads what the tripwire saw
# from their agents (ClientAddressesMasked). Not pods/log, not get, not exec.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end -}}

{{/* mailPods without its empty fields, as JSON for --mail-pod-defaults ("" is no class name). */}}
{{- define "mailstack.mailPodDefaults" -}}
{{- $set := dict -}}
{{- range $key, $value := .Values.mailPods -}}
{{- if $value -}}
{{- $_ := set $set $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $set -}}
{{- end -}}
