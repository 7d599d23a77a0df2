#!/usr/bin/env bash
# Node.js test peers outside the repository, installed once per machine:
# - panva's oidc-provider, a certified OpenID provider (the issuer of the client-side login tests);
# - Backstage's own Kubernetes frontend code (KubernetesBackendClient, groupResponses, detectErrors), unmodified,
#   as the client of `kubeauth serve` in the conformance tests, and the client-node release whose topPods
#   Backstage's backend computes pod metrics with;
# - Backstage's own kubernetes backend (plugin-kubernetes-backend on backend-defaults), unmodified, run beside
#   `kubeauth serve` on one config and one API server as the oracle of what each answer must be (installed
#   without install scripts: it needs no native module).
# Usage: provision-node.sh CACHE_DIR
set -euo pipefail
cache=${1:?usage: provision-node.sh CACHE_DIR}
log() { printf 'node peers: %s\n' "$*" >&2; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null; then
    log "installing nodejs and npm with apt"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q nodejs npm >&2
  else
    log "node and npm are needed (Node.js 20 or later); install them and run again"; exit 1
  fi
fi

install() {
  local name=$1 spec=$2 flags=${3:-}
  local dir="$cache/$name"
  local stamp="$dir/.kubeauth-$(printf '%s' "$spec${flags:+ $flags}" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  log "installing $spec into $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  printf '{"name":"kubeauth-test-peer-%s","private":true}\n' "$name" > "$dir/package.json"
  # shellcheck disable=SC2086 # one or more package specs, split on spaces
  (cd "$dir" && npm install --silent --no-audit --no-fund $flags $spec >&2)
  touch "$stamp"
}

mkdir -p "$cache"
install oidc-provider 'oidc-provider@9.13.3'
install backstage-kubernetes '@backstage/plugin-kubernetes-react@0.6.2 @backstage/plugin-kubernetes-common@0.9.15 @kubernetes/client-node@1.4.0'
install backstage-backend '@backstage/plugin-kubernetes-backend@0.21.15 @backstage/backend-defaults@0.19.0' --ignore-scripts
log "ready in $cache"
