#!/usr/bin/env bash
# Builds remedyd's container image from this repository, without pulling anything:
#
#   scripts/image.sh [TAG]        TAG defaults to remedyd:<version in Cargo.toml>
#
# 1. builds the release binary (cargo build --release --locked);
# 2. stages the image's files in target/image/context (Containerfile, at the repository root,
#    lists them): the binary, exactly the shared libraries `ldd` names, CA roots, passwd/group
#    with the non-root user 65532, the default config, rules and policies;
# 3. builds the image FROM scratch with Debian's buildah (vfs storage, chroot isolation: no
#    daemon, no registry, no user namespaces needed; run as root or through sudo);
# 4. saves it as an OCI archive, target/image/remedyd.oci.tar, and prints its size.
#
# Load the archive elsewhere with `podman load -i target/image/remedyd.oci.tar` or
# `skopeo copy oci-archive:target/image/remedyd.oci.tar docker://REGISTRY/remedyd:TAG`.
# scripts/check-image.sh runs the archive's root filesystem under chroot (CI does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
if [[ -z $version ]]; then
    echo "scripts/image.sh: no version in Cargo.toml" >&2
    exit 1
fi
tag=${1:-remedyd:$version}
out=target/image
archive=$out/remedyd.oci.tar
ctx=$out/context

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "scripts/image.sh: buildah needs root or sudo here (vfs storage, chroot isolation)" >&2
    exit 1
fi

# Debian packages: buildah (the builder), ca-certificates (the roots the image ships).
missing=()
for pkg in buildah ca-certificates; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    echo "scripts/image.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -o DPkg::Lock::Timeout=600
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

echo "scripts/image.sh: building the release binary" >&2
cargo build --release --locked --bin remedyd
bin=target/release/remedyd

echo "scripts/image.sh: staging $ctx" >&2
rm -rf "$ctx"
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/etc/remedyd" "$ctx/data"
install -m 0755 "$bin" "$root/usr/local/bin/remedyd"

# The shared libraries, at the paths the binary asks for (ldd resolves symlinks' targets with
# cp -L). A static binary has none; an unresolved one ("not found") stops the build here.
if ldd "$bin" >"$out/ldd.txt" 2>&1; then
    if grep -q 'not found' "$out/ldd.txt"; then
        echo "scripts/image.sh: a library of $bin is not found:" >&2
        cat "$out/ldd.txt" >&2
        exit 1
    fi
    while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(grep -o '/[^ ]*' "$out/ldd.txt" | sort -u)
elif ! grep -q 'not a dynamic executable' "$out/ldd.txt"; then
    cat "$out/ldd.txt" >&2
    exit 1
fi

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'remedyd:x:65532:65532:remedyd:/var/lib/remedyd:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'remedyd:x:65532:' >"$root/etc/group"
printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
cp -r rules policies "$root/etc/remedyd/"
cat >"$root/etc/remedyd/remedyd.toml" <<'TOML'
# remedyd.toml of the container image (scripts/image.sh); every key: docs/configuration.md.
# REMEDYD_<KEY> environment variables override these keys. Mount your own file here, or point
# REMEDYD_CONFIG elsewhere.

# Dry-run until the timelines read right; then REMEDYD_MODE=enforce.
mode = "dry-run"
# Every interface, so the container is reachable. Not loopback, so a webhook token is
# required: REMEDYD_WEBHOOK_TOKEN_FILE (or REMEDYD_WEBHOOK_TOKEN).
listen = "0.0.0.0:9097"
rules = "/etc/remedyd/rules"
policies = "/etc/remedyd/policies"
# The image's volume; for several replicas use PostgreSQL (REMEDYD_STORE=postgres://...).
store = "sqlite:///var/lib/remedyd/remedyd.db"
TOML
mkdir -m 1777 "$root/tmp"
chmod -R go-w "$root"
chmod 1777 "$root/tmp"

echo "scripts/image.sh: buildah bud -t $tag" >&2
buildah=("${sudo[@]}" buildah --storage-driver vfs)
"${buildah[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
"${buildah[@]}" bud --isolation chroot --layers=false --build-arg "VERSION=$version" \
    -f Containerfile -t "$tag" "$ctx"
rm -f "$archive"
"${buildah[@]}" push "$tag" "oci-archive:$archive:$tag"
[[ ${#sudo[@]} -eq 0 ]] || "${sudo[@]}" chown "$(id -u):$(id -g)" "$archive"

staged=$(du -sb "$root" "$ctx/data" | awk '{s += $1} END {print s}')
echo "scripts/image.sh: $tag -> $archive ($(du -b "$archive" | cut -f1) bytes; root filesystem $staged bytes, binary $(du -b "$bin" | cut -f1) bytes)"
