#!/bin/sh
# Installs the service into the Python environment first on PATH (the image's virtual
# environment). The Dockerfile's build stage runs it, in two layers:
#
#   install.sh torch      CPU torch and torchvision (deploy/requirements-torch.txt, or the
#                         TORCH_VERSION / TORCHVISION_VERSION given), from TORCH_INDEX_URL
#   install.sh project    this checkout with the server and redis extras, not editable
#
# TORCH_INDEX_URL defaults to PyTorch's CPU wheels; set it empty to use pip's configured index.
# Wheels in deploy/wheels/ (deploy/wheels/README.md) are preferred to the index's.
# tests/app/test_image.py runs the same two steps in a clean virtual environment.
set -eu

here=$(dirname "$0")
root=$(cd "$here/.." && pwd)
index_url=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}

case "${1:-}" in
torch)
    set --
    if [ -n "$index_url" ]; then
        set -- --index-url "$index_url"
    fi
    if ls "$here"/wheels/*.whl >/dev/null 2>&1; then
        set -- "$@" --find-links "$here/wheels"
    fi
    if [ -n "${TORCH_VERSION:-}" ]; then
        python -m pip install --no-cache-dir "$@" "torch==${TORCH_VERSION}" \
            "torchvision==${TORCHVISION_VERSION:?set TORCHVISION_VERSION with TORCH_VERSION}"
    else
        python -m pip install --no-cache-dir "$@" -r "$here/requirements-torch.txt"
    fi
    ;;
project)
    python -m pip install --no-cache-dir "$root[server,redis]"
    ;;
*)
    echo "usage: $0 torch|project" >&2
    exit 2
    ;;
esac
