#!/usr/bin/env bash
# Makes sure Azurite (blob service, in-memory, telemetry off) answers on 127.0.0.1:10000,
# installing the pinned version from npm (tools/azurite) and starting it when it does not,
# then creates the test containers. Idempotent; prints one line on success.
set -euo pipefail
cd "$(dirname "$0")/.."

# The emulator's well-known development account (public, documented by Microsoft).
export AZURITE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"

up() { (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; }

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  echo "ensure-azurite: needs Node.js 20 or newer with npm (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then
  echo "ensure-azurite: installing the pinned Azurite from npm" >&2
  (cd tools/azurite && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if ! up; then
  mkdir -p target
  nohup tools/azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 \
    --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose \
    > target/azurite.log 2>&1 &
  for _ in $(seq 1 100); do
    up && break
    sleep 0.2
  done
fi
if ! up; then
  echo "ensure-azurite: Azurite does not answer on 127.0.0.1:10000 (see target/azurite.log)" >&2
  exit 1
fi
node tools/azurite/create-container.js "$AZURITE_CONNECTION_STRING" offload-test
echo "ensure-azurite: Azurite answers on 127.0.0.1:10000"
