#!/usr/bin/env bash
# Virtual environments of their own for the annotation tools whose own code the tests run:
# Label Studio (its server, for tests/app/adapters/test_label_studio_server.py, and its SDK, for
# test_label_studio_sdk.py) and X-AnyLabeling (its model loader, for tests/test_onnx_formats.py,
# and its remote-server client). Neither fits this project's environment: Label Studio 1.23
# pins numpy 2.2 and OpenCV 4.12 and brings Django; X-AnyLabeling brings PyQt6 and its own
# OpenCV build. Both install at once, in parallel.
#
#   .ci/tool-venvs.sh DIR   makes DIR/label-studio and DIR/x-anylabeling (logs in DIR/*.log)
#
# The tests find them through REPVIT_SAM_TEST_LABEL_STUDIO (DIR/label-studio/bin/label-studio)
# and REPVIT_SAM_TEST_X_ANYLABELING (DIR/x-anylabeling/bin/python), which .ci/run exports.
set -euo pipefail
dir="$1"
mkdir -p "$dir"

# The versions the tests were written against.
declare -A packages=(
  [label-studio]="label-studio==1.23.2"
  [x-anylabeling]="x-anylabeling-cvhub[cpu]==4.2.1"
)

declare -A jobs=()
for name in "${!packages[@]}"; do
  { python3 -m venv "$dir/$name" && "$dir/$name/bin/pip" install -q "${packages[$name]}"; } \
    >"$dir/$name.log" 2>&1 &
  jobs[$name]=$!
done
for name in "${!jobs[@]}"; do
  if ! wait "${jobs[$name]}"; then
    grep -v "^WARNING: Location" "$dir/$name.log" | tail -40 >&2
    echo "could not install ${packages[$name]} into $dir/$name" >&2
    exit 1
  fi
done
