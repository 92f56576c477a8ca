{{/* Names and settings every template shares. */}}

{{/* The regions, sorted: every service's regions.all. */}}
{{- define "harvest.regionNames" -}}
{{- if not .Values.regions }}{{ fail "no region: render with -f regions/<name>.yaml for each region" }}{{ end -}}
{{- keys .Values.regions | sortAlpha | join "," -}}
{{- end }}

{{/* A region's settings: its overlay over regionDefaults, as YAML.
     Call with (list $ "east"). */}}
{{- define "harvest.region" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $region := mergeOverwrite (deepCopy $root.Values.regionDefaults) (deepCopy (index $root.Values.regions $name | default dict)) -}}
{{- if not (regexMatch "^[a-z][a-z0-9-]*$" $name) }}{{ fail (printf "region %q: lowercase letters, digits and '-' only" $name) }}{{ end -}}
{{- toYaml $region -}}
{{- end }}

{{/* A service's replica bounds in a region, as YAML {min, max}.
     Call with (list $ regionName serviceName). */}}
{{- define "harvest.replicas" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $service := index . 2 -}}
{{- $region := include "harvest.region" (list $root $name) | fromYaml -}}
{{- $own := index ($region.services | default dict) $service | default dict -}}
{{- $min := $own.minReplicas | default $region.minReplicas | int -}}
{{- $max := $own.maxReplicas | default $region.maxReplicas | default $region.partitions | int -}}
{{- if gt $max (int $region.partitions) }}{{ fail (printf "%s in %s: maxReplicas %d exceeds the %d partitions; the extra replicas would hold no partition" $service $name $max (int $region.partitions)) }}{{ end -}}
{{- if or (lt $min 1) (gt $min $max) }}{{ fail (printf "%s in %s: minReplicas must be between 1 and maxReplicas" $service $name) }}{{ end -}}
min: {{ $min }}
max: {{ $max }}
{{- end }}

{{/* topology.rs: the stream of `stream` in a region, a consuming service's
     group and its dead-letter topic. */}}
{{- define "harvest.topic" -}}harvest.{{ index . 0 }}.{{ index . 1 }}{{- end }}
{{- define "harvest.group" -}}harvest.{{ index . 0 }}.{{ index . 1 }}{{- end }}
{{- define "harvest.partnerTopic" -}}harvest.partner.{{ . }}{{- end }}
{{- define "harvest.deadLetterTopic" -}}harvest.dead-letter.{{ index . 0 }}.{{ index . 1 }}{{- end }}

{{/* The labels of everything the chart makes. */}}
{{- define "harvest.commonLabels" -}}
app.kubernetes.io/part-of: harvest
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The selector of one service in one region. Call with (list service region). */}}
{{- define "harvest.selector" -}}
app.kubernetes.io/name: harvest-{{ index . 0 }}
harvest.io/region: {{ index . 1 }}
{{- end }}

{{/* What selects every service pod (in NetworkPolicies). */}}
{{- define "harvest.servicePods" -}}
app.kubernetes.io/part-of: harvest
app.kubernetes.io/component: service
{{- end }}

{{- define "harvest.redisPods" -}}
app.kubernetes.io/name: harvest-redis
{{- end }}

{{- define "harvest.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{ $image.repository }}@{{ $image.digest }}
{{- else -}}
{{- if or (not $image.tag) (eq $image.tag "latest") }}{{ fail "image.tag must name an immutable version (not empty, not latest), or set image.digest" }}{{ end -}}
{{ $image.repository }}:{{ $image.tag }}
{{- end -}}
{{- end }}

{{- define "harvest.redisSecret" -}}
{{- .Values.redis.existingSecret | default "harvest-redis" -}}
{{- end }}

{{/* The pod and container security context of the restricted Pod Security Standard. */}}
{{- define "harvest.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile: {type: RuntimeDefault}
{{- end }}
{{- define "harvest.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}
