"""The image encoder's backends by name, and what each needs installed (torch-free, so that
the command line and the settings can name and check them without importing the model)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

__all__ = [
    "BACKENDS",
    "EXTRAS",
    "PRECISIONS",
    "REQUIRED_MODULES",
    "cpu_backend_order",
    "cpu_flags",
    "distribution_version",
    "is_available",
    "missing_modules",
    "native_bf16",
]

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")

# The modules each backend imports; both ONNX runtimes read what torch.onnx.export writes,
# and that exporter needs the onnx package.
# The int8 encoder is NNCF's quantisation of that export, run by OpenVINO (repvit_sam.quantize).
REQUIRED_MODULES = {
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "onnx"),
    "int8": ("nncf", "openvino", "onnx"),
}
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino", "int8": "int8"}

# fp32 is exact and the default; the others trade accuracy for speed (repvit_sam.quantize).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def missing_modules(backend: str) -> list[str]:
    """The modules ``backend`` (or the ``int8`` precision) needs that cannot be imported."""
    return [m for m in REQUIRED_MODULES.get(backend, ()) if importlib.util.find_spec(m) is None]


def is_available(backend: str) -> bool:
    """Whether every module ``backend`` needs can be imported here."""
    return not missing_modules(backend)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx2``, ``avx512f``, ``amx_tile``, ...) as Linux reports
    them; empty where /proc/cpuinfo cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_backend_order(flags: frozenset[str]) -> tuple[str, ...]:
    """The order in which ``auto`` tries the CPU backends on a CPU with ``flags``.

    OpenVINO first: fastest on both kinds of CPU measured side by side (README, "Speed").
    Behind it, ONNX Runtime was ahead of PyTorch on the Intel Xeon with AVX-512 (0.46x of the
    unfused computation against 0.58x) and behind it on the AVX2-only AMD EPYC (0.73x against
    0.66x), so the runner-up follows AVX-512.
    """
    if "avx512f" in flags:
        return ("openvino", "onnxruntime", "torch")
    return ("openvino", "torch", "onnxruntime")


def native_bf16(flags: frozenset[str]) -> bool:
    """Whether a CPU with ``flags`` computes in bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return any(flag in flags for flag in BF16_FLAGS)


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"absent"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
