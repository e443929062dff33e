#!/usr/bin/env bash
# The nbhub demo: a hub on http://127.0.0.1:8000 with SQLite and the demo login (any user name,
# password "demo"). State lives in ./demo-data; delete it to start afresh.
#
#   scripts/demo.sh            build (release) and run until Ctrl-C
#   NBHUB_DEMO_PORT=9000 scripts/demo.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PORT=${NBHUB_DEMO_PORT:-8000}
DATA="$REPO/demo-data"

command -v cargo >/dev/null || { echo "demo.sh: cargo is needed to build nbhub" >&2; exit 1; }
if ! dpkg-query -W -f='${Status}' libpam0g-dev 2>/dev/null | grep -q 'install ok installed'; then
    echo "==> installing libpam0g-dev (the PAM authenticator links libpam)" >&2
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpam0g-dev >&2
fi

echo "==> building nbhub (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p nbhub

mkdir -p "$DATA"
if [[ ! -f $DATA/nbhub.toml ]]; then
    cat >"$DATA/nbhub.toml" <<TOML
# Demo configuration written by scripts/demo.sh. See \`nbhub generate-config\` for every key.
[hub]
# Until the proxy joins the demo, the hub itself listens on the public port.
hub_bind_url = "http://127.0.0.1:$PORT"
bind_url = "http://127.0.0.1:$PORT"
data_dir = "$DATA"

[authenticator]
kind = "dummy"
password = "demo"
allow_all = true
admin_users = ["admin"]
TOML
fi

cat >&2 <<MSG

  nbhub demo: open http://127.0.0.1:$PORT/hub/ and sign in with any user name and the
  password "demo" (user "admin" is an administrator). Ctrl-C stops it.
  API: target/release/nbhub token --config $DATA/nbhub.toml admin   prints an admin token.

MSG
exec "$REPO/target/release/nbhub" --config "$DATA/nbhub.toml"
