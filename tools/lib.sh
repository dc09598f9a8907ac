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
