#!/usr/bin/env bash
# The whole test suite: brings up what the tests need (Postgres, Azurite), runs every test
# of the workspace against it, then checks the HTTP contract from outside (schemathesis
# against the served OpenAPI document: scripts/api-contract.sh). This is the README's test
# command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
# Azure Blob Storage tests run against Azurite (pinned in tools/azurite, in memory).
scripts/ensure-azurite.sh

# Tests connect to the server named by the configuration (OFFLOAD__DATABASE__URL, default
# postgres://postgres@127.0.0.1:5432/offload) and create one throwaway database per test.
cargo test --workspace --locked "$@"

# The whole run only (not when arguments pick some tests).
if [ "$#" -eq 0 ]; then
  scripts/api-contract.sh
fi
