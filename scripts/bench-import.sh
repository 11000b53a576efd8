#!/usr/bin/env bash
# The import benchmark: the CSV of N rows (default 5,000,000) of the demo dataset, as the
# export writes it (`offload demo`), loaded into two empty tables with a primary key, in the
# same run:
#   - `psql \copy … from … csv header`;
#   - the whole pipeline: `offload import` (upload through the API, then the import job —
#     planner, workers upserting by key, finalizer) against `offload up` (all services in
#     one process, default settings).
# The two tables are then compared with EXCEPT. Then the same file is imported once more into
# the now full table: every row goes down the upsert path and is found unchanged. Prints a
# Markdown table. Peak RSS is that of the whole `offload up` process (API, enqueuer, worker,
# notifier): an upper bound for the worker's.
#
#   ROWS=5000000 scripts/bench-import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-5000000}
url=${OFFLOAD__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/offload}
export OFFLOAD__DATABASE__URL=$url
port=${PORT:-18089}
out=$(mktemp -d)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

scripts/ensure-postgres.sh >/dev/null
cargo build --release -q -p jobs-cli
bin=${CARGO_TARGET_DIR:-target}/release/offload

echo "exporting $rows rows of the demo dataset to get the file …" >&2
$bin demo --rows "$rows" > "$out/demo.txt"
file=$(sed -n 's/^  file: *//p' "$out/demo.txt")
bytes=$(stat -c %s "$file")
cols="id, employee, cost_center, amount, currency, status, approved_at, note"

sql() { psql "$url" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
fresh() {
  sql "DROP TABLE IF EXISTS offload_demo.$1; CREATE TABLE offload_demo.$1 (LIKE offload_demo.expenses INCLUDING ALL)"
}
now() { date +%s.%N; }

psql_copy() {
  fresh expenses_psql
  sql "CHECKPOINT"
  local t0 t1
  t0=$(now)
  psql "$url" -q -v ON_ERROR_STOP=1 -c "\\copy offload_demo.expenses_psql ($cols) from '$file' csv header"
  t1=$(now)
  echo "$t1 - $t0" | bc
}

cat > "$out/offload.toml" <<EOF
[api]
listen = "127.0.0.1:$port"
[telemetry]
log_filter = "warn"
[datasets.expenses_import]
table = "offload_demo.expenses_import"
key = "id"
columns = ["id", "employee", "cost_center", "amount", "currency", "status", "approved_at", "note"]
EOF

psql1=$(psql_copy)

fresh expenses_import
/usr/bin/time -f '%M' -o "$out/rss" $bin --config "$out/offload.toml" up > "$out/up.log" 2>&1 &
time_pid=$!
for _ in $(seq 50); do
  up_pid=$(pgrep -P "$time_pid" || true)
  [ -n "$up_pid" ] && break
  sleep 0.1
done
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
  sleep 0.2
done
sql "CHECKPOINT"
t0=$(now)
$bin --config "$out/offload.toml" --api-url "http://127.0.0.1:$port" import "$file" \
  --dataset expenses_import > "$out/job.json" 2> "$out/import.err"
t1=$(now)
total=$(echo "$t1 - $t0" | bc)
t0=$(now)
$bin --config "$out/offload.toml" --api-url "http://127.0.0.1:$port" import "$file" \
  --dataset expenses_import > "$out/again.json" 2> "$out/again.err"
t1=$(now)
again=$(echo "$t1 - $t0" | bc)
kill -INT "$up_pid"; wait "$time_pid" || true; up_pid=
rss_kb=$(cat "$out/rss")

psql2=$(psql_copy)

job_secs=$(python3 -c "
import json, datetime as d
j = json.load(open('$out/job.json'))
p = lambda s: d.datetime.fromisoformat(s.replace('Z', '+00:00'))
print((p(j['finished_at']) - p(j['created_at'])).total_seconds())")
plan_secs=$(python3 -c "
import json, datetime as d
j = json.load(open('$out/job.json'))
p = lambda s: d.datetime.fromisoformat(s.replace('Z', '+00:00'))
print((p(j['started_at']) - p(j['created_at'])).total_seconds())")
items=$(python3 -c "import json; print(json.load(open('$out/job.json'))['progress']['total'])")
inserted=$(python3 -c "import json; print(json.load(open('$out/job.json'))['result']['inserted'])")
unchanged=$(python3 -c "import json; print(json.load(open('$out/again.json'))['result']['unchanged'])")
upload=$(echo "$total - $job_secs" | bc -l)
diff=$(sql "SELECT (SELECT count(*) FROM (SELECT $cols FROM offload_demo.expenses_psql EXCEPT SELECT $cols FROM offload_demo.expenses_import) a)
              + (SELECT count(*) FROM (SELECT $cols FROM offload_demo.expenses_import EXCEPT SELECT $cols FROM offload_demo.expenses_psql) b)")
psql_avg=$(echo "($psql1 + $psql2) / 2" | bc -l)
ratio=$(echo "$total / $psql_avg" | bc -l)

echo "| rows | bytes | psql \\copy (s, before / after) | offload: upload (s) | import job (s) | total (s) | ratio | items | inserted | rows differing | peak RSS (MB) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '| %s | %s | %.1f / %.1f | %.1f | %.1f | %.1f | %.2f× | %s | %s | %s | %.0f |\n' \
  "$rows" "$bytes" "$psql1" "$psql2" "$upload" "$job_secs" "$total" "$ratio" "$items" "$inserted" "$diff" \
  "$(echo "$rss_kb / 1024" | bc -l)"
echo
printf 'Of the import job, %.1f s went to planning (reading the file once to cut it).\n' "$plan_secs"
echo "The same file imported again into the full table (upsert path): $(printf '%.1f' "$again") s, $unchanged rows unchanged."
