#!/usr/bin/env bash
# Runs every test tier of nbhub, the way CI does. It first installs (idempotently) and starts
# what the tests need: Debian packages, the Python venv with the real jupyterhub-singleuser and
# JupyterLab, a throw-away PostgreSQL and, as root, the Slurm dev cluster (both stopped again
# at the end).
#
#   scripts/test.sh              everything: format, lints, all tests
#   scripts/test.sh -- ARGS      extra arguments for `cargo test` (e.g. -- -p nbhub)
#
# With CI=true a test whose real part is missing fails instead of skipping.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ${1:-} == "--" ]]; then shift; fi

step "installing and starting what the tests need (scripts/test-env.sh)"
env_lines=$(scripts/test-env.sh) || { echo "test.sh: scripts/test-env.sh failed" >&2; exit 1; }
eval "$env_lines"
# The cluster is ours to stop, whatever happens below.
trap 'scripts/postgres.sh stop >/dev/null 2>&1 || true; scripts/slurm-dev-cluster stop >/dev/null 2>&1 || true' EXIT

if ! command -v cargo >/dev/null; then
    echo "test.sh: cargo is not installed (this machine kind ships it: see README)" >&2
    exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building the binaries the end-to-end tests start"
cargo build --workspace --bins --locked

step "cargo test (unit, in-process, end-to-end with the real parts)"
export NBHUB_TEST_DATABASE_URL NBHUB_VENV NBHUB_CHP NBHUB_JUPYTERHUB_SPEC SLURM_CONF
cargo test --workspace --locked "$@" 2>&1 | tee "$REPO/.nbhub-test/cargo-test.log"
status=${PIPESTATUS[0]}

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$REPO/.nbhub-test/cargo-test.log"
exit "$status"
