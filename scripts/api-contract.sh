#!/usr/bin/env bash
# The HTTP contract checked from outside, as a client's tools would: schemathesis (pinned,
# from PyPI) reads the OpenAPI document the API serves, generates requests for every
# operation (examples, boundary values, random valid and invalid bodies) and checks every
# answer: no 5xx, the status code, content type and body as the document says.
#
# Runs `offload up` (all four services) on a fresh database, on a free loopback port, with
# one dataset to export and import. Bounded: at most ST_MAX_EXAMPLES cases per operation and
# phase (default 100), and ST_TIMEOUT seconds in all (default 600). The stateful phase
# follows the document's links (submit a job, then read, cancel, retry it; create a
# schedule or upload, then use it). Part of scripts/test.sh; on its own:
#   scripts/ensure-postgres.sh && scripts/api-contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0
venv=tools/schemathesis/.venv
# (Captured first: `grep -q` closing the pipe early fails the pipeline under pipefail.)
have_st=$("$venv/bin/st" --version 2>/dev/null || true)
have_validator=$("$venv/bin/pip" show openapi-spec-validator 2>/dev/null || true)
if [[ "$have_st" != *"$ST_VERSION"* || "$have_validator" != *"Version: $VALIDATOR_VERSION"* ]]; then
  echo "api-contract: installing schemathesis $ST_VERSION and openapi-spec-validator $VALIDATOR_VERSION from PyPI" >&2
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    echo "api-contract: installing python3-venv from Debian's packages" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$ST_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi

cargo build --locked --quiet -p jobs-cli --bin offload
offload=${CARGO_TARGET_DIR:-target}/debug/offload

# The server the tests use (OFFLOAD__DATABASE__URL, as for cargo test), with a database
# of this run's own.
server=${OFFLOAD__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/offload}
db="offload_api_contract_$$"
with_db() { # URL with its database name replaced by $1
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$server" "$1"
}
admin=$(with_db postgres)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="contract-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; fi
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

get() { # GET $1; the body on stdout; fails unless 2xx
  python3 -c 'import sys, urllib.request as r; sys.stdout.buffer.write(r.urlopen(sys.argv[1], timeout=5).read())' "$1"
}

psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
psql -q "$(with_db "$db")" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE SCHEMA contract;
CREATE TABLE contract.expenses (
  id bigint PRIMARY KEY,
  employee text NOT NULL,
  amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
  status text NOT NULL,
  approved_at timestamptz
);
INSERT INTO contract.expenses
SELECT i, 'employee ' || i, i * 1.25, CASE WHEN i % 3 = 0 THEN 'approved' ELSE 'pending' END,
       CASE WHEN i % 3 = 0 THEN timestamptz '2026-01-01' + i * interval '1 hour' END
FROM generate_series(1, 2000) AS i;
SQL

cat > "$work/offload.toml" <<TOML
[datasets.expenses]
table = "contract.expenses"
key = "id"
columns = ["id", "employee", "amount", "status", "approved_at"]
filterable = ["status", "approved_at", "amount"]
TOML

export OFFLOAD__DATABASE__URL="$(with_db "$db")"
export OFFLOAD__API__LISTEN="127.0.0.1:$port"
export OFFLOAD__AUTH__DEV_API_KEY="$key"
export OFFLOAD__BLOB__BACKEND=local
export OFFLOAD__BLOB__ROOT="$work/blobs"
export OFFLOAD__TELEMETRY__LOG_FILTER=warn
"$offload" --config "$work/offload.toml" migrate >/dev/null
"$offload" --config "$work/offload.toml" up >"$work/offload.log" 2>&1 &
pid=$!
ready=""
for _ in $(seq 1 300); do
  if get "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$work/offload.log" >&2; exit 1; }
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "api-contract: offload up did not become ready within 60 s" >&2
  cat "$work/offload.log" >&2
  exit 1
fi

# The committed document is valid OpenAPI 3.1, and the served one is the same (the
# built-in kinds).
"$venv/bin/openapi-spec-validator" docs/openapi.json
get "http://127.0.0.1:$port/openapi.json" | python3 -c '
import json, sys
served = json.load(sys.stdin)
committed = json.load(open("docs/openapi.json"))
if served != committed:
    sys.exit("api-contract: GET /openapi.json differs from docs/openapi.json")
'

status=0
timeout "${ST_TIMEOUT:-600}" "$venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${ST_MAX_EXAMPLES:-100}" \
  --request-timeout 10 \
  --workers 2 \
  --seed 20261204 \
  --max-redirects 0 \
  --suppress-health-check all \
  --report junit --report-dir "target/api-contract" \
  || status=$?
if grep -q "panicked" "$work/offload.log"; then
  echo "api-contract: the services panicked during the run:" >&2
  grep -B2 -A8 "panicked" "$work/offload.log" >&2
  status=1
fi
exit "$status"
