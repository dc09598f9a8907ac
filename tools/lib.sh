# Shared by the tools: repository root, and building a release product once.
VRT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# vrt_build PRODUCT: builds it in release mode (quietly unless it fails); prints its path.
vrt_build() {
  local product=$1 log
  log=$(mktemp)
  if ! (cd "$VRT_ROOT" && swift build -c release --product "$product") >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "build of $product failed" >&2
    return 1
  fi
  rm -f "$log"
  echo "$VRT_ROOT/.build/release/$product"
}
# vrt_cc NAME SOURCE PKG...: compiles a C comparison program with gcc -O3 -march=native
# against the pkg-config packages named, into .build-tools/NAME (rebuilt when the source
# is newer); prints its path.
vrt_cc() {
  local name=$1 src=$VRT_ROOT/$2 bin=$VRT_ROOT/.build-tools/$1 flags=()
  shift 2
  if (($#)); then
    if ! flags=($(pkg-config --cflags --libs "$@" 2>/dev/null)); then
      echo "pkg-config finds no $*: run tools/bootstrap" >&2
      return 1
    fi
  fi
  if [[ ! -x $bin || $src -nt $bin ]]; then
    mkdir -p "$VRT_ROOT/.build-tools"
    # -march=native last, so it wins over any -march a .pc file brings.
    gcc -O3 -Wall -Wextra -o "$bin.tmp" "$src" "${flags[@]}" -march=native || { echo "compiling $src failed" >&2; return 1; }
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}
# vrt_netns_reap PREFIX: what killed runs left. Scripts name their namespaces PREFIX<PID>-*
# (or PREFIX<PID>) after their own process, so that two runs (say from two clones) never
# remove each other's; this deletes those whose run is gone, ending any process left in them.
vrt_netns_reap() {
  local ns pids
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns =~ ^$1([0-9]+)(-|$) ]] || continue
    kill -0 "${BASH_REMATCH[1]}" 2>/dev/null && continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  return 0
}
# vrt_cnirun: builds cnirun (tools/cnirun: the runtime side of CNI on Debian's libcni) into
# .build-tools when missing or older than its source, and prints its path. Go builds it in
# GOPATH mode against /usr/share/gocode, with its cache in .build-tools (nothing outside the
# clone is written).
vrt_cnirun() {
  local src=$VRT_ROOT/tools/cnirun bin=$VRT_ROOT/.build-tools/cnirun
  if [[ -x $bin && ! $src/main.go -nt $bin ]]; then echo "$bin"; return 0; fi
  if ! command -v go >/dev/null 2>&1 || [[ ! -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ]]; then
    echo "cnirun needs Go and Debian's libcni (golang-go, golang-github-appc-cni-dev): run tools/bootstrap as root" >&2
    return 1
  fi
  mkdir -p "$VRT_ROOT/.build-tools"
  if ! (cd "$src" && GO111MODULE=off GOFLAGS= GOPATH=/usr/share/gocode GOCACHE="$VRT_ROOT/.build-tools/go-cache" \
    go build -o "$bin.tmp" .) >&2; then
    echo "building cnirun from $src failed" >&2
    return 1
  fi
  mv "$bin.tmp" "$bin"
  echo "$bin"
}
# vrt_start_vrouterd SOCKET LOG CMD...: starts CMD (a `vrouterd run ... --socket SOCKET` command
# line, with whatever it needs in front: `ip netns exec NS`, `taskset -c N`) in the background,
# its output appended to LOG, sets VRD_PID, and waits until the control socket answers
# (ports made, workers started: the API comes up last), at most $VRT_VROUTERD_WAIT seconds
# (default 30). On failure stops it, prints LOG to stderr and returns 1.
vrt_start_vrouterd() {
  local sock=$1 log=$2 i
  shift 2
  "$@" >>"$log" 2>&1 &
  VRD_PID=$!
  for ((i = 0; i < ${VRT_VROUTERD_WAIT:-30} * 20; i++)); do
    if [[ -S $sock ]] && curl -sf --max-time 2 --unix-socket "$sock" http://vrouterd/healthz >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$VRD_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill "$VRD_PID" 2>/dev/null || true  # a vrouterd that is still starting is not left behind
  echo "vrouterd did not start serving $sock:" >&2
  cat "$log" >&2
  return 1
}
