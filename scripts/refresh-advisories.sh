#!/usr/bin/env bash
# Refreshes the advisory data kept in the repository from a RustSec advisory-db checkout (or a
# plain copy of one), e.g. after Cargo.lock gained a crate or when a newer snapshot is at hand:
#
#   scripts/refresh-advisories.sh ../shared/advisory-db
#
# - supply-chain/advisory-db/: the advisories of every crate named in Cargo.lock, as cargo-deny
#   reads them (crates/NAME/RUSTSEC-*.md), with the database's licence (CC0) and its date
#   (SNAPSHOT: the newest advisory's date, or the checkout's last commit);
# - supply-chain/advisories.tsv: the front matter of every advisory, which
#   tests/it/supply_chain.rs checks the graph against without cargo-deny.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=${1:?usage: scripts/refresh-advisories.sh ADVISORY_DB_DIR}
if [[ ! -d $src/crates ]]; then
    echo "scripts/refresh-advisories.sh: $src/crates is missing: not an advisory-db checkout" >&2
    exit 1
fi
src=$(cd "$src" && pwd)
out=supply-chain/advisory-db
rm -rf "$out"
mkdir -p "$out/crates"
cp "$src/LICENSE.txt" "$out/"
while read -r name; do
    if [[ -d $src/crates/$name ]]; then
        cp -r "$src/crates/$name" "$out/crates/"
    fi
done < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u)
if git -C "$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    git -C "$src" log -1 --format=%cs >"$out/SNAPSHOT"
else
    grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$src/crates" | cut -d'"' -f2 | sort | tail -1 \
        >"$out/SNAPSHOT"
fi
echo "scripts/refresh-advisories.sh: $(find "$out/crates" -name '*.md' | wc -l) advisories of" \
    "$(ls "$out/crates" | wc -l) crates, snapshot $(cat "$out/SNAPSHOT")" >&2
REMEDYD_ADVISORY_DB=$src REMEDYD_BLESS=1 cargo nextest run --locked --test it supply_chain::
