#!/usr/bin/env bash
# Python test peers in virtual environments outside the repository, created once per machine:
# - moto (AWS STS) with the flask server it needs;
# - awscli, the reference implementation of `aws eks get-token`.
# Usage: provision-python.sh CACHE_DIR
set -euo pipefail
cache=${1:?usage: provision-python.sh CACHE_DIR}
log() { printf 'python peers: %s\n' "$*" >&2; }

make_venv() {
  local name=$1; shift
  local venv="$cache/$name"
  local stamp="$venv/.kubeauth-$(printf '%s ' "$@" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  log "installing $* into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  touch "$stamp"
}

mkdir -p "$cache"
make_venv moto 'moto[server]==5.1.*' 'flask' 'flask-cors'
make_venv awscli 'awscli==1.*'
log "ready in $cache"
