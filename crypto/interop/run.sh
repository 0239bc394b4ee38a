#!/bin/sh
# Check crypto/vectors with libsodium.js (an independent implementation of crypto/SPEC.md).
# Exits non-zero on any mismatch. Without node/npm it skips (exit 0), unless CI is set.
set -eu
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then
        echo "interop: node and npm are required when CI is set" >&2
        exit 1
    fi
    echo "interop: skipped, node or npm is not installed"
    exit 0
fi
npm ci --silent --no-audit --no-fund
exec node verify_vectors.mjs
