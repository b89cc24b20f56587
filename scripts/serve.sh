#!/usr/bin/env bash
# Run the ASGI server with limits sized for model frames and many idle worker sockets.
# Usage: scripts/serve.sh [HOST] [PORT]   (settings come from the environment, see README)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "${PYTHON:-.venv/bin/python}" -m daphne -b "${1:-127.0.0.1}" -p "${2:-8000}" -v 0 \
  --websocket_timeout -1 --ping-interval 20 --ping-timeout 30 \
  --websocket-max-message-size 8388608 --websocket-max-frame-size 8388608 \
  ccgsc.asgi:application
