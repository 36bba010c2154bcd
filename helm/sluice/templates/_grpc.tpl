{{/*
The gRPC link's security (values `grpc`): which settings each role gets, and which Secrets
are mounted where (under /etc/sluice-grpc, read at start). Args of each: (dict "root" $
"component" "edge"|"quota").
*/}}

{{/* Name of the Secret holding the bearer token. Args: $. */}}
{{- define "sluice.grpcTokenSecret" -}}
{{- default (printf "%s-grpc-token" (include "sluice.fullname" .)) .Values.grpc.token.existingSecret }}
{{- end }}

{{/* Key of the token in that Secret. Args: $. */}}
{{- define "sluice.grpcTokenKey" -}}
{{- ternary .Values.grpc.token.key "token" (ne .Values.grpc.token.existingSecret "") }}
{{- end }}

{{/* Refuses values that would run a quota service without client authentication. Args: $. */}}
{{- define "sluice.grpcCheck" -}}
{{- $g := .Values.grpc }}
{{- if not (or $g.token.enabled (and $g.tls.enabled $g.tls.clientAuth.enabled) $g.allowUnauthenticated) }}
{{- fail "grpc: the quota service would accept calls from anyone who reaches it: keep grpc.token.enabled, or turn on grpc.tls.enabled with grpc.tls.clientAuth.enabled (mTLS), or, where only the edges can reach the quota pods, set grpc.allowUnauthenticated" }}
{{- end }}
{{- if $g.tls.enabled }}
{{- if not $g.tls.serverSecret }}
{{- fail "grpc.tls.enabled needs grpc.tls.serverSecret (a kubernetes.io/tls Secret with the quota service's certificate)" }}
{{- end }}
{{- if not $g.tls.caSecret }}
{{- fail "grpc.tls.enabled needs grpc.tls.caSecret (the CA the edges verify the quota service with): the image has no system root certificates" }}
{{- end }}
{{- if and $g.tls.clientAuth.enabled (not (and $g.tls.clientAuth.caSecret $g.tls.clientAuth.edgeSecret)) }}
{{- fail "grpc.tls.clientAuth.enabled needs grpc.tls.clientAuth.caSecret (the CA of client certificates) and grpc.tls.clientAuth.edgeSecret (the edges' certificate)" }}
{{- end }}
{{- range .Values.edge.quotaUrls }}
{{- if not (hasPrefix "https://" .) }}
{{- fail (printf "grpc.tls.enabled: edge.quotaUrls must be https:// URLs, not %s" .) }}
{{- end }}
{{- end }}
{{- else if $g.tls.clientAuth.enabled }}
{{- fail "grpc.tls.clientAuth.enabled needs grpc.tls.enabled" }}
{{- end }}
{{- end }}

{{/* The role's gRPC security settings, as a JSON object of TOML keys. */}}
{{- define "sluice.grpcSettings" -}}
{{- $g := .root.Values.grpc }}
{{- $s := dict }}
{{- $dir := "/etc/sluice-grpc" }}
{{- if eq .component "quota" }}
{{- if $g.token.enabled }}{{- $_ := set $s "grpc_token_file" (printf "%s/token/%s" $dir (include "sluice.grpcTokenKey" .root)) }}{{- end }}
{{- if $g.tls.enabled }}
{{- $_ := set $s "grpc_tls_cert_file" (printf "%s/server/tls.crt" $dir) }}
{{- $_ := set $s "grpc_tls_key_file" (printf "%s/server/tls.key" $dir) }}
{{- if $g.tls.clientAuth.enabled }}{{- $_ := set $s "grpc_client_ca_file" (printf "%s/client-ca/%s" $dir $g.tls.clientAuth.caKey) }}{{- end }}
{{- end }}
{{- if $g.allowUnauthenticated }}{{- $_ := set $s "grpc_allow_unauthenticated" true }}{{- end }}
{{- else }}
{{- if $g.token.enabled }}{{- $_ := set $s "quota_token_file" (printf "%s/token/%s" $dir (include "sluice.grpcTokenKey" .root)) }}{{- end }}
{{- if $g.tls.enabled }}
{{- if $g.tls.caSecret }}{{- $_ := set $s "quota_tls_ca_file" (printf "%s/ca/%s" $dir $g.tls.caKey) }}{{- end }}
{{- if $g.tls.serverName }}{{- $_ := set $s "quota_tls_server_name" $g.tls.serverName }}{{- end }}
{{- if $g.tls.clientAuth.enabled }}
{{- $_ := set $s "quota_tls_cert_file" (printf "%s/client/tls.crt" $dir) }}
{{- $_ := set $s "quota_tls_key_file" (printf "%s/client/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $s }}
{{- end }}

{{/* The role's Secret volumes and mounts: JSON {"volumes": [...], "mounts": [...]}. */}}
{{- define "sluice.grpcVolumes" -}}
{{- $g := .root.Values.grpc }}
{{- $mounts := list }}
{{- $volumes := list }}
{{- $secrets := list }}
{{- if $g.token.enabled }}
{{- $secrets = append $secrets (list "grpc-token" (include "sluice.grpcTokenSecret" .root) "token") }}
{{- end }}
{{- if $g.tls.enabled }}
{{- if eq .component "quota" }}
{{- $secrets = append $secrets (list "grpc-server-tls" $g.tls.serverSecret "server") }}
{{- if $g.tls.clientAuth.enabled }}
{{- $secrets = append $secrets (list "grpc-client-ca" $g.tls.clientAuth.caSecret "client-ca") }}
{{- end }}
{{- else }}
{{- if $g.tls.caSecret }}
{{- $secrets = append $secrets (list "grpc-ca" $g.tls.caSecret "ca") }}
{{- end }}
{{- if $g.tls.clientAuth.enabled }}
{{- $secrets = append $secrets (list "grpc-client-tls" $g.tls.clientAuth.edgeSecret "client") }}
{{- end }}
{{- end }}
{{- end }}
{{- range $secrets }}
{{- $volumes = append $volumes (dict "name" (index . 0) "secret" (dict "secretName" (index . 1) "defaultMode" 288)) }}
{{- $mounts = append $mounts (dict "name" (index . 0) "mountPath" (printf "/etc/sluice-grpc/%s" (index . 2)) "readOnly" true) }}
{{- end }}
{{- toJson (dict "volumes" $volumes "mounts" $mounts) }}
{{- end }}
