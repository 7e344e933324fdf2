#!/usr/bin/env bash
# The test command (README): installs the Debian packages the tests need when they are missing,
# then runs every test. Works on a fresh Debian/Ubuntu machine as root or through sudo.
# Extra arguments go to the test runner (e.g. `./scripts/test.sh core_loop::`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the tests need (add here when a test needs another one):
#   ca-certificates, curl       - HTTPS for cargo and the harness
#   prometheus                  - /usr/bin/prometheus and /usr/bin/promtool (tests/support/services.rs)
#   prometheus-alertmanager     - /usr/bin/prometheus-alertmanager (tests/support/services.rs)
#   postgresql                  - PostgreSQL 15: /usr/lib/postgresql/15/bin/{initdb,postgres} and
#                                 the `postgres` user (tests/support/services.rs; store, ha)
#   chromium, chromium-driver   - /usr/bin/chromium, /usr/bin/chromedriver (tests/it/dashboard.rs)
#   buildah, jq                 - the container image: scripts/image.sh builds it, and
#                                 scripts/check-image.sh runs it under chroot (below)
packages=(ca-certificates curl prometheus prometheus-alertmanager postgresql chromium chromium-driver
    buildah jq)

# Not from Debian: /usr/bin/kubectl, the oracle of the Kubernetes tests (tests/it/kube_actions.rs,
# tests/it/fake_kube.rs), is google-cloud-cli's `kubectl` package (client-go 1.27-1.33), which the
# build image ships; Debian's kubernetes-client 1.20 predates policy/v1 Eviction and is no oracle.
# Those tests fail (never skip) without it, naming what is missing.
if [[ ! -x /usr/bin/kubectl ]]; then
    echo "scripts/test.sh: /usr/bin/kubectl is missing: the Kubernetes tests will fail (see above)" >&2
fi

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "scripts/test.sh: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get update -o DPkg::Lock::Timeout=600
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

rc=0
# Supply chain: `cargo deny check` against deny.toml, offline (scripts/deny.sh installs cargo-deny
# 0.20.2 when it is missing, about 3 minutes, and says where the advisory database came from or
# why there is none). Only in a full run, like the image below; a failure fails the run after the
# tests have run too.
if (($# == 0)); then
    ./scripts/deny.sh || rc=$?
fi

# The test binaries (Cargo.toml): `it`, the integration tests (tests/it/, one binary, meant for
# nextest: each test in its own process), and `model`; the staging suite against a real cluster is
# opt-in (`--features staging`) and not run here.
# nextest runs each test in its own process; it does not run doctests, so those run separately
# (`--all-targets` leaves them out of `cargo test` too). Benchmarks are not tests: `cargo bench`. Every test runs; the exit status is
# non-zero if any failed.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --lib --bins --tests --no-fail-fast "$@" || rc=$?
else
    cargo test --locked --lib --bins --tests --no-fail-fast "$@" || rc=$?
fi
cargo test --locked --doc || rc=$?

# The container image (Containerfile): built from this tree and run under chroot as its own
# user, so a missing library, file or permission fails here. Only in a full run: arguments
# choose tests, and the image is not a test one chooses.
if (($# == 0)); then
    { ./scripts/image.sh && ./scripts/check-image.sh; } || rc=$?
fi
exit "$rc"
