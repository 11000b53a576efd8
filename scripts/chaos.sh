#!/usr/bin/env bash
# The chaos suite (issue "Nothing lost, nothing stuck, nothing silent"): builds the service
# binaries in release mode, then runs them as separate processes (API, enqueuer, notifier,
# three workers) against a database of their own on the local Postgres, injecting faults
# while jobs run: SIGKILL storms on workers during an export and an import, enqueuer and
# notifier kills, API kills, a Postgres restart, the blob store taken away for 20 s, poison messages,
# malformed request bodies. Prints a table; exits non-zero when a check fails.
#
# Loopback only and bounded (each job has a 10-minute deadline, kills a budget). Not part
# of scripts/test.sh: it restarts the Postgres server, which disturbs anything else using
# it (pass --no-postgres-restart to skip that step). Other flags: --rows N (default
# 2000000), --kills N, --keep; see `offload-chaos --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
cargo build --release --locked -p jobs-api -p jobs-enqueuer -p jobs-notifier -p jobs-worker -p offload-chaos
exec target/release/offload-chaos --bin target/release "$@"
