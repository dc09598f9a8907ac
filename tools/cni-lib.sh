# Shared by tools/test-cni, tools/bench-cni and tools/test-cnirun: a vrouterd with a default
# network, driven through vrouter-cni by cnirun (tools/cnirun on Debian's libcni: the runtime
# side, as containerd calls plugins). Everything runs inside a throwaway network namespace
# acting as the node's host (unshare -n), so taps, bridges and addresses never touch the
# machine's own; pods are namespaces named vrt-ct<PID>-*, this run's own (two runs, say from
# two clones, never touch each other's), removed on every exit path, and what a killed run
# left is removed by the next.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# cni_reexec "$@": re-runs the calling script inside a fresh network namespace.
cni_reexec() {
  if [[ -z ${VRT_CNI_HOSTNS:-} ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "$(basename "$0"): needs root (network namespaces, taps)" >&2; exit 1; }
    VRT_CNI_HOSTNS=1 exec unshare -n "$0" "$@"
  fi
  ip link set lo up
  vrt_netns_reap vrt-ct
}
CNI_NS=vrt-ct$$-

# cni_setup BUILD_DIR: builds cnirun if needed, writes the node config and conflist, and
# starts vrouterd. Sets TMP, SOCK, CONF, CNIRUN, BIN, VRD_PID, CTL (vrouterctl command).
# libcni's result cache is $TMP/cni-cache (see cnirun), so it goes with $TMP.
cni_setup() {
  BIN=$1
  for b in vrouterd vrouterctl vrouter-cni; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b (swift build first)" >&2; exit 1; }
  done
  CNIRUN=$(vrt_cnirun) || exit 1
  TMP=$(mktemp -d /tmp/vrt-cni-XXXXXX)
  SOCK=$TMP/vrouterd.sock
  cat >"$TMP/node.yaml" <<YAML
node: { name: cni-test }
workers: 1
pool: { buffers: 4096 }
flows: { capacity: 4096, idleTimeout: 2s }
defaultNetwork: { name: cluster, subnet: 198.19.0.0/24, vni: 100 }
YAML
  CONF=$TMP/10-vrouter.conflist
  jq --arg s "$SOCK" --arg d "$TMP/cni-state" '.plugins[0].socket = $s | .plugins[0].stateDir = $d' \
    "$VRT_ROOT/config/cni/10-vrouter.conflist" >"$CONF"
  export CNI_PATH=$BIN:/usr/lib/cni
  CTL=("$BIN/vrouterctl" --socket "$SOCK")
  cni_start_vrouterd
}

cni_start_vrouterd() {
  vrt_start_vrouterd "$SOCK" "$TMP/vrouterd.log" \
    "$BIN/vrouterd" run --config "$TMP/node.yaml" --state-dir "$TMP/state" --socket "$SOCK" --log-level warning ||
    exit 1
}

cni_stop_vrouterd() {
  if [[ -n ${VRD_PID:-} ]] && kill -0 "$VRD_PID" 2>/dev/null; then
    kill -TERM "$VRD_PID"
    wait "$VRD_PID" 2>/dev/null || true
  fi
  VRD_PID=
}

cni_cleanup() {
  cni_stop_vrouterd
  local ns
  for ns in $(ip netns list 2>/dev/null | awk -v p="$CNI_NS" 'index($1, p) == 1 {print $1}'); do ip netns del "$ns" 2>/dev/null; done
  ip link del vrtbr0 2>/dev/null || true
  [[ -n ${TMP:-} && -d $TMP ]] && rm -rf "$TMP"
  return 0
}

# pod NAME: a fresh pod namespace; prints its path.
pod() {
  ip netns del "$CNI_NS$1" 2>/dev/null || true
  ip netns add "$CNI_NS$1"
  ip -n "$CNI_NS$1" link set lo up
  echo "/var/run/netns/$CNI_NS$1"
}

# cnirun ARGS...: cnirun with this run's result cache.
cnirun() { "$CNIRUN" --cache-dir "$TMP/cni-cache" "$@"; }

# json_string VAR TEXT: sets VAR to TEXT as a JSON string, in bash with no process: a jq exec
# costs 9-16 ms of CPU, more than vrouter-cni's in a benchmark's timed ADD (a runtime spawns no
# such thing). jq only for control characters other than newline, tab and return.
json_string() {
  local s=$2
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  if [[ $s == *[[:cntrl:]]* ]]; then s=$(jq -cn --arg v "$2" '$v'); else s="\"$s\""; fi
  printf -v "$1" '%s' "$s"
}

# cni CMD POD [ANNOTATION] [CONFLIST]: runs cnirun for pod NAME (namespace default) with the
# networks annotation in CAP_ARGS; the container ID is ctr-NAME.
cni() {
  local cmd=$1 name=$2 ann=${3:-} conf=${4:-$CONF} cap='' v
  if [[ -n $ann ]]; then
    json_string v "$ann"
    cap="{\"io.kubernetes.cri.pod-annotations\":{\"k8s.v1.cni.cncf.io/networks\":$v}}"
  fi
  CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$name;K8S_POD_INFRA_CONTAINER_ID=ctr-$name;K8S_POD_UID=uid-$name" \
    CAP_ARGS=$cap cnirun "$cmd" "$conf" "ctr-$name" "/var/run/netns/$CNI_NS$name"
}
