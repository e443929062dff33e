#!/usr/bin/env bash
# The nbhub demo: a multi-user JupyterLab on http://127.0.0.1:8000 — the hub, its proxy, SQLite,
# the demo login, and (as root) a local Slurm cluster of 4 nodes with the Slurm spawner: every
# user's JupyterLab is a batch job chosen on the spawn form. State lives in ./demo-data; delete
# it to start afresh.
#
#   scripts/demo.sh                          build (release) and run until Ctrl-C
#   NBHUB_DEMO_SPAWNER=local scripts/demo.sh servers as local processes instead of Slurm jobs
#   NBHUB_DEMO_PORT=9000 scripts/demo.sh     another public port (the hub and the proxy API use
#                                            the two ports after it)
#
# Slurm runs jobs as Unix accounts, so the Slurm demo signs in only the demo users alice, bob
# and admin, and runs their jobs as the accounts nbhub-demo-alice, nbhub-demo-bob and
# nbhub-demo-admin, which it creates (homes under /var/lib/nbhub-demo): no existing account of
# the machine is ever used. `scripts/slurm-dev-cluster stop` stops the cluster afterwards.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PORT=${NBHUB_DEMO_PORT:-8000}
DATA="$REPO/demo-data"
SPAWNER=${NBHUB_DEMO_SPAWNER:-slurm}
DEMO_USERS=(alice bob admin)
DEMO_HOMES=/var/lib/nbhub-demo/homes

say() { printf '==> %s\n' "$*" >&2; }
command -v cargo >/dev/null || { echo "demo.sh: cargo is needed to build nbhub" >&2; exit 1; }
case $SPAWNER in
slurm | local) ;;
*) echo "demo.sh: NBHUB_DEMO_SPAWNER must be slurm or local, not '$SPAWNER'" >&2; exit 2 ;;
esac
if [[ $SPAWNER == slurm && $(id -u) -ne 0 ]]; then
    say "the Slurm demo needs root (it starts Slurm and creates the demo accounts); running the local spawner instead"
    SPAWNER=local
fi

# The real jupyterhub-singleuser and JupyterLab. Slurm jobs run as the demo accounts, which must
# be able to run the venv: when the repository is private (under /root, say), the venv goes to a
# folder every account can read.
if [[ $SPAWNER == slurm && -z ${NBHUB_VENV:-} ]] && ! runuser -u nobody -- test -x "$REPO/scripts"; then
    export NBHUB_VENV=/opt/nbhub-demo/venv
    mkdir -p /opt/nbhub-demo && chmod 755 /opt/nbhub-demo
fi
say "checking the Python venv with JupyterLab (scripts/test-env.sh --no-postgres --no-browser --no-accounting)"
env_lines=$(scripts/test-env.sh --no-postgres --no-browser --no-accounting) || { echo "demo.sh: scripts/test-env.sh failed" >&2; exit 1; }
eval "$env_lines"

say "building nbhub and nbhub-proxy (release; the first build takes a few minutes)"
cargo build --release --locked -p nbhub -p nbhub-proxy

mkdir -p "$DATA"
CONFIG="$DATA/nbhub.toml"
ARGS='[]'
if [[ $SPAWNER == slurm ]]; then
    say "starting the local Slurm cluster (scripts/slurm-dev-cluster start)"
    slurm_env=$(scripts/slurm-dev-cluster start) || { echo "demo.sh: scripts/slurm-dev-cluster start failed" >&2; exit 1; }
    eval "$slurm_env"
    mkdir -p "$DEMO_HOMES" && chmod 755 /var/lib/nbhub-demo "$DEMO_HOMES"
    for u in "${DEMO_USERS[@]}"; do
        account=nbhub-demo-$u
        if ! id "$account" >/dev/null 2>&1; then
            say "creating the demo account $account"
            useradd -m -d "$DEMO_HOMES/$u" -s /bin/bash -c "nbhub demo user $u" "$account"
        fi
    done
    SPAWNER_KEYS="kind = \"slurm\"
# Hub user alice runs her jobs as the Unix account nbhub-demo-alice.
unix_user = \"nbhub-demo-{username}\""
    KIND_SECTION="[slurm]
slurm_conf = \"$SLURM_CONF\"
submit_as = \"setuid\"
poll_interval = 2"
    WHO="allowed_users = [\"alice\", \"bob\"]
allow_all = false"
    SIGN_IN='as alice or bob (or admin, an administrator) with the password "demo"; pick a
  partition, nodes and a run time, and your JupyterLab starts as a Slurm job on a compute node'
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

  nbhub demo ($SPAWNER spawner): open http://127.0.0.1:$PORT/ and sign in
  $SIGN_IN.
  API: target/release/nbhub token --config $CONFIG admin   prints an admin token.
  Ctrl-C stops the hub, the proxy and the servers.

MSG
exec "$REPO/target/release/nbhub" --config "$CONFIG"
