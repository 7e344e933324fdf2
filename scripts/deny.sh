#!/usr/bin/env bash
# `cargo deny check` (deny.toml: advisories, licences, bans and duplicates, sources), offline:
# CI reaches crates.io but not GitHub, where cargo-deny fetches its advisory database from.
# Installs cargo-deny when it is missing (a pinned version, built from crates.io with gcc only:
# about 3 minutes on 2 cores). Arguments go to `cargo deny check` (e.g. `licenses`).
#
# The advisory database, first found of:
#   1. $REMEDYD_ADVISORY_DB: any advisory-db checkout or plain copy;
#   2. ../shared/advisory-db: the full snapshot beside the repository on the build machines;
#   3. supply-chain/advisory-db: the advisories of the crates in Cargo.lock, vendored
#      (scripts/refresh-advisories.sh refreshes it; tests/it/supply_chain.rs fails when
#      Cargo.lock has a crate with advisories it lacks).
# cargo-deny reads only a git checkout (it takes the date of HEAD), so the one found is copied
# into a one-commit repository at $REMEDYD_ADVISORY_DBS (default target/advisory-dbs), dated as
# of the snapshot. None found: this fails, saying so; nothing is fetched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The version crates.md measured (0.20.2: 165 s to build here, no cmake or clang needed).
version=0.20.2
if ! cargo deny --version >/dev/null 2>&1; then
    echo "scripts/deny.sh: installing cargo-deny $version from crates.io (about 3 min)" >&2
    cargo install --locked "cargo-deny@$version"
fi
installed=$(cargo deny --version)
if [[ $installed != "cargo-deny $version" ]]; then
    echo "scripts/deny.sh: note: $installed is installed; deny.toml is checked with $version" >&2
fi

if [[ -n ${REMEDYD_ADVISORY_DB:-} ]]; then
    src=$REMEDYD_ADVISORY_DB
elif [[ -d ../shared/advisory-db/crates ]]; then
    src=../shared/advisory-db
else
    src=supply-chain/advisory-db
fi
if [[ ! -d $src/crates ]]; then
    echo "scripts/deny.sh: no advisory database: $src/crates is missing. CI cannot fetch one" \
        "(github.com is unreachable); set REMEDYD_ADVISORY_DB to an advisory-db checkout, or" \
        "restore supply-chain/advisory-db (git checkout supply-chain/)." >&2
    exit 1
fi
if [[ -f $src/SNAPSHOT ]]; then
    date=$(cat "$src/SNAPSHOT")
elif git -C "$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    date=$(git -C "$src" log -1 --format=%cs)
else
    # A plain copy: it is at least as new as its newest advisory.
    date=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$src/crates" | cut -d'"' -f2 | sort |
        tail -1)
fi
dbs=${REMEDYD_ADVISORY_DBS:-target/advisory-dbs}
db=$dbs/advisory-db-3157b0e258782691
rm -rf "$db"
mkdir -p "$db"
cp -r "$src/crates" "$db/"
(
    cd "$db"
    git init -q
    git add -A
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
        git -c user.name=remedyd -c user.email=remedyd@localhost -c commit.gpgsign=false \
        commit -q -m "RustSec advisory-db snapshot of $date"
)
echo "scripts/deny.sh: advisories from $src (snapshot $date," \
    "$(find "$db/crates" -name '*.md' | wc -l) advisories), offline" >&2
# `--offline` also keeps cargo from downloading crates, and cargo-deny reads every package of
# Cargo.lock, other platforms' too, which a build never downloads: fetch them first (crates.io).
cargo fetch --locked
REMEDYD_ADVISORY_DBS=$dbs cargo deny --locked --offline check "$@"
