#!/usr/bin/env bash
# Makes sure a Postgres server answers on the configured host and port (default
# 127.0.0.1:5432), starting the machine's cluster, or installing one from Debian's packages,
# when it does not. Idempotent; prints one line on success.
set -euo pipefail

host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}

ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "ensure-postgres: installing the PostgreSQL client tools" >&2
  apt-get install -y -q postgresql-client >/dev/null
fi

if ! ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-postgres: no local cluster; installing PostgreSQL from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "ensure-postgres: starting cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    ready && break
    sleep 0.5
  done
fi

if ! ready; then
  echo "ensure-postgres: Postgres does not answer on $host:$port" >&2
  exit 1
fi
echo "ensure-postgres: Postgres answers on $host:$port"
