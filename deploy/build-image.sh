#!/usr/bin/env bash
# Builds the allidb container image without pulling anything: `FROM scratch` with the allidbd
# and allidb binaries (debug info stripped), the shared libraries they link (as ldd lists them),
# a minimal /etc (passwd and group with the user allidb, uid 10001; nsswitch.conf) and the
# default config file. No registry is reached: the build context holds the whole filesystem.
#
#   deploy/build-image.sh [--tag NAME] [--profile dist|release|test] [--no-build]
#
# --profile dist (the default) builds `cargo build --profile dist` (release code, no debug
# info); --profile test reuses the binaries `cargo test --workspace` built (target/debug), as the
# container tests do; --no-build takes the profile's binaries as they are. Prints the image's
# size at the end. docs/deploy.md explains the image.
set -euo pipefail

tag="allidb:latest"
profile="dist"
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$profile" in
  dist|release) bin_dir="$target/$profile"
    build_cmd=(cargo build --profile "$profile" -p allidb-cmd --bins) ;;
  # The command tests/src/lib.rs runs: the same features as `cargo test --workspace`, so it
  # only links.
  test) bin_dir="$target/debug"
    build_cmd=(cargo build --profile test --workspace --bins --tests) ;;
  *) echo "build-image: --profile must be dist, release or test, not $profile" >&2; exit 2 ;;
esac
if [ "$build" = 1 ]; then
  (cd "$root" && "${build_cmd[@]}")
fi
for bin in allidbd allidb; do
  [ -x "$bin_dir/$bin" ] || {
    echo "build-image: $bin_dir/$bin is missing (run without --no-build)" >&2
    exit 1
  }
done

context="$(mktemp -d "${TMPDIR:-/tmp}/allidb-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/allidb" "$rootfs/tmp"
# The data directory, copied apart so that it belongs to the image's user.
mkdir -p "$context/data/allidb"
chmod 1777 "$rootfs/tmp"
for bin in allidbd allidb; do
  strip --strip-debug -o "$rootfs/usr/local/bin/$bin" "$bin_dir/$bin"
done

# The shared libraries the binaries link, and the dynamic loader, at the paths ldd names.
libs="$(ldd "$bin_dir/allidbd" "$bin_dir/allidb" | awk '
  /=> \// { print $3 }
  /^\t\// { print $1 }' | sort -u)"
[ -n "$libs" ] || { echo "build-image: ldd listed no libraries" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
allidb:x:10001:10001:allidb:/var/lib/allidb:/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
allidb:x:10001:
EOF
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
cp "$root/deploy/image.toml" "$rootfs/etc/allidb/allidb.toml"

cp "$root/deploy/Dockerfile" "$context/Dockerfile"
docker build --quiet --tag "$tag" \
  --label "org.opencontainers.image.revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$context" >/dev/null
size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "build-image: $tag built from $bin_dir: $((size / 1024 / 1024)) MiB ($size bytes)"
