#!/usr/bin/env bash
# The nbhub demo: a multi-user JupyterLab on http://127.0.0.1:8000 — the hub, its proxy and the
# local spawner, SQLite, and the demo login (any user name, password "demo"). State lives in
# ./demo-data; delete it to start afresh.
#
#   scripts/demo.sh                       build (release) and run until Ctrl-C
#   NBHUB_DEMO_PORT=9000 scripts/demo.sh  another public port (the hub and the proxy API use the
#                                         two ports after it)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PORT=${NBHUB_DEMO_PORT:-8000}
DATA="$REPO/demo-data"

command -v cargo >/dev/null || { echo "demo.sh: cargo is needed to build nbhub" >&2; exit 1; }

# The real jupyterhub-singleuser and JupyterLab, in the project's venv (installed when missing).
echo "==> checking the Python venv with JupyterLab (scripts/test-env.sh --no-postgres --no-browser)" >&2
env_lines=$(scripts/test-env.sh --no-postgres --no-browser) || { echo "demo.sh: scripts/test-env.sh failed" >&2; exit 1; }
eval "$env_lines"

echo "==> building nbhub and nbhub-proxy (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p nbhub -p nbhub-proxy

mkdir -p "$DATA"
CONFIG="$DATA/nbhub.toml"
if [[ ! -f $CONFIG ]]; then
    # Servers run as the hub's own user here (switch_user = false), each in demo-data/homes;
    # jupyter_server refuses root unless told, so a root demo passes --allow-root.
    ARGS='[]'
    [[ $(id -u) -eq 0 ]] && ARGS='["--allow-root"]'
    cat >"$CONFIG" <<TOML
# Demo configuration written by scripts/demo.sh. \`nbhub generate-config\` shows every key.
[hub]
bind_url = "http://127.0.0.1:$PORT"
hub_bind_url = "http://127.0.0.1:$((PORT + 1))"
data_dir = "$DATA"
allow_named_servers = true
# A demo tidies up after itself: Ctrl-C stops the users' servers too.
cleanup_servers = true

[authenticator]
kind = "dummy"
password = "demo"
allow_all = true
admin_users = ["admin"]

[spawner]
cmd = ["$NBHUB_VENV/bin/jupyterhub-singleuser"]
args = $ARGS
default_url = "/lab"
environment = { PATH = "$NBHUB_VENV/bin:/usr/local/bin:/usr/bin:/bin" }

[local]
switch_user = false

[proxy]
api_url = "http://127.0.0.1:$((PORT + 2))"
# Stop the proxy with the demo (a production hub leaves it running across restarts).
cleanup = true
TOML
fi

cat >&2 <<MSG

  nbhub demo: open http://127.0.0.1:$PORT/ and sign in with any user name and the password
  "demo" (user "admin" is an administrator). Your JupyterLab starts on the spot.
  API: target/release/nbhub token --config $CONFIG admin   prints an admin token.
  Ctrl-C stops the hub, the proxy and the servers.

MSG
exec "$REPO/target/release/nbhub" --config "$CONFIG"
