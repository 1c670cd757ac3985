#!/usr/bin/env bash
# protoc_all.sh ROOT - the reference compiler (Debian's protobuf-compiler)
# compiles every file of proto/orch/v1 together, for Python and C++, as a
# client in any language does (docs/rpc.md section 13). Then the generated
# Python modules load together in one interpreter (python3-protobuf), which
# fails when two files define the same name in the package. Debian's
# interpreter (/usr/bin/python3), whose python3-protobuf matches protoc.
set -euo pipefail
readonly PYTHON=/usr/bin/python3
root="$(cd "${1:?usage: protoc_all.sh ROOT}" && pwd)"
cd "$root"
for tool in protoc "$PYTHON"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "protoc_all.sh: $tool not found (deploy/local/packages.sh installs it)" >&2
    exit 1
  }
done
out="$(mktemp -d /tmp/orch-protoc.XXXXXX)"
trap 'rm -rf -- "$out"' EXIT
mkdir -p "$out/py" "$out/cpp"
protoc --version
protoc -I proto --python_out="$out/py" --cpp_out="$out/cpp" proto/orch/v1/*.proto
n=0
for f in proto/orch/v1/*.proto; do
  stem="$(basename "$f" .proto)"
  [[ -s "$out/py/orch/v1/${stem}_pb2.py" && -s "$out/cpp/orch/v1/$stem.pb.cc" ]] || {
    echo "protoc_all.sh: no generated code for $f" >&2
    exit 1
  }
  n=$((n + 1))
done
PYTHONPATH="$out/py" "$PYTHON" - proto/orch/v1/*.proto <<'PY'
import importlib, os, sys
for path in sys.argv[1:]:
    importlib.import_module("orch.v1." + os.path.basename(path)[:-len(".proto")] + "_pb2")
print(f"python3: {len(sys.argv) - 1} modules of orch.v1 load together")
PY
echo "protoc: $n files compiled together (python, c++)"
