{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "kfaas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, prefix of every infrastructure object (MongoDB, RabbitMQ, gateway, secrets).
Functions, triggers and sources keep the names of their descriptions (<function>, <function>-<trigger>)
so that they match `kfaas render k8s` and the URLs the gateway builds.
*/}}
{{- define "kfaas.fullname" -}}
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

{{- define "kfaas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. The chart version is here, never in selectors.
*/}}
{{- define "kfaas.labels" -}}
helm.sh/chart: {{ include "kfaas.chart" . }}
{{ include "kfaas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kfaas
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kfaas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfaas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component: pass (dict "root" $ "component" "mongodb").
*/}}
{{- define "kfaas.componentLabels" -}}
{{ include "kfaas.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kfaas.componentSelectorLabels" -}}
{{ include "kfaas.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image reference of a function: (dict "root" $ "image" $fn.image).
*/}}
{{- define "kfaas.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- printf "%s%s:%s" .root.Values.images.registry .image.repository $tag -}}
{{- end }}

{{/*
Names of the infrastructure objects.
*/}}
{{- define "kfaas.mongodb.fullname" -}}{{ include "kfaas.fullname" . }}-mongodb{{- end }}
{{- define "kfaas.rabbitmq.fullname" -}}{{ include "kfaas.fullname" . }}-rabbitmq{{- end }}
{{- define "kfaas.gateway.fullname" -}}{{ include "kfaas.fullname" . }}-gateway{{- end }}
{{- define "kfaas.deadLetter.fullname" -}}{{ include "kfaas.fullname" . }}-dead-letter{{- end }}
{{- define "kfaas.aws.fullname" -}}{{ include "kfaas.fullname" . }}-aws{{- end }}
{{- define "kfaas.aws.secretName" -}}{{ .Values.awsEndpoints.existingSecret | default (include "kfaas.aws.fullname" .) }}{{- end }}

{{/*
"true" when the AWS API endpoints run: awsEndpoints.enabled true, or "auto" and an enabled function is kind lambda.
*/}}
{{- define "kfaas.aws.enabled" -}}
{{- $on := eq (toString .Values.awsEndpoints.enabled) "true" -}}
{{- if eq (toString .Values.awsEndpoints.enabled) "auto" -}}
{{- range $name, $fn := .Values.functions -}}
{{- if and (ne (toString $fn.enabled) "false") (eq (toString $fn.kind) "lambda") }}{{ $on = true }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if $on }}true{{ end -}}
{{- end }}

{{/*
MongoDB host:port list functions connect to (the release's StatefulSet or the existing one).
*/}}
{{- define "kfaas.mongodb.hosts" -}}
{{- if .Values.mongodb.deploy -}}
{{ include "kfaas.mongodb.fullname" . }}.{{ .Release.Namespace }}.svc.cluster.local:27017
{{- else -}}
{{ required "mongodb.existing.hosts is required when mongodb.deploy is false" .Values.mongodb.existing.hosts }}
{{- end -}}
{{- end }}

{{/*
The Secret holding the AMQP URL (key `url`) and the management-API credentials (keys uri, username,
password) the RabbitMQ broker and sources use.
*/}}
{{- define "kfaas.rabbitmq.secretName" -}}
{{- if .Values.rabbitmq.deploy -}}
{{ include "kfaas.rabbitmq.fullname" . }}
{{- else -}}
{{ required "rabbitmq.existing.secretName is required when rabbitmq.deploy is false" .Values.rabbitmq.existing.secretName }}
{{- end -}}
{{- end }}

{{/*
rabbitmqClusterReference of RabbitmqBrokerConfig and RabbitmqSource.
*/}}
{{- define "kfaas.rabbitmq.clusterReference" -}}
{{- if and .Values.rabbitmq.deploy (eq .Values.rabbitmq.mode "operator") -}}
name: {{ include "kfaas.rabbitmq.fullname" . }}
namespace: {{ .Release.Namespace }}
{{- else -}}
connectionSecret:
  name: {{ include "kfaas.rabbitmq.secretName" . }}
{{- end -}}
{{- end }}

{{/*
Brokers named by the functions' triggers and sources, plus broker.name; a sorted, unique list.
*/}}
{{- define "kfaas.brokerNames" -}}
{{- $names := list .Values.broker.name -}}
{{- range $name, $fn := .Values.functions -}}
{{- if $fn.enabled | default true -}}
{{- range $fn.triggers }}{{ $names = append $names .broker }}{{ end -}}
{{- range $fn.sources }}{{ if .broker }}{{ $names = append $names .broker }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | join "," -}}
{{- end }}

{{/*
A random password that survives upgrades: (dict "root" $ "secret" NAME "key" KEY "value" EXPLICIT).
*/}}
{{- define "kfaas.password" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
Container securityContext of the Pod Security "restricted" profile; the argument is the uid.
*/}}
{{- define "kfaas.restrictedContainer" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Pod securityContext of the "restricted" profile for the chart's Deployments/StatefulSets/Jobs.
*/}}
{{- define "kfaas.restrictedPod" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The dead-letter sink of a delivery spec, or nothing when dead letters are off. Called with
(dict "root" $ "path" "<function>-<trigger>" | "broker-<name>"): the chart's sink (`kfaas dead-letters`)
takes each trigger's dead letters at its own path (Knative appends uri to the ref's URL) and keeps them in
RabbitMQ under that name.
*/}}
{{- define "kfaas.deadLetterSink" -}}
{{- if .root.Values.deadLetter.uri -}}
deadLetterSink:
  uri: {{ .root.Values.deadLetter.uri }}
{{- else if .root.Values.deadLetter.enabled -}}
deadLetterSink:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: {{ include "kfaas.deadLetter.fullname" .root }}
  uri: /{{ .path }}
{{- end -}}
{{- end }}
