#!/bin/bash
# Rebuilds the prebuilt JupyterLab extension in nbhub_jupyterlab/labextension (committed, so
# that `pip install ./jupyterlab/nbhub-jupyterlab` needs no node). Needs node and npm, and a
# Python with JupyterLab 4 (default: $NBHUB_VENV, else the python3 on PATH): its core
# packages decide which shared modules the extension takes from JupyterLab.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-${NBHUB_VENV:+$NBHUB_VENV/bin/python}}
PYTHON=${PYTHON:-python3}
STAGING=$("$PYTHON" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
[[ -f $STAGING/package.json ]] || { echo "build.sh: no JupyterLab 4 in $PYTHON" >&2; exit 1; }
npm install --no-audit --no-fund
rm -rf lib nbhub_jupyterlab/labextension tsconfig.tsbuildinfo
npx tsc
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$STAGING" .
