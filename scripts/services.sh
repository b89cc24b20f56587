#!/usr/bin/env bash
# Make sure Postgres and Redis answer on 127.0.0.1; install or start them when they do not.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

wait_for() {  # command, what
  for _ in $(seq 1 100); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up" >&2
  return 1
}

if ! pg_isready -h "$PGHOST" -p "$PGPORT" -q; then
  if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  else
    # No cluster: make one in the project's var folder, owned by the postgres user (never root).
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    data="$(pwd)/var/pgdata"
    mkdir -p "$data" && chown postgres "$data"
    [ -f "$data/PG_VERSION" ] || su postgres -c "$bindir/initdb -D '$data' -A trust -U postgres" >/dev/null
    su postgres -c "$bindir/pg_ctl -D '$data' -o '-p $PGPORT -k /tmp' -l '$data/log' start" >/dev/null
  fi
  wait_for "pg_isready -h $PGHOST -p $PGPORT -q" "Postgres"
fi
echo "postgres: $(pg_isready -h "$PGHOST" -p "$PGPORT")"

if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/ccgsc-redis.log
  wait_for "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping" "Redis"
fi
echo "redis: $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping)"
