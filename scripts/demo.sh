#!/usr/bin/env bash
# The nbhub demo: a multi-user JupyterLab on http://127.0.0.1:8000 — the hub, its proxy, SQLite,
# the demo login, and (as root) two Slurm systems on one spawn form: a local cluster of 4 nodes
# the hub is a client of, and a cluster of 2 nodes in a network namespace of its own that the
# hub reaches only over SSH through its login node (scripts/slurm-ssh-cluster), its servers
# through tunnels. Every user's JupyterLab is a batch job chosen on the spawn form. State lives
# in ./demo-data; delete it to start afresh. Everything listens on 127.0.0.1 only.
#
#   scripts/demo.sh                          build (cargo profile `demo`) and run until Ctrl-C
#   scripts/demo.sh --clean                  stop the Slurm clusters, remove the demo accounts
#                                            and /var/lib/nbhub-demo (each named as it goes)
#   NBHUB_DEMO_SPAWNER=local scripts/demo.sh servers as local processes instead of Slurm jobs
#   NBHUB_DEMO_PORT=9000 scripts/demo.sh     another public port (default 8000; the hub and the
#                                            proxy's API take the two ports after it)
#
# It installs only what it runs (scripts/test-env.sh --demo): the Debian packages the build
# needs, a Python venv with jupyterhub and jupyterlab, the web pages' npm packages.
# Slurm runs jobs as Unix accounts, so the Slurm demo signs in only the demo users alice, bob
# and admin, and runs their jobs as the accounts nbhub-demo-alice, nbhub-demo-bob and
# nbhub-demo-admin, which it creates (homes under /var/lib/nbhub-demo): no existing account of
# the machine is ever used. At exit it says what is still running and how to remove it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PORT=${NBHUB_DEMO_PORT:-8000}
DATA="$REPO/demo-data"
SPAWNER=${NBHUB_DEMO_SPAWNER:-slurm}
DEMO_USERS=(alice bob admin)
# The hub's own account on the SSH system, for the one squeue per poll of every job there.
DEMO_TRACKER=nbhub-demo-hub
DEMO_ROOT=/var/lib/nbhub-demo
DEMO_HOMES=$DEMO_ROOT/homes
# Where the cargo profile `demo` puts the binaries.
BIN=${CARGO_TARGET_DIR:-$REPO/target}/demo
# The first build of the `demo` profile from a fresh clone on a quiet 2-core machine: estimated
# from its CPU time (see profile.demo in Cargo.toml).
FIRST_BUILD_MINUTES=4

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}
accounts() {
    local u
    for u in "${DEMO_USERS[@]}"; do
        id "nbhub-demo-$u" >/dev/null 2>&1 && printf '%s\n' "nbhub-demo-$u"
    done
    id "$DEMO_TRACKER" >/dev/null 2>&1 && printf '%s\n' "$DEMO_TRACKER"
    return 0
}
# The proxy of an earlier run, when it still runs.
proxy_pid() {
    local pid
    pid=$(cat "$DATA/nbhub-proxy.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && $(ps -o comm= -p "$pid" 2>/dev/null) == nbhub-proxy ]] && printf '%s' "$pid"
}
# The hub of this demo (this checkout's demo-data), when it runs.
hub_pid() {
    local p
    for p in /proc/[0-9]*; do
        if [[ $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) == *"/nbhub --config $DATA/nbhub.toml "* ]]; then
            printf '%s' "${p#/proc/}"
            return 0
        fi
    done
    return 1
}
# "slurmctld on 127.0.0.1:26817, slurmd on 127.0.0.1:26821 127.0.0.1:26822 ...", empty when
# the cluster is down.
cluster_listening() {
    [[ $(id -u) -eq 0 ]] || return 0
    scripts/slurm-dev-cluster listening 2>/dev/null | awk '
        !($2 in at) { order[++n] = $2 }
        { at[$2] = at[$2] " " $1 }
        END { for (i = 1; i <= n; i++) printf "%s%s on%s", (i > 1 ? ", " : ""), order[i], at[order[i]] }'
}

# --- scripts/demo.sh --clean ---------------------------------------------------------------
clean() {
    [[ $(id -u) -eq 0 ]] || die "--clean needs root (it stops the Slurm cluster and removes the demo accounts)"
    local pid
    if pid=$(hub_pid); then
        die "the demo still runs (its hub is pid $pid): stop it with Ctrl-C first"
    fi
    if pid=$(proxy_pid); then
        kill -TERM "$pid"
        say "stopped nbhub-proxy (pid $pid), left running by a hub that did not stop cleanly"
    fi
    local listening
    listening=$(cluster_listening)
    scripts/slurm-dev-cluster stop 2>/dev/null || die "scripts/slurm-dev-cluster stop failed"
    if [[ -n $listening ]]; then
        say "stopped the Slurm dev cluster and cancelled its jobs ($listening; munged)"
    else
        say "the Slurm dev cluster was not running"
    fi
    if scripts/slurm-ssh-cluster status >/dev/null 2>&1; then
        scripts/slurm-ssh-cluster stop >/dev/null 2>&1 || die "scripts/slurm-ssh-cluster stop failed"
        say "stopped the SSH cluster (its namespace, login node and daemons) and cancelled its jobs"
    fi
    local account
    for account in $(accounts); do
        # Processes left by a job (the cluster's stop kills its jobs' steps) would make userdel fail.
        userdel -r "$account" 2>/dev/null || userdel "$account" || die "userdel $account failed"
        say "removed the account $account"
    done
    if [[ -d $DEMO_ROOT ]]; then
        rm -rf "$DEMO_ROOT"
        say "removed $DEMO_ROOT (the demo accounts' homes)"
    fi
    # An earlier version of the demo kept its venv here.
    if [[ -d /opt/nbhub-demo ]]; then
        rm -rf /opt/nbhub-demo
        say "removed /opt/nbhub-demo (the venv of an earlier version of the demo)"
    fi
    local venv=$REPO/.venv
    [[ -d $venv ]] || venv=/var/lib/nbhub-test/venv
    say "kept: $DATA (the demo hub's database: rm -rf it to start afresh), the Python venv $venv (the tests use it too) and the build in target/"
}

case ${1:-} in
"") ;;
--clean)
    clean
    exit 0
    ;;
-h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 0
    ;;
*) die "unknown argument '$1' (usage: $0 [--clean])" ;;
esac

command -v cargo >/dev/null || die "cargo is needed to build nbhub"
case $SPAWNER in
slurm | local) ;;
*) die "NBHUB_DEMO_SPAWNER must be slurm or local, not '$SPAWNER'" ;;
esac
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT <= 65533)) ||
    die "NBHUB_DEMO_PORT must be a port number up to 65533 (it and the two after it are used), not '$PORT'"
if [[ $SPAWNER == slurm && $(id -u) -ne 0 ]]; then
    say "the Slurm demo needs root (it starts Slurm and creates the demo accounts); running the local spawner instead"
    SPAWNER=local
fi
if pid=$(hub_pid); then
    die "the demo already runs here (its hub is pid $pid)"
fi

STARTED=$SECONDS
# What is left when the demo ends, and how to remove it.
at_exit() {
    local status=$? listening="" left=""
    trap - EXIT INT TERM
    [[ -n ${REPORT:-} ]] || exit "$status"
    printf '\n' >&2
    say "the demo has stopped"
    if pid=$(proxy_pid); then
        say "still running: nbhub-proxy (pid $pid) on 127.0.0.1:$PORT (scripts/demo.sh takes it over, --clean stops it)"
    fi
    # The local demo starts no cluster and makes no account: what runs there is not its own.
    if [[ $SPAWNER == slurm ]]; then
        listening=$(cluster_listening)
        left=$(accounts | paste -sd' ')
    fi
    [[ -n $listening ]] && say "still running: the Slurm dev cluster ($listening; munged)"
    if [[ $SPAWNER == slurm ]] && scripts/slurm-ssh-cluster status >/dev/null 2>&1; then
        listening=1
        say "still running: the SSH cluster (namespace ${NBHUB_SSH_CLUSTER_NETNS:-nbhub-ssh}, its login node on 127.0.0.1:${NBHUB_SSH_CLUSTER_PORT:-26930})"
    fi
    [[ -n $left ]] && say "still on this machine: the accounts $left, their homes in $DEMO_HOMES"
    if [[ -n $listening || -n $left ]]; then
        say "scripts/demo.sh --clean stops the clusters and removes the accounts and $DEMO_ROOT"
    fi
    say "scripts/demo.sh starts the demo again (its users and tokens are kept in $DATA)"
    exit "$status"
}
trap at_exit EXIT

# --- What the demo runs -----------------------------------------------------------------------
# The real jupyterhub-singleuser and JupyterLab (only those), and the web pages' npm packages.
# Slurm jobs run as the demo accounts: when other accounts cannot enter the checkout (under
# /root, say), test-env.sh puts the venv where they can run it.
say "the Python venv with jupyterhub-singleuser and JupyterLab, the web pages' npm packages (scripts/test-env.sh --demo)"
env_lines=$(scripts/test-env.sh --demo) || die "scripts/test-env.sh --demo failed"
eval "$env_lines"
say "venv and web assets ready ($((SECONDS - STARTED)) s)"

if [[ -x $BIN/nbhub && -x $BIN/nbhub-proxy ]]; then
    say "building nbhub and nbhub-proxy (cargo profile demo): built before, so seconds unless the sources changed"
else
    say "building nbhub and nbhub-proxy (cargo profile demo): the first build takes about $FIRST_BUILD_MINUTES minutes on 2 cores (this machine has $(nproc))"
fi
BUILD_STARTED=$SECONDS
cargo build --profile demo --locked -p nbhub -p nbhub-proxy
say "built in $((SECONDS - BUILD_STARTED)) s"

# From here on, the exit says what is left running.
REPORT=1
mkdir -p "$DATA"
CONFIG="$DATA/nbhub.toml"
ARGS='[]'
if [[ $SPAWNER == slurm ]]; then
    say "starting the local Slurm cluster on 127.0.0.1 (scripts/slurm-dev-cluster start)"
    slurm_env=$(scripts/slurm-dev-cluster start) || die "scripts/slurm-dev-cluster start failed"
    eval "$slurm_env"
    say "starting the SSH cluster: its own network namespace, reached only through its login node (scripts/slurm-ssh-cluster start)"
    ssh_env=$(scripts/slurm-ssh-cluster start) || die "scripts/slurm-ssh-cluster start failed"
    eval "$ssh_env"
    mkdir -p "$DEMO_HOMES" && chmod 755 "$DEMO_ROOT" "$DEMO_HOMES"
    for u in "${DEMO_USERS[@]}" "${DEMO_TRACKER#nbhub-demo-}"; do
        account=nbhub-demo-$u
        if ! id "$account" >/dev/null 2>&1; then
            say "creating the demo account $account"
            useradd -m -d "$DEMO_HOMES/$u" -s /bin/bash -c "nbhub demo user $u" "$account"
        fi
    done
    SPAWNER_KEYS="kind = \"slurm\"
# Hub user alice runs her jobs as the Unix account nbhub-demo-alice.
unix_user = \"nbhub-demo-{username}\""
    KIND_SECTION="# Two systems on one form. The first: the hub's machine is a Slurm client of it.
[[systems]]
name = \"local\"
title = \"Local cluster\"
description = \"4 nodes: batch, devel and gpu (fake GPUs); the hub submits here directly\"
transport = \"local\"
slurm_conf = \"$SLURM_CONF\"
submit_as = \"setuid\"
poll_interval = 2
# The nodes are this machine: the servers listen on loopback only.
bind_ip = \"127.0.0.1\"

# The second: reached only over SSH through its login node; the hub has no Slurm configuration
# for it and no route to its nodes, so it reaches the servers through tunnels.
[[systems]]
name = \"remote\"
title = \"Remote cluster (over SSH)\"
description = \"2 nodes behind a login node: batch and devel\"
transport = \"ssh\"
reach = \"tunnel\"
poll_interval = 2
bind_ip = \"127.0.0.1\"

[systems.ssh]
login_hosts = [\"$NBHUB_SSH_CLUSTER_HOST:$NBHUB_SSH_CLUSTER_PORT\"]
known_hosts = \"$NBHUB_SSH_CLUSTER_KNOWN_HOSTS\"
# The login node trusts this CA: the hub signs a short-lived certificate per user.
certificate_authority = \"$NBHUB_SSH_CLUSTER_CA_KEY\"
tracking_user = \"$DEMO_TRACKER\""
    WHO="allowed_users = [\"alice\", \"bob\"]
allow_all = false"
    SIGN_IN='as alice or bob (or admin, an administrator) with the password "demo"; pick a
  system (the local cluster, or the one behind an SSH login node), a partition, nodes and a run
  time, and your JupyterLab starts as a Slurm job on a compute node there'
    LOGIN_HINT='Demo: sign in as <b>alice</b> or <b>bob</b> (or <b>admin</b>, an administrator) with the password <b>demo</b>. Your JupyterLab runs as a Slurm job of the Unix account nbhub-demo-<i>name</i> on the demo cluster.'
else
    # Servers run as the hub's own user here (switch_user = false), each in demo-data/homes;
    # jupyter_server refuses root unless told, so a root demo passes --allow-root.
    [[ $(id -u) -eq 0 ]] && ARGS='["--allow-root"]'
    SPAWNER_KEYS='kind = "local"'
    KIND_SECTION='[local]
switch_user = false'
    WHO='allow_all = true'
    SIGN_IN='with any user name and the password "demo" (user "admin" is an administrator);
  your JupyterLab starts on the spot'
    LOGIN_HINT='Demo: sign in with any user name and the password <b>demo</b> (<b>admin</b> is an administrator).'
fi

# Written anew each run (the database in demo-data is kept).
cat >"$CONFIG" <<TOML
# Demo configuration written by scripts/demo.sh. \`nbhub generate-config\` shows every key.
[hub]
bind_url = "http://127.0.0.1:$PORT"
hub_bind_url = "http://127.0.0.1:$((PORT + 1))"
data_dir = "$DATA"
allow_named_servers = true
# A demo tidies up after itself: Ctrl-C stops the users' servers too.
cleanup_servers = true
# The login page says how to sign in (JupyterHub's announcement_login).
template_vars = { announcement_login = '$LOGIN_HINT' }

[authenticator]
kind = "dummy"
password = "demo"
$WHO
admin_users = ["admin"]

[spawner]
$SPAWNER_KEYS
cmd = ["$NBHUB_VENV/bin/jupyterhub-singleuser"]
args = $ARGS
default_url = "/lab"
environment = { PATH = "$NBHUB_VENV/bin:/usr/local/bin:/usr/bin:/bin" }

$KIND_SECTION

[proxy]
api_url = "http://127.0.0.1:$((PORT + 2))"
# Stop the proxy with the demo (a production hub leaves it running across restarts).
cleanup = true
TOML

cat >&2 <<MSG

  nbhub demo ($SPAWNER spawner), ready $((SECONDS - STARTED)) s after the command:
  open http://127.0.0.1:$PORT/ and sign in
  $SIGN_IN.
  API: $BIN/nbhub token --config $CONFIG admin   prints an admin token.
  Ctrl-C stops the hub, the proxy and the servers.

MSG
# The hub stops its users' servers and its proxy on SIGINT or SIGTERM; this script waits for
# that, then says what is left. Ctrl-C reaches the hub from the terminal and from the trap (a
# second SIGINT is harmless); a SIGTERM to this script is passed on.
"$BIN/nbhub" --config "$CONFIG" &
HUB=$!
trap 'kill -INT "$HUB" 2>/dev/null || true' INT
trap 'kill -TERM "$HUB" 2>/dev/null || true' TERM
status=0
while :; do
    wait "$HUB" && status=0 || status=$?
    # wait also returns when a trap ran: go on waiting while the hub still stops.
    kill -0 "$HUB" 2>/dev/null || break
done
exit "$status"
