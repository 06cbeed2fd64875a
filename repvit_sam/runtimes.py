"""The image encoder's backends by name, and what each needs installed (torch-free, so that
the command line and the settings can name and check them without importing the model)."""

from __future__ import annotations

import importlib.util

__all__ = ["BACKENDS", "EXTRAS", "REQUIRED_MODULES", "is_available", "missing_modules"]

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")

# The modules each backend imports; both ONNX runtimes read what torch.onnx.export writes,
# and that exporter needs the onnx package.
REQUIRED_MODULES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


def missing_modules(backend: str) -> list[str]:
    """The modules ``backend`` needs that cannot be imported here."""
    return [m for m in REQUIRED_MODULES.get(backend, ()) if importlib.util.find_spec(m) is None]


def is_available(backend: str) -> bool:
    """Whether every module ``backend`` needs can be imported here."""
    return not missing_modules(backend)
