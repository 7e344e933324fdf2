#!/usr/bin/env bash
# Checks the image scripts/image.sh saved, the way a container runtime would run it, without
# one (podman run does not work in this sandbox): unpacks the OCI archive's layers in order into
# a root filesystem, then, under chroot as the image's user with only the image's environment,
#   1. `remedyd --version` prints the version in Cargo.toml;
#   2. `remedyd check` refuses the image's config without a webhook token (it listens on every
#      interface) and passes with one, on the image's config, rules and policies;
#   3. `remedyd serve` starts, opens its SQLite store in /var/lib/remedyd (the image's user must
#      own it), answers /healthz and /readyz, and stops on SIGTERM with exit code 0.
# A library, file or permission the image lacks fails one of these. Needs root (chroot), jq.
#
#   scripts/check-image.sh [ARCHIVE]    default target/image/remedyd.oci.tar
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

archive=${1:-target/image/remedyd.oci.tar}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
fail() {
    echo "scripts/check-image.sh: FAILED: $*" >&2
    exit 1
}
[[ -f $archive ]] || fail "no archive at $archive (run scripts/image.sh first)"
[[ $(id -u) -eq 0 ]] || fail "needs root (chroot, and the layers' file owners)"
command -v jq >/dev/null || fail "needs jq (apt-get install jq)"

work=$(mktemp -d)
serve_pid=
cleanup() {
    [[ -z $serve_pid ]] || kill -9 "$serve_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/oci" "$work/rootfs"
tar -xf "$archive" -C "$work/oci"

blob() { echo "$work/oci/blobs/${1/://}"; }
manifest=$(blob "$(jq -r '.manifests[0].digest' "$work/oci/index.json")")
config=$(blob "$(jq -r '.config.digest' "$manifest")")
layers=$(jq -r '.layers[].digest' "$manifest")
[[ -n $layers ]] || fail "the manifest lists no layers"
for layer in $layers; do
    # GNU tar detects the compression; the owners in the layer (root, 65532) are kept.
    tar -xpf "$(blob "$layer")" -C "$work/rootfs" --same-owner --numeric-owner
    if find "$work/rootfs" -name '.wh.*' | grep -q .; then
        fail "layer $layer has whiteouts; this check does not apply them"
    fi
done

user=$(jq -r '.config.User // ""' "$config")
entrypoint=$(jq -r '.config.Entrypoint[0] // ""' "$config")
mapfile -t env < <(jq -r '.config.Env[]?' "$config")
[[ -n $user && $user != 0* && $user != root* ]] || fail "the image runs as root (User '$user')"
[[ -n $entrypoint ]] || fail "the image has no entrypoint"

out=$(env -i "${env[@]}" chroot --userspec="$user" "$work/rootfs" "$entrypoint" --version) ||
    fail "remedyd --version: exit $?"
[[ $out == "remedyd $version" ]] || fail "remedyd --version printed '$out', expected 'remedyd $version'"
echo "scripts/check-image.sh: --version: $out"

# The image listens on every interface, so it refuses to run without a webhook token...
if out=$(env -i "${env[@]}" chroot --userspec="$user" "$work/rootfs" "$entrypoint" check 2>&1); then
    fail "remedyd check passed without a webhook token on 0.0.0.0"
fi
[[ $out == *webhook_token* ]] || fail "remedyd check without a token did not name webhook_token: $out"
# ...and passes with one, as a deployment gives it.
env -i "${env[@]}" REMEDYD_WEBHOOK_TOKEN=check-image-token \
    chroot --userspec="$user" "$work/rootfs" "$entrypoint" check ||
    fail "remedyd check in the image: exit $?"

port=$(( (RANDOM % 20000) + 30000 ))
env -i "${env[@]}" REMEDYD_LISTEN="127.0.0.1:$port" REMEDYD_WEBHOOK_TOKEN=check-image-token \
    chroot --userspec="$user" "$work/rootfs" "$entrypoint" serve >"$work/serve.log" 2>&1 &
serve_pid=$!
healthy=
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        healthy=1
        break
    fi
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.2
done
if [[ -z $healthy ]]; then
    cat "$work/serve.log" >&2
    fail "remedyd serve in the image did not become ready on 127.0.0.1:$port"
fi
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || fail "/healthz"
[[ -f $work/rootfs/var/lib/remedyd/remedyd.db ]] || fail "no store at /var/lib/remedyd/remedyd.db"
kill -TERM "$serve_pid"
rc=0
wait "$serve_pid" || rc=$?
serve_pid=
[[ $rc -eq 0 ]] || { cat "$work/serve.log" >&2; fail "remedyd serve exited $rc on SIGTERM"; }
echo "scripts/check-image.sh: serve: ready, store created as user $user, exit 0 on SIGTERM"

echo "scripts/check-image.sh: ok ($(du -b "$archive" | cut -f1) bytes archived," \
    "$(du -sb "$work/rootfs" | cut -f1) bytes unpacked, $(jq '.layers | length' "$manifest") layers)"
