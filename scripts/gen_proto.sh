#!/usr/bin/env bash
# Regenerate the Python gRPC code in src/fedmetamal/v1/ from proto/fedmetamal/v1/*.proto.
# The generated files are committed; tests/net/test_proto_generated.py checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-src}
.venv/bin/python -m grpc_tools.protoc -I proto --python_out="$OUT" --pyi_out="$OUT" \
  --grpc_python_out="$OUT" proto/fedmetamal/v1/*.proto
