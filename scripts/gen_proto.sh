#!/usr/bin/env bash
# Regenerate the Python gRPC and Connect code in src/fedmetamal/v1/ from
# proto/fedmetamal/v1/*.proto (and the dashboard's TypeScript client when frontend/ is set up).
# The generated files are committed; tests/net/test_proto_generated.py checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-src}
.venv/bin/python -m grpc_tools.protoc -I proto --python_out="$OUT" --pyi_out="$OUT" \
  --grpc_python_out="$OUT" \
  --plugin=protoc-gen-connectrpc=.venv/bin/protoc-gen-connectrpc \
  --connectrpc_out="$OUT" --connectrpc_opt=protobuf=google \
  proto/fedmetamal/v1/*.proto
if [ -z "${1:-}" ] && [ -x frontend/node_modules/.bin/protoc-gen-es ]; then
  mkdir -p frontend/src/gen
  .venv/bin/python -m grpc_tools.protoc -I proto \
    --plugin=protoc-gen-es=frontend/node_modules/.bin/protoc-gen-es \
    --es_out=frontend/src/gen --es_opt=target=ts proto/fedmetamal/v1/*.proto
fi
