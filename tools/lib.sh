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
