#!/usr/bin/env bash
# Builds nbhub's .deb and .rpm: both binaries (nbhub, nbhub-proxy), a commented
# /etc/nbhub/nbhub.toml generated from `nbhub generate-config` with a package's values, the
# systemd units of packaging/systemd/, the set-up script packaging/nbhub-setup (system user,
# folders, the proxy's token), and the templates and static files. What goes where:
# [package.metadata.deb] and [package.metadata.generate-rpm] in crates/nbhub/Cargo.toml; how a
# site uses them: docs/admin-guide.md.
#
# Usage:
#   scripts/package.sh                      release build, then both packages
#   scripts/package.sh --profile dev --no-build
#                                           package the binaries already built with that profile
#                                           (the tests: no release build)
#   scripts/package.sh --out DIR            where the packages go (default target/packages)
#   scripts/package.sh --fast               lighter compression (bigger packages, sooner; the tests)
#   scripts/package.sh --install-tools      only install cargo-deb and cargo-generate-rpm
#
# cargo-deb and cargo-generate-rpm are installed when missing or of another version
# (`cargo install --locked`, into $CARGO_HOME/bin, default ~/.cargo/bin; once per machine).
# stdout: the paths of the two packages, one a line.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

CARGO_DEB_VERSION=3.8.0
CARGO_RPM_VERSION=0.21.1
PROFILE=release
BUILD=1
OUT=$REPO/target/packages
TOOLS_ONLY=0
FAST=0

log() { printf '==> package: %s\n' "$*" >&2; }
die() {
    printf 'package: ERROR: %s\n' "$*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --profile)
        [[ $# -ge 2 ]] || die "--profile needs a cargo profile name"
        PROFILE=$2
        shift
        ;;
    --no-build) BUILD=0 ;;
    --out)
        [[ $# -ge 2 ]] || die "--out needs a folder"
        OUT=$2
        shift
        ;;
    --install-tools) TOOLS_ONLY=1 ;;
    --fast) FAST=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
        exit 0
        ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
    esac
    shift
done

# --- the packaging tools ----------------------------------------------------------------------
# `cargo deb --version` prints e.g. "3.8.0"; `cargo generate-rpm --version` "cargo-generate-rpm 0.21.1".
tool_version() { cargo "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }
ensure_tool() {
    local sub=$1 crate=$2 version=$3
    if [[ $(tool_version "$sub") == "$version" ]]; then
        return
    fi
    log "cargo install --locked $crate@$version (once per machine; a few minutes)"
    cargo install --locked --quiet --version "$version" "$crate" >&2 ||
        die "cargo install $crate@$version failed (is the crates registry reachable?)"
    [[ $(tool_version "$sub") == "$version" ]] || die "cargo $sub is not $version after cargo install (is \$CARGO_HOME/bin on PATH?)"
}
ensure_tool deb cargo-deb "$CARGO_DEB_VERSION"
ensure_tool generate-rpm cargo-generate-rpm "$CARGO_RPM_VERSION"
if [[ $TOOLS_ONLY -eq 1 ]]; then
    log "cargo-deb $CARGO_DEB_VERSION and cargo-generate-rpm $CARGO_RPM_VERSION are installed"
    exit 0
fi

# --- the binaries -----------------------------------------------------------------------------
# The profile's folder: dev builds go to target/debug, every other profile to its own name.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $TARGET_DIR ]] || die "cannot find cargo's target directory"
PROFILE_DIR=$PROFILE
[[ $PROFILE == dev || $PROFILE == test ]] && PROFILE_DIR=debug
if [[ $BUILD -eq 1 ]]; then
    log "cargo build --profile $PROFILE --locked -p nbhub -p nbhub-proxy --bins"
    cargo build --profile "$PROFILE" --locked -p nbhub -p nbhub-proxy --bins >&2
fi
for bin in nbhub nbhub-proxy; do
    [[ -x $TARGET_DIR/$PROFILE_DIR/$bin ]] ||
        die "$TARGET_DIR/$PROFILE_DIR/$bin is missing (build it, or leave out --no-build)"
done
NBHUB=$TARGET_DIR/$PROFILE_DIR/nbhub
# What both packages hold: the binaries without their debug info (a dev build's nbhub is
# ~300 MB, ~40 MB without; the symbols stay, for backtraces).
GEN=$REPO/target/nbhub-package
mkdir -p "$GEN/bin"
command -v strip >/dev/null || die "strip (binutils) is not installed"
for bin in nbhub nbhub-proxy; do
    strip --strip-debug -o "$GEN/bin/$bin" "$TARGET_DIR/$PROFILE_DIR/$bin"
done

# --- the packaged /etc/nbhub/nbhub.toml -------------------------------------------------------
# `nbhub generate-config` (every key, commented) with the values a packaged hub needs. Each
# change must find its key in its section exactly once, so that a renamed key stops the build
# instead of shipping a config that silently kept the default.
set_key() { # FILE SECTION KEY VALUE [COMMENT]
    local file=$1 section=$2 key=$3 value=$4 comment=${5:-}
    awk -v section="[$section]" -v key="$key" -v value="$value" -v comment="$comment" '
        /^\[/ { in_section = ($0 == section) }
        in_section && index($0, key " = ") == 1 {
            if (comment != "") print "# " comment
            print key " = " value
            n++
            next
        }
        { print }
        END { if (n != 1) exit 3 }
    ' "$file" >"$file.new" || die "generate-config has no key '$key' in [$section] (or it twice)"
    mv "$file.new" "$file"
}
CONF=$GEN/nbhub.toml
{
    cat <<'EOF'
# /etc/nbhub/nbhub.toml, as the nbhub package installs it: `nbhub generate-config` with the
# values for the packaged services (nbhub.service, nbhub-proxy.service and .socket). Changes
# here are kept across upgrades and `apt remove`. Check it with
#   set -a; . /etc/nbhub/proxy.env; set +a; nbhub --config /etc/nbhub/nbhub.toml --check
# The guide: /usr/share/doc/nbhub/admin-guide.md.

EOF
    "$NBHUB" generate-config
} >"$CONF"
set_key "$CONF" hub bind_url '"http://0.0.0.0:8000"' \
    "package: nbhub-proxy.socket listens on port 8000 (change both: docs/admin-guide.md, TLS)."
set_key "$CONF" hub data_dir '"/var/lib/nbhub"' \
    "package: the unit's StateDirectory, owned by the user nbhub."
set_key "$CONF" hub db_url '""' \
    "package: SQLite in /var/lib/nbhub/nbhub.sqlite; for PostgreSQL see docs/admin-guide.md."
set_key "$CONF" authenticator kind '"pam"' \
    "package: the machine's accounts (the user nbhub reads /etc/shadow as a member of group shadow)."
set_key "$CONF" spawner kind '"slurm"' \
    "package: Slurm batch jobs (docs/admin-guide.md, Slurm submission)."
set_key "$CONF" slurm submit_as '["sudo", "-E", "-u", "{username}"]' \
    "package: the hub runs as the user nbhub and submits through sudo (the sudoers rule: docs/admin-guide.md)."
set_key "$CONF" proxy kind '"external"' \
    "package: nbhub-proxy.service, started by systemd from nbhub-proxy.socket."
set_key "$CONF" proxy auth_token '""' \
    "package: \"\" here; the hub gets it as NBHUB_PROXY__AUTH_TOKEN from /etc/nbhub/proxy.env."
log "generated $CONF from $NBHUB generate-config"

# --- the packages -----------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/nbhub_*.deb "$OUT"/nbhub-*.rpm
# The binaries are already in place: no build, no strip of theirs, no profile.
DEB_ARGS=(--no-build --no-strip) RPM_ARGS=()
[[ $FAST -eq 1 ]] && DEB_ARGS+=(--fast) RPM_ARGS+=(--payload-compress gzip)
log "cargo deb ($PROFILE binaries)"
cargo deb -p nbhub --output "$OUT" "${DEB_ARGS[@]}" >&2 || die "cargo deb failed"
log "cargo generate-rpm ($PROFILE binaries)"
cargo generate-rpm -p crates/nbhub --output "$OUT" "${RPM_ARGS[@]}" >&2 ||
    die "cargo generate-rpm failed"
ls "$OUT"/nbhub_*.deb "$OUT"/nbhub-*.rpm
