"""Inference backends for the image encoder: the same function through the fastest runtime.

Every backend maps a preprocessed Bx3xSxS float32 batch to the Bx256x(S/16)x(S/16) embedding
and is tested against the PyTorch model within the reference parity tolerances.

=============  ==========================================================================
``torch``      the fused model in PyTorch; channels-last memory on the CPU
``onnxruntime``  the fused encoder exported to ONNX, run by ONNX Runtime (``[onnx]`` extra)
``openvino``   the same ONNX graph compiled by OpenVINO in f32 (``[openvino]`` extra)
``auto``       the documented rule below
=============  ==========================================================================

``auto``: on CUDA devices ``torch``; on the CPU ``openvino`` where it is installed, then
``onnxruntime`` before ``torch`` on CPUs with AVX-512 and after it on the others
(``runtimes.cpu_backend_order``). The order is what ``benchmarks/speed.py`` measured on our two
kinds of x86 CPU (see the README's table); run it on yours to check. A backend counts as
installed when every module it needs imports: the ONNX backends export through ``onnx``.

The ONNX backends export the encoder once per model and keep the file in
``<cache dir>/encoders/`` (``repvit_sam.weights.default_cache_dir()``), named by a digest of the
encoder's weights, its input size and the versions of repvit_sam, torch and onnx; OpenVINO keeps
its compiled blobs beside it (its ``CACHE_DIR``). A second start with the same model skips the
export and the compilation.

Precision: ``fp32`` (exact) by default. ``make_encoder(..., precision="int8")`` quantises that
export with NNCF for OpenVINO, once per model and calibration set (kept beside it as
``encoder-<digest>-int8-<calibration digest>.xml``); ``"bf16"`` runs on CUDA and on CPUs with
native bf16 only. Both trade accuracy for speed: see ``repvit_sam.quantize``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import torch
from segment_anything.modeling import Sam

from .errors import InvalidInputError, PrecisionOverflowError
from .modeling import RepViTImageEncoder, fuse_modules, use_portable_squeeze_excite
from .onnx_encoders import (
    OnnxFileEncoder,
    OnnxRuntimeEncoder,
    OpenVINOEncoder,
    OpenVINOInt8Encoder,
)
from .quantize import CalibrationSource
from .runtimes import (
    BACKENDS,
    EXTRAS,
    PRECISIONS,
    cpu_backend_order,
    cpu_flags,
    is_available,
    missing_modules,
    native_bf16,
)

logger = logging.getLogger(__name__)

Encoder = Callable[[torch.Tensor], torch.Tensor]


def resolve_backend(backend: str, device: torch.device, precision: str = "fp32") -> str:
    """The concrete backend ``backend`` stands for on ``device`` (see the module docstring);
    with ``precision="int8"`` on the CPU, ``auto`` is OpenVINO (the int8 encoder's runtime).

    Raises:
        InvalidInputError: An unknown backend, one whose modules are missing (the message says
            what to install), or an ONNX backend on a GPU.
    """
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        missing = missing_modules(backend)
        if missing:
            raise InvalidInputError(
                f"backend {backend!r} needs {' and '.join(missing)}, which cannot be imported "
                f"here: pip install 'repvit-sam[{EXTRAS[backend]}]', or choose another backend "
                "(torch is always available)"
            )
        if backend != "torch" and device.type != "cpu":
            raise InvalidInputError(f"backend {backend!r} runs on the CPU only, not {device}")
        return backend
    if device.type != "cpu":
        return "torch"
    if precision == "int8":
        return "openvino"
    order = cpu_backend_order(cpu_flags())
    if precision == "bf16":
        order = tuple(b for b in order if b != "onnxruntime")
    return next(b for b in order if is_available(b))


def check_precision(precision: str, backend: str, device: torch.device) -> None:
    """Refuses a precision that ``backend`` (a concrete one) cannot run on ``device``.

    Raises:
        InvalidInputError: An unknown precision; fp16 or int8 off their devices; bf16 on a
            CPU without native bf16 (emulated, it would be slower than fp32) or with ONNX
            Runtime; int8 with another backend than OpenVINO.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return
    if precision == "int8":
        if device.type != "cpu" or backend != "openvino":
            raise InvalidInputError(
                "precision 'int8' is NNCF's quantisation run by OpenVINO on the CPU: use "
                f"backend 'openvino' or 'auto' on the CPU, not {backend!r} on {device}"
            )
        return
    if device.type == "cuda":
        return
    if precision == "fp16":
        raise InvalidInputError(f"precision 'fp16' needs a CUDA device, not {device}")
    if not native_bf16(cpu_flags()):
        raise InvalidInputError(
            "precision 'bf16' needs a CUDA device or a CPU with native bf16 (avx512_bf16 or "
            "amx_bf16 among its flags); this CPU has neither, and emulated bf16 is slower than "
            "fp32: use precision 'fp32' or 'int8'"
        )
    if backend == "onnxruntime":
        raise InvalidInputError(
            "precision 'bf16' on the CPU runs with backend 'openvino' or 'torch', not 'onnxruntime'"
        )


class TorchEncoder:
    """The fused encoder in PyTorch (channels-last on the CPU, optional autocast on CUDA)."""

    name = "torch"

    def __init__(
        self, model: Sam, precision: str = "fp32", channels_last: bool = True, fuse: bool = True
    ) -> None:
        device = next(model.parameters()).device
        check_precision(precision, "torch", device)
        if precision != "fp32":
            self.name = f"torch-{precision}"
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


@contextlib.contextmanager
def between_layers(encoder: Encoder, callback: Callable[[], None]) -> Iterator[bool]:
    """Within the block, ``encoder`` calls ``callback()`` before each part of its work: with
    the PyTorch encoders (``TorchEncoder``, or the model's own ``RepViTImageEncoder``) before
    each part of each layer (a block's token mixer and channel mixer, the stem's and the neck's
    convolutions); with the ONNX backends exported in parts (``make_encoder(..., parts=N)``)
    before each of their N graphs.

    A server runs short jobs there (a click's decoder call) so that they wait for one part of
    an image encoding, not for all of it. An ONNX backend in one part (the default) runs in one
    piece, and there the callback is never called.

    Yields:
        Whether ``callback`` will be called.
    """
    if isinstance(encoder, OnnxFileEncoder):
        in_parts = len(encoder.runs) > 1
        encoder.before_part = callback if in_parts else None
        try:
            yield in_parts
        finally:
            encoder.before_part = None
        return
    module = encoder.encoder if isinstance(encoder, TorchEncoder) else encoder
    layers = [*module.features, module.neck] if isinstance(module, RepViTImageEncoder) else []
    parts = [part for layer in layers for part in layer.children()]
    handles = [part.register_forward_pre_hook(lambda *_: callback()) for part in parts]
    try:
        yield bool(handles)
    finally:
        for handle in handles:
            handle.remove()


def make_encoder(
    model: Sam,
    backend: str = "auto",
    *,
    precision: str = "fp32",
    threads: int | None = None,
    fuse: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    calibration_images: CalibrationSource = None,
    parts: int = 1,
) -> Encoder:
    """An encoder callable for ``Predictor(model, encoder=...)``.

    Args:
        model: The RepViT-SAM model.
        backend: One of ``BACKENDS``.
        precision: "fp32" (exact, the default), or a speed-for-accuracy choice: "int8" on the
            CPU (NNCF + OpenVINO), "bf16" on CUDA or a CPU with native bf16, "fp16" on CUDA
            (see ``repvit_sam.quantize``).
        threads: CPU threads for ONNX Runtime/OpenVINO; torch's setting by default.
        fuse: With the torch backend, fuse the model's encoder in place (same function); without,
            the torch backend runs the official computation bit for bit. The ONNX backends
            always export a fused copy and leave the model as it is.
        cache_dir: Where the ONNX backends keep exported and compiled encoders;
            ``default_encoder_cache_dir()`` by default.
        calibration_images: With ``precision="int8"``, the images that calibrate the
            quantisation: a folder, or images; scikit-image's sample photos by default.
        parts: With the ONNX backends in fp32 or bf16, the encoder is exported as this many
            graphs run in turn, so that ``between_layers`` can run other work between them
            (a server's clicks); one graph (the default) is a little faster. The PyTorch
            backend always runs layer by layer, and int8 in one piece.
    """
    device = next(model.parameters()).device
    name = resolve_backend(backend, device, precision)
    check_precision(precision, name, device)
    if calibration_images is not None and precision != "int8":
        raise InvalidInputError("calibration_images only applies to precision 'int8'")
    if precision == "int8":
        encoder: Encoder = OpenVINOInt8Encoder(model, calibration_images, threads, cache_dir)
    elif name == "onnxruntime":
        encoder = OnnxRuntimeEncoder(model, threads, cache_dir, parts)
    elif name == "openvino":
        encoder = OpenVINOEncoder(model, threads, cache_dir, precision, parts)
    else:
        encoder = TorchEncoder(model, precision, fuse=fuse)
    logger.info("image encoder backend: %s (asked %s) on %s, %s", name, backend, device, precision)
    return encoder
