#!/usr/bin/env bash
# Builds the cutover OCI image with Debian's buildah (no daemon) and writes an oci-archive.
#
#   bash deploy/build-image.sh [--binary PATH] [--out FILE] [--tag NAME]
#
# From scratch: the binary at /usr/local/bin/cutover, exactly the shared libraries `ldd`
# lists for it and the dynamic loader, the CA bundle, /etc/passwd and /etc/group entries
# for nonroot (65532), an empty /tmp — no shell, no package manager. The same image as
# deploy/Dockerfile (distroless cc, nonroot). Labels org.opencontainers.image.{version,
# source,revision}. Without --binary it builds the release binary first (cargo build
# --release --locked); tests pass the debug binary to stay fast.
# Defaults: --out target/cutover-<version>.oci.tar, --tag cutover:<version>.
# Needs root (buildah's storage) and `buildah` (apt-get install buildah). Push the archive
# with e.g. `skopeo copy oci-archive:FILE docker://REGISTRY/cutover:TAG`.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
binary=""
out=""
tag="cutover:${version}"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "build-image: unknown argument $1 (use --binary PATH, --out FILE, --tag NAME)" >&2; exit 2 ;;
  esac
done
target="${CARGO_TARGET_DIR:-target}"
out="${out:-$target/cutover-${version}.oci.tar}"
if ! command -v buildah >/dev/null 2>&1; then
  echo "build-image: buildah is not installed; run tests/setup.sh or apt-get install buildah" >&2
  exit 1
fi
if [ -z "$binary" ]; then
  cargo build --release --locked -q -p cutover --bin cutover
  binary="$target/release/cutover"
fi
[ -x "$binary" ] || { echo "build-image: $binary is not an executable" >&2; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] || { echo "build-image: $ca is missing; apt-get install ca-certificates" >&2; exit 1; }
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
source="${CUTOVER_IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || echo unknown)}"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/local/bin/cutover"
# Exactly what the dynamic linker loads: each `=>` path, and the loader itself.
ldd "$binary" | awk '/=>/ && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
install -D -m 0644 "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
install -d -m 1777 "$root/tmp"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"

export BUILDAH_ISOLATION=chroot
b=(buildah --storage-driver vfs)
ctr="$("${b[@]}" from scratch)"
trap '"${b[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
"${b[@]}" copy "$ctr" "$root/" / >/dev/null
"${b[@]}" config \
  --user 65532:65532 \
  --workingdir /home/nonroot \
  --entrypoint '["/usr/local/bin/cutover"]' \
  --cmd '["--help"]' \
  --port 9102 \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label "org.opencontainers.image.title=cutover" \
  --label "org.opencontainers.image.version=${version}" \
  --label "org.opencontainers.image.source=${source}" \
  --label "org.opencontainers.image.revision=${revision}" \
  "$ctr"
"${b[@]}" commit -q "$ctr" "$tag" >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out"
"${b[@]}" push -q "$tag" "oci-archive:${out}:${tag}"
"${b[@]}" rmi "$tag" >/dev/null 2>&1 || true
echo "$out"
