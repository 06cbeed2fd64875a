"""Inference backends for the image encoder: the same function through the fastest runtime.

Every backend maps a preprocessed Bx3xSxS float32 batch to the Bx256x(S/16)x(S/16) embedding
and is tested against the PyTorch model within the reference parity tolerances.

=============  ==========================================================================
``torch``      the fused model in PyTorch; channels-last memory on the CPU
``onnxruntime``  the fused encoder exported to ONNX, run by ONNX Runtime (``[onnx]`` extra)
``openvino``   the same ONNX graph compiled by OpenVINO in f32 (``[openvino]`` extra)
``auto``       the documented rule below
=============  ==========================================================================

``auto``: on CUDA devices ``torch``; on the CPU ``openvino`` where it is installed, else
``onnxruntime``, else ``torch``. The order is what ``benchmarks/speed.py`` measured on our
x86 CPU machines (see the README's table); run it on yours to check.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam

from .errors import InvalidInputError, PrecisionOverflowError
from .modeling import fuse_modules, use_portable_squeeze_excite

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
Encoder = Callable[[torch.Tensor], torch.Tensor]


def is_available(backend: str) -> bool:
    """Whether ``backend``'s runtime can be imported here."""
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend ``backend`` stands for on ``device`` (see the module docstring)."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        if not is_available(backend):
            raise InvalidInputError(
                f"backend {backend!r} is not installed: pip install 'repvit-sam[{backend}]'"
            )
        if backend != "torch" and device.type != "cpu":
            raise InvalidInputError(f"backend {backend!r} runs on the CPU only, not {device}")
        return backend
    if device.type != "cpu":
        return "torch"
    return next(b for b in ("openvino", "onnxruntime", "torch") if is_available(b))


class TorchEncoder:
    """The fused encoder in PyTorch (channels-last on the CPU, optional autocast on CUDA)."""

    name = "torch"

    def __init__(
        self, model: Sam, precision: str = "fp32", channels_last: bool = True, fuse: bool = True
    ) -> None:
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = next(model.parameters()).device
        if precision != "fp32" and device.type != "cuda":
            raise InvalidInputError(f"precision {precision!r} needs a CUDA device, not {device}")
        self.encoder = model.image_encoder.eval()
        if fuse:
            fuse_modules(self.encoder)
        # Unfused is the official computation, bit for bit: channels-last kernels round
        # differently, so it keeps the official memory format too.
        self.memory_format = (
            torch.channels_last
            if channels_last and fuse and device.type == "cpu"
            else torch.contiguous_format
        )
        self.encoder.to(memory_format=self.memory_format)
        if self.memory_format == torch.channels_last:
            # PyTorch sums channels-last maps in one long pass: see SqueezeExcite.portable.
            use_portable_squeeze_excite(self.encoder)
        self.precision = precision
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=self.memory_format)
        context = (
            torch.autocast(images.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        with context:
            out = self.encoder(images)
        if self.dtype is not None:
            check_finite(out, self.precision)
        return out.float().contiguous()


class _OnnxFileEncoder:
    """Exports the fused encoder to a temporary ONNX file that lives as long as this object."""

    def __init__(self, model: Sam) -> None:
        from .onnx_export import export_encoder

        self._folder = tempfile.TemporaryDirectory(prefix="repvit_sam_onnx_")
        self.path = export_encoder(model, Path(self._folder.name) / "encoder.onnx")
        self.device = next(model.parameters()).device


class OnnxRuntimeEncoder(_OnnxFileEncoder):
    """The encoder through ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, model: Sam, threads: int | None = None) -> None:
        import onnxruntime

        super().__init__(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"images": _as_numpy(images)})[0]
        return torch.from_numpy(out).to(self.device)


class OpenVINOEncoder(_OnnxFileEncoder):
    """The encoder compiled by OpenVINO for the CPU, in f32 (never its bf16 default on AMX)."""

    name = "openvino"

    def __init__(self, model: Sam, threads: int | None = None) -> None:
        import openvino

        super().__init__(model)
        config = {
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = openvino.Core().compile_model(str(self.path), "CPU", config)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.compiled(_as_numpy(images))[0]
        return torch.from_numpy(np.array(out)).to(self.device)


def check_finite(embedding: torch.Tensor, precision: str) -> None:
    """Raises ``PrecisionOverflowError`` where a reduced-precision encoder overflowed.

    fp16 tops out at 65504, and activations of some weights go far beyond: the embedding would
    silently be inf or NaN, and every mask drawn from it garbage.
    """
    if not bool(torch.isfinite(embedding).all()):
        raise PrecisionOverflowError(
            f"the image encoder overflowed in {precision} (inf or NaN in the embedding); "
            "use precision='bf16' (fp32's range) or 'fp32'"
        )


def _as_numpy(images: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())


def make_encoder(
    model: Sam,
    backend: str = "auto",
    *,
    precision: str = "fp32",
    threads: int | None = None,
    fuse: bool = True,
) -> Encoder:
    """An encoder callable for ``Predictor(model, encoder=...)``.

    Args:
        model: The RepViT-SAM model.
        backend: One of ``BACKENDS``.
        precision: "fp32", or "bf16"/"fp16" autocast on CUDA with the torch backend (not exact:
            an explicit speed-for-accuracy choice).
        threads: CPU threads for ONNX Runtime/OpenVINO; torch's setting by default.
        fuse: With the torch backend, fuse the model's encoder in place (same function); without,
            the torch backend runs the official computation bit for bit. The ONNX backends
            always export a fused copy and leave the model as it is.
    """
    device = next(model.parameters()).device
    name = resolve_backend(backend, device)
    if precision != "fp32" and name != "torch":
        raise InvalidInputError(f"precision {precision!r} is only available with backend 'torch'")
    if name == "onnxruntime":
        encoder: Encoder = OnnxRuntimeEncoder(model, threads)
    elif name == "openvino":
        encoder = OpenVINOEncoder(model, threads)
    else:
        encoder = TorchEncoder(model, precision, fuse=fuse)
    logger.info("image encoder backend: %s (asked %s) on %s", name, backend, device)
    return encoder
