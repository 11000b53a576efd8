#!/usr/bin/env bash
# The export benchmark: N rows (default 5,000,000) of the demo dataset exported through the
# whole pipeline by `offload demo` (all services in one process, default settings), against
# `psql \copy` of the same query to a file, in the same run. Prints a Markdown table.
#
#   ROWS=5000000 scripts/bench-export.sh
#
# Peak RSS is that of the whole `offload demo` process (API, enqueuer, worker, notifier and
# the client together): an upper bound for the worker's.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-5000000}
url=${OFFLOAD__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/offload}
export OFFLOAD__DATABASE__URL=$url
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scripts/ensure-postgres.sh >/dev/null
cargo build --release -q -p jobs-cli
bin=target/release/offload

echo "preparing $rows rows (first run, also a warm-up) …" >&2
$bin demo --rows "$rows" >/dev/null

query="SELECT id, employee, cost_center, amount, currency, status, approved_at, note FROM offload_demo.expenses ORDER BY id"
copy_secs() {
  local t0 t1
  t0=$(date +%s.%N)
  psql "$url" -q -c "\\copy ($query) to '$out/psql.csv' csv header"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

psql1=$(copy_secs)
/usr/bin/time -f '%M' -o "$out/rss" $bin demo --rows "$rows" > "$out/demo.txt"
psql2=$(copy_secs)

secs=$(sed -n 's/^export succeeded in \([0-9.]*\) s$/\1/p' "$out/demo.txt")
file=$(sed -n 's/^  file: *//p' "$out/demo.txt")
bytes=$(stat -c %s "$file")
psql_bytes=$(stat -c %s "$out/psql.csv")
same=$(cmp -s "$file" "$out/psql.csv" && echo yes || echo NO)
rss_kb=$(cat "$out/rss")
psql_avg=$(echo "($psql1 + $psql2) / 2" | bc -l)
ratio=$(echo "$secs / $psql_avg" | bc -l)

echo "| rows | psql \\copy (s, before / after) | offload demo, submit → file ready (s) | ratio | bytes | identical to psql | peak RSS (MB) |"
echo "|---:|---:|---:|---:|---:|:---:|---:|"
printf '| %s | %.1f / %.1f | %.1f | %.2f× | %s | %s | %.0f |\n' "$rows" "$psql1" "$psql2" "$secs" "$ratio" "$bytes" "$same" "$(echo "$rss_kb / 1024" | bc -l)"
[ "$bytes" = "$psql_bytes" ] || echo "(psql wrote $psql_bytes bytes)"
