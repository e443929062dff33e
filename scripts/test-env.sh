#!/usr/bin/env bash
# Installs (idempotently) and starts the real parts nbhub's tests run against, on Debian 12:
#
#   * Debian packages: PostgreSQL server, libpam0g-dev (the hub's PAM authenticator), pkg-config,
#     a C compiler, Python 3 with venv support;
#   * the Python venv ${NBHUB_VENV:-<repo>/.venv} from scripts/requirements-test.txt
#     (jupyterhub-singleuser, JupyterLab, the idle culler, batchspawner, schemathesis,
#     jupyter-resource-usage) and this checkout's jupyterlab/nbhub-jupyterlab; pip runs only
#     when the requirements, that package (or the Python) changed since the last install.
#     As root, when other Unix accounts cannot enter the checkout (cloned under /root, or in a
#     0700 `mktemp -d` folder), the venv goes to /var/lib/nbhub-test/venv instead: the Slurm
#     tests' jobs and switch_user servers run it as test accounts. The set-up stops, saying
#     why, when those accounts cannot run the venv (or reach the temporary folder);
#   * a throw-away PostgreSQL cluster (scripts/postgres.sh start);
#   * JupyterHub's OpenAPI spec, from the jupyterhub sdist on PyPI (cached in .nbhub-test/);
#   * configurable-http-proxy and oidc-provider from npm (the external-proxy and
#     generic-oauth tests);
#   * the web pages' npm packages (crates/nbhub/static, from its package-lock.json), which the
#     nbhub build embeds, and Chromium + chromedriver for the page tests (skip: --no-browser).
#   * as root, the Slurm dev cluster (scripts/slurm-dev-cluster start; exports SLURM_CONF), Lmod
#     (the jobs of a `modules` environment), and slurmdbd + MariaDB for the accounting test, which starts its own cluster with them
#     (skip: --no-accounting);
#   * as root, the cluster behind a login node for the SSH transport's tests
#     (scripts/slurm-ssh-cluster start; exports NBHUB_SSH_CLUSTER_*).
#   * as root, for the package test: rpm, a Debian 12 base tarball made with mmdebstrap
#     (.nbhub-test/debian12-base-*.tar.zst, made once; exports NBHUB_DEBIAN_BASE), cargo-deb and
#     cargo-generate-rpm (scripts/package.sh --install-tools).
#
# --demo installs only what scripts/demo.sh runs: the Debian packages the build needs, a venv
# with jupyterhub and jupyterlab alone (pinned as in scripts/requirements-test.txt; a venv
# with the full test set serves too) and the web pages' npm packages; nothing else is
# installed or started.
#
# Usage:
#   scripts/test-env.sh [--no-postgres] [--no-browser] [--no-accounting] [--demo]
#   eval "$(scripts/test-env.sh)"          # or: scripts/test-env.sh && . .nbhub-test/env
#
# Progress goes to stderr. stdout carries only `export` lines (NBHUB_VENV, NBHUB_CHP, NBHUB_OIDC_PROVIDER_DIR,
# NBHUB_JUPYTERHUB_SPEC, NBHUB_TEST_DATABASE_URL, SLURM_CONF, NBHUB_SSH_CLUSTER_*), which a full set-up also writes
# to <repo>/.nbhub-test/env.
# Environment: NBHUB_VENV (venv path), NBHUB_PYTHON (interpreter for a new venv; default
# /usr/bin/python3, else python3), NBHUB_PG_DIR / NBHUB_PG_BIN (see scripts/postgres.sh).
# An existing working venv is kept whatever interpreter made it.
set -euo pipefail

# What this script installs is run by other Unix accounts too (jobs, switch_user servers).
umask 022
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$REPO/.nbhub-test"
REQ="$REPO/scripts/requirements-test.txt"
# Where the venv goes when other accounts cannot enter the checkout.
SHARED_VENV=/var/lib/nbhub-test/venv
# Debian's interpreter by default: servers started as other Unix accounts (switch_user) must be
# able to run the venv, and an interpreter under /root (pyenv) is out of their reach.
if [[ -z ${NBHUB_PYTHON:-} && -x /usr/bin/python3 ]]; then
    PYTHON=/usr/bin/python3
else
    PYTHON=${NBHUB_PYTHON:-python3}
fi
WITH_POSTGRES=1
WITH_ACCOUNTING=1
WITH_BROWSER=1
DEMO=0

log() { printf '==> test-env: %s\n' "$*" >&2; }
die() {
    printf 'test-env: ERROR: %s\n' "$*" >&2
    exit 1
}

for arg in "$@"; do
    case $arg in
    --no-postgres) WITH_POSTGRES=0 ;;
    --no-browser) WITH_BROWSER=0 ;;
    --no-accounting) WITH_ACCOUNTING=0 ;;
    --demo) DEMO=1 WITH_POSTGRES=0 WITH_BROWSER=0 WITH_ACCOUNTING=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
        exit 0
        ;;
    *) die "unknown argument '$arg' (usage: $0 [--no-postgres] [--no-browser] [--no-accounting] [--demo])" ;;
    esac
done

mkdir -p "$STATE"

# --- Debian packages --------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        installed "$pkg" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    [[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]}) or rerun this script as root"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

command -v dpkg-query >/dev/null || die "this script expects a Debian-like system (no dpkg-query)"
# util-linux: flock and runuser (scripts/postgres.sh); passwd: useradd (spawner tests as root);
# systemd: systemd-socket-activate (the proxy's socket activation test).
PKGS=(libpam0g-dev pkg-config gcc libc6-dev util-linux passwd ca-certificates systemd)
[[ $WITH_POSTGRES -eq 1 ]] && PKGS=(postgresql "${PKGS[@]}")
apt_install "${PKGS[@]}"
log "Debian packages present: ${PKGS[*]}"

# --- Python venv ------------------------------------------------------------------------------
# Whether the Unix account nobody, standing for the test accounts, can reach PATH with `test OP`.
others_can() { runuser -u nobody -- test "$1" "$2" 2>/dev/null; }
# The first folder on the way to PATH that other accounts cannot enter (PATH itself if none).
first_private() {
    local p=$1 prefix=""
    local IFS=/
    for part in ${p#/}; do
        prefix="$prefix/$part"
        others_can -x "$prefix" || {
            printf '%s' "$prefix"
            return
        }
    done
    printf '%s' "$p"
}

if [[ -n ${NBHUB_VENV:-} ]]; then
    VENV=$NBHUB_VENV
elif [[ $(id -u) -eq 0 ]] && ! others_can -x "$REPO"; then
    VENV=$SHARED_VENV
    log "other Unix accounts cannot enter $REPO ($(first_private "$REPO") is private): the venv goes to $VENV,"
    log "  where the test accounts that run the Slurm jobs and switch_user servers can run it"
    mkdir -p "$(dirname "$VENV")"
    chmod 755 "$(dirname "$VENV")"
else
    VENV=$REPO/.venv
fi

# The requirements: the full test set, or (--demo) only what the demo runs, pinned alike.
if [[ $DEMO -eq 1 ]]; then
    REQ_LINES=$(grep -E '^(jupyterhub|jupyterlab)==' "$REQ")
    [[ $(wc -l <<<"$REQ_LINES") -eq 2 ]] || die "$REQ pins no jupyterhub==VERSION or jupyterlab==VERSION"
    REQ_WHAT="jupyterhub and jupyterlab of $(basename "$REQ")"
    mapfile -t PIP_ARGS <<<"$REQ_LINES"
    IMPORTS=jupyterhub,jupyterlab
else
    REQ_LINES=$(cat "$REQ")
    REQ_WHAT=$(basename "$REQ")
    PIP_ARGS=(-r "$REQ")
    IMPORTS=jupyterhub,jupyterlab,batchspawner,jupyterhub_idle_culler,schemathesis,jupyter_resource_usage
fi

# Serialise venv work between concurrent runs of this script (of any checkout: the shared venv
# serves them all): a lock on the venv's parent folder.
mkdir -p "$(dirname "$VENV")"
exec 8<"$(dirname "$VENV")"
flock 8

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    command -v "$PYTHON" >/dev/null || apt_install python3
    command -v "$PYTHON" >/dev/null || die "no Python interpreter '$PYTHON'"
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        # Debian's own python3 ships venv's ensurepip separately.
        apt_install python3-venv
    fi
    log "creating venv $VENV with $(command -v "$PYTHON")"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "python -m venv $VENV failed"
fi

STAMP="$VENV/.nbhub-requirements.sha256"
PY_VERSION=$("$VENV/bin/python" -c 'import sys; print(sys.version)')
req_hash() { printf '%s\n%s\n' "$1" "$PY_VERSION" | sha256sum | cut -d' ' -f1; }
HASH=$(req_hash "$REQ_LINES")
# A venv with the full test set serves the demo too.
FULL_HASH=$(req_hash "$(cat "$REQ")")
current=$(cat "$STAMP" 2>/dev/null || true)
if [[ -x $VENV/bin/jupyterhub-singleuser && ($current == "$HASH" || $current == "$FULL_HASH") ]]; then
    log "venv $VENV is up to date with $REQ_WHAT"
else
    log "pip install ${PIP_ARGS[*]} into $VENV (this takes a minute or two)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PIP_ARGS[@]}" >&2 ||
        die "pip install of $REQ_WHAT failed (is PyPI reachable?)"
    "$VENV/bin/python" -c "import $IMPORTS" ||
        die "the venv $VENV lacks a package of $REQ_WHAT after pip install"
    [[ -x $VENV/bin/jupyterhub-singleuser ]] || die "$VENV/bin/jupyterhub-singleuser missing after pip install"
    printf '%s\n' "$HASH" >"$STAMP"
    log "venv ready: $("$VENV/bin/python" -m pip --disable-pip-version-check list 2>/dev/null |
        awk '$1 ~ /^(jupyterhub|jupyterlab|batchspawner|jupyterhub-idle-culler|schemathesis)$/ {printf "%s %s  ", $1, $2}')"
fi
# nbhub-jupyterlab from this checkout (jupyterlab/nbhub-jupyterlab: its prebuilt JupyterLab
# extension is committed, so no node is needed), again only when its files changed.
LAB_PKG=$REPO/jupyterlab/nbhub-jupyterlab
LAB_STAMP="$VENV/.nbhub-jupyterlab.sha256"
if [[ $DEMO -eq 0 ]]; then
    LAB_HASH=$(cd "$LAB_PKG" && find pyproject.toml nbhub_jupyterlab jupyter-config -type f \
        -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [[ $(cat "$LAB_STAMP" 2>/dev/null || true) == "$LAB_HASH" ]] &&
        "$VENV/bin/python" -c 'import nbhub_jupyterlab' 2>/dev/null; then
        log "nbhub-jupyterlab in $VENV is up to date"
    else
        log "pip install $LAB_PKG into $VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --force-reinstall \
            "$LAB_PKG" >&2 || die "pip install of $LAB_PKG failed"
        printf '%s\n' "$LAB_HASH" >"$LAB_STAMP"
    fi
fi
flock -u 8
exec 8<&-
# As root, tests (and the Slurm demo) run the venv as other accounts: stop here if they cannot.
if [[ $(id -u) -eq 0 ]] && ! runuser -u nobody -- "$VENV/bin/python" -c 'import jupyterhub' 9>&- 2>/dev/null; then
    die "other Unix accounts cannot run $VENV/bin/python ($(first_private "$VENV/bin/python") is out of their reach):
  the Slurm tests' jobs and switch_user servers run it as test accounts and would fail with
  'Permission denied' (exit 126). Unset NBHUB_VENV (a private checkout then gets $SHARED_VENV),
  or point it at a folder every account can enter, with NBHUB_PYTHON=/usr/bin/python3."
fi
# The tests' homes and hub folders for those accounts are temporary folders.
if [[ $(id -u) -eq 0 && $DEMO -eq 0 ]] && ! others_can -x "${TMPDIR:-/tmp}"; then
    die "other Unix accounts cannot enter TMPDIR=${TMPDIR:-/tmp} ($(first_private "${TMPDIR:-/tmp}") is private):
  the tests make the homes of their test accounts there. Unset TMPDIR or use a folder every
  account can enter."
fi

# --- The tests' own parts (not for --demo): JupyterHub's OpenAPI spec, CHP, oidc-provider ----
SPEC="" CHP="" OIDC_DIR=""
if [[ $DEMO -eq 0 ]]; then
    # --- JupyterHub's OpenAPI spec (the conformance test runs schemathesis against it) -----------
    # From the PyPI sdist of the jupyterhub version of the venv; cached, downloaded once.
    JH_VERSION=$(sed -n 's/^jupyterhub==//p' "$REQ")
    [[ -n $JH_VERSION ]] || die "$REQ pins no jupyterhub==VERSION"
    SPEC="$STATE/jupyterhub-$JH_VERSION-rest-api.yml"
    if [[ ! -s $SPEC ]]; then
        SDIST_DIR="$STATE/sdist"
        SDIST="$SDIST_DIR/jupyterhub-$JH_VERSION.tar.gz"
        if [[ ! -s $SDIST ]]; then
            log "pip download the jupyterhub $JH_VERSION sdist (for its OpenAPI spec; takes a minute or two)"
            "$VENV/bin/python" -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
                -d "$SDIST_DIR" "jupyterhub==$JH_VERSION" >&2 || die "pip download jupyterhub==$JH_VERSION failed (is PyPI reachable?)"
        fi
        tar -xzOf "$SDIST" "jupyterhub-$JH_VERSION/docs/source/_static/rest-api.yml" >"$SPEC.tmp" ||
            die "no docs/source/_static/rest-api.yml in $SDIST"
        mv "$SPEC.tmp" "$SPEC"
        rm -rf "$SDIST_DIR"
    fi
    log "JupyterHub OpenAPI spec: $SPEC"

    # --- configurable-http-proxy (the hub must also work with the real CHP as an external proxy) -
    CHP_DIR=${NBHUB_CHP_DIR:-$STATE/chp}
    CHP="$CHP_DIR/node_modules/.bin/configurable-http-proxy"
    if [[ ! -x $CHP ]]; then
        command -v npm >/dev/null || apt_install nodejs npm
        log "npm install configurable-http-proxy@5.3.0 into $CHP_DIR"
        mkdir -p "$CHP_DIR"
        npm install --prefix "$CHP_DIR" --no-audit --no-fund --loglevel=error configurable-http-proxy@5.3.0 >&2 ||
            die "npm install configurable-http-proxy failed (is the npm registry reachable?)"
    fi
    [[ -x $CHP ]] || die "$CHP missing after npm install"
    log "configurable-http-proxy: $CHP"

    # --- oidc-provider (a real OpenID Connect provider for the generic-oauth sign-in tests) -------
    OIDC_DIR=${NBHUB_OIDC_PROVIDER_DIR:-$STATE/oidc-provider}
    OIDC_VERSION=9.13.3
    if [[ ! -f $OIDC_DIR/node_modules/oidc-provider/package.json ]] ||
        ! grep -q "\"version\": \"$OIDC_VERSION\"" "$OIDC_DIR/node_modules/oidc-provider/package.json"; then
        command -v npm >/dev/null || apt_install nodejs npm
        log "npm install oidc-provider@$OIDC_VERSION into $OIDC_DIR"
        mkdir -p "$OIDC_DIR"
        npm install --prefix "$OIDC_DIR" --no-audit --no-fund --loglevel=error "oidc-provider@$OIDC_VERSION" >&2 ||
            die "npm install oidc-provider failed (is the npm registry reachable?)"
    fi
    [[ -f $OIDC_DIR/node_modules/oidc-provider/package.json ]] || die "oidc-provider missing in $OIDC_DIR after npm install"
    log "oidc-provider: $OIDC_DIR"
fi

# --- The web pages' assets (Bootstrap, Bootstrap Icons), embedded into nbhub by build.rs -------
STATIC="$REPO/crates/nbhub/static"
NPM_STAMP="$STATIC/node_modules/.nbhub-package-lock.sha256"
NPM_HASH=$(sha256sum "$STATIC/package-lock.json" | cut -d' ' -f1)
if [[ -f $NPM_STAMP && $(cat "$NPM_STAMP") == "$NPM_HASH" ]]; then
    log "web assets in $STATIC/node_modules are up to date with package-lock.json"
else
    command -v npm >/dev/null || apt_install nodejs npm
    log "npm ci in $STATIC (Bootstrap, Bootstrap Icons)"
    npm ci --prefix "$STATIC" --no-audit --no-fund --loglevel=error >&2 ||
        die "npm ci in $STATIC failed (is the npm registry reachable?)"
    printf '%s\n' "$NPM_HASH" >"$NPM_STAMP"
fi

# --- Chromium for the page tests (driven through chromedriver) -------------------------------
if [[ $WITH_BROWSER -eq 1 ]]; then
    apt_install chromium chromium-driver
    log "Chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing)"
fi

# --- PostgreSQL -------------------------------------------------------------------------------
DB_URL=""
if [[ $WITH_POSTGRES -eq 1 ]]; then
    DB_URL=$("$REPO/scripts/postgres.sh" start) || die "scripts/postgres.sh start failed"
    log "PostgreSQL: $DB_URL (stop it with scripts/postgres.sh stop)"
fi

# --- Slurm dev cluster (the Slurm spawner's tests; needs root) --------------------------------
SLURM_LINE=""
SSH_CLUSTER_LINES=""
if [[ $DEMO -eq 1 ]]; then
    : # the demo starts the cluster itself, when it uses it
elif [[ $(id -u) -eq 0 ]]; then
    SLURM_LINE=$("$REPO/scripts/slurm-dev-cluster" start) || die "scripts/slurm-dev-cluster start failed"
    log "Slurm dev cluster: $SLURM_LINE (stop it with scripts/slurm-dev-cluster stop)"
    [[ $WITH_ACCOUNTING -eq 1 ]] && apt_install slurmdbd mariadb-server
    # Lmod, for the jobs of an environment made of modules (docs/sessions.md).
    apt_install lmod
    # Charliecloud's ch-run, for the jobs of a container environment (docs/sessions.md).
    apt_install charliecloud-runtime
    # The package test (crates/nbhub/tests/hub/package.rs): rpm (the .rpm's file list),
    # mmdebstrap (a clean Debian 12, cached as a tarball: made once, ~1 minute), and the
    # packaging tools scripts/package.sh installs (cargo-deb, cargo-generate-rpm; once per machine).
    apt_install rpm mmdebstrap zstd
    # minbase with systemd (systemd-analyze) and sudo (visudo for the guide's sudoers rule):
    # the name says what it holds, so a change makes a new one.
    DEBIAN_INCLUDE=systemd,sudo
    DEBIAN_BASE=$STATE/debian12-base-${DEBIAN_INCLUDE//,/-}.tar.zst
    if [[ ! -s $DEBIAN_BASE ]]; then
        log "mmdebstrap a Debian 12 base (minbase + $DEBIAN_INCLUDE) into $DEBIAN_BASE"
        mmdebstrap --quiet --variant=minbase --include="$DEBIAN_INCLUDE" --mode=root bookworm \
            "$DEBIAN_BASE.tmp.tar.zst" http://deb.debian.org/debian >&2 ||
            die "mmdebstrap of Debian 12 failed (is deb.debian.org reachable?)"
        mv "$DEBIAN_BASE.tmp.tar.zst" "$DEBIAN_BASE"
    fi
    log "Debian 12 base for the package test: $DEBIAN_BASE"
    "$REPO/scripts/package.sh" --install-tools || die "scripts/package.sh --install-tools failed"
    # The second cluster, reached only over SSH (idempotent: a running one is kept).
    SSH_CLUSTER_LINES=$("$REPO/scripts/slurm-ssh-cluster" start) || die "scripts/slurm-ssh-cluster start failed"
    log "Slurm cluster behind a login node: $(grep -o 'NBHUB_SSH_CLUSTER_PORT=[0-9]*' <<<"$SSH_CLUSTER_LINES") (stop it with scripts/slurm-ssh-cluster stop)"
else
    log "not root: no Slurm dev cluster (the Slurm spawner's tests will skip)"
fi

# --- Environment for the test runner ----------------------------------------------------------
{
    printf 'export NBHUB_VENV=%q\n' "$VENV"
    if [[ $DEMO -eq 0 ]]; then
        printf 'export NBHUB_CHP=%q\n' "$CHP"
        printf 'export NBHUB_OIDC_PROVIDER_DIR=%q\n' "$OIDC_DIR"
        printf 'export NBHUB_JUPYTERHUB_SPEC=%q\n' "$SPEC"
    fi
    if [[ -n $DB_URL ]]; then
        printf 'export NBHUB_TEST_DATABASE_URL=%q\n' "$DB_URL"
    fi
    if [[ -n $SLURM_LINE ]]; then
        printf '%s\n' "$SLURM_LINE"
    fi
    if [[ -n $SSH_CLUSTER_LINES ]]; then
        printf '%s\n' "$SSH_CLUSTER_LINES"
    fi
    if [[ -n ${DEBIAN_BASE:-} ]]; then
        printf 'export NBHUB_DEBIAN_BASE=%q\n' "$DEBIAN_BASE"
    fi
} >"$STATE/env.tmp"
# Only a full set-up replaces the file the test runner sources: a partial one (the demo's,
# the benchmarks') must not take PostgreSQL out of it.
if [[ $WITH_POSTGRES -eq 1 ]]; then
    mv "$STATE/env.tmp" "$STATE/env"
    log "wrote $STATE/env (source it, or eval this script's output)"
    cat "$STATE/env"
else
    cat "$STATE/env.tmp"
    rm -f "$STATE/env.tmp"
fi
