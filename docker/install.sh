#!/bin/sh
# Install this checkout, and what it depends on, into a fresh virtualenv at $1.
#
# The Dockerfile's build stage runs exactly this script; .ci/run runs it too
# (.ci/check-docker-install), since there is no Docker engine to build the image there.
# Usage: docker/install.sh VENV [SOURCE_DIR]
set -eu
venv=$1
src=${2:-.}

python3 -m venv "$venv"
# With the postgresql extra (psycopg and its bundled libpq, ~10 MB): one image serves both
# a state volume and a PostgreSQL state (compose.postgresql.yaml).
"$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --no-compile \
    "$src[postgresql]"
# The final image has no package manager in the app's venv: nothing there installs code.
"$venv/bin/python" -m pip uninstall --yes --quiet pip
# Bytecode ahead of time: the container runs with a read-only root file system.
"$venv/bin/python" -m compileall -q -j 0 "$venv/lib"
