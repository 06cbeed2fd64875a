"""The ONNX backends of the image encoder: the fused encoder exported to ONNX once per model
(in one graph, or in parts run in turn) and run by ONNX Runtime or compiled by OpenVINO.
``repvit_sam.backends`` picks among them and documents the cache folder and precisions."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam

from .errors import InvalidInputError
from .modeling import encoder_parts
from .quantize import CalibrationSource
from .runtimes import distribution_version

logger = logging.getLogger(__name__)


def default_encoder_cache_dir() -> Path:
    """``<repvit_sam cache dir>/encoders``: exported and compiled encoders."""
    from .weights import default_cache_dir

    return default_cache_dir() / "encoders"


def encoder_digest(model: Sam) -> str:
    """Names an exported encoder: its weights, input size and the exporting software."""
    from . import __version__

    digest = hashlib.blake2b(digest_size=16)
    versions = [__version__, torch.__version__, distribution_version("onnx")]
    digest.update(repr((versions, model.image_encoder.img_size)).encode())
    for name, tensor in model.image_encoder.state_dict().items():
        array = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(array.shape)}{array.dtype}".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


class OnnxFileEncoder:
    """The fused encoder as ONNX, exported once per model into the cache folder: one file, or
    ``parts`` files run in turn (``onnx_export.export_encoder_parts``) so that ``between_layers``
    can run other work between them.

    Where the cache folder cannot be written, the files go to a temporary folder that lives as
    long as this object (and the export is repeated on the next start).
    """

    def __init__(
        self, model: Sam, cache_dir: str | os.PathLike[str] | None = None, parts: int = 1
    ) -> None:
        try:
            encoder_parts(model.image_encoder, parts)  # its bound on parts, before any export
        except ValueError as err:
            raise InvalidInputError(str(err)) from None
        self.before_part: Callable[[], None] | None = None
        folder = Path(cache_dir) if cache_dir is not None else default_encoder_cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.paths = self._cached_export(model, folder, parts)
        except OSError as err:
            logger.warning("cannot cache the exported encoder in %s (%s); exporting", folder, err)
            self._folder = tempfile.TemporaryDirectory(prefix="repvit_sam_onnx_")
            folder = Path(self._folder.name)
            self.paths = self._cached_export(model, folder, parts)
        self.cache_dir = folder
        self.device = next(model.parameters()).device
        self.runs: list[Callable[[np.ndarray], np.ndarray]] = []

    @property
    def path(self) -> Path:
        """The whole encoder's ONNX file (of an encoder exported in one part)."""
        if len(self.paths) != 1:
            raise ValueError(f"this encoder is exported in {len(self.paths)} parts: see .paths")
        return self.paths[0]

    @staticmethod
    def _cached_export(model: Sam, folder: Path, parts: int) -> list[Path]:
        from .onnx_export import export_encoder, export_encoder_parts

        name = f"encoder-{encoder_digest(model)}"
        if parts == 1:
            paths = [folder / f"{name}.onnx"]
        else:
            paths = [folder / f"{name}-part{index}of{parts}.onnx" for index in range(1, parts + 1)]
        if all(path.is_file() for path in paths):
            logger.info("using the exported encoder %s", paths[0])
            return paths
        # Exported beside their names and renamed: a file under such a name is always whole,
        # and two processes exporting at once both end with valid files.
        temporaries = []
        try:
            for _ in paths:
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=".encoder-", suffix=".onnx")
                os.close(handle)
                temporaries.append(temporary)
            if parts == 1:
                export_encoder(model, temporaries[0])
            else:
                export_encoder_parts(model, temporaries)
            for temporary, path in zip(temporaries, paths, strict=True):
                os.replace(temporary, path)
        finally:
            for temporary in temporaries:
                Path(temporary).unlink(missing_ok=True)
        return paths

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        features = _as_numpy(images)
        for run in self.runs:
            if self.before_part is not None:
                self.before_part()
            features = run(features)
        return torch.from_numpy(np.array(features)).to(self.device)


class OnnxRuntimeEncoder(OnnxFileEncoder):
    """The encoder through ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(
        self,
        model: Sam,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        parts: int = 1,
    ) -> None:
        import onnxruntime

        super().__init__(model, cache_dir, parts)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.runs = [
            _session_run(
                onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            )
            for path in self.paths
        ]


def _session_run(session) -> Callable[[np.ndarray], np.ndarray]:
    name = session.get_inputs()[0].name
    return lambda features: session.run(None, {name: features})[0]


class OpenVINOEncoder(OnnxFileEncoder):
    """The encoder compiled by OpenVINO for the CPU, in f32 (never its bf16 default on AMX),
    or in bf16 when asked (``precision="bf16"``, on CPUs with native bf16 only)."""

    name = "openvino"

    def __init__(
        self,
        model: Sam,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
        parts: int = 1,
    ) -> None:
        super().__init__(model, cache_dir, parts)
        if precision != "fp32":
            self.name = f"openvino-{precision}"
        inference_precision = {"fp32": "f32", "bf16": "bf16"}[precision]
        self.runs = [self._compile(threads, inference_precision, path) for path in self.paths]

    def _compile(
        self, threads: int | None, inference_precision: str, path: Path
    ) -> Callable[[np.ndarray], np.ndarray]:
        import openvino

        config = {
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": inference_precision,
            # Compiled blobs, keyed by OpenVINO on the model, device and this config.
            "CACHE_DIR": str(self.cache_dir / "openvino"),
        }
        compiled = openvino.Core().compile_model(str(path), "CPU", config)
        return lambda features: compiled(features)[0]


class OpenVINOInt8Encoder(OpenVINOEncoder):
    """The encoder quantised to int8 by NNCF (``repvit_sam.quantize``), compiled by OpenVINO
    for the CPU; quantised once per model and calibration set, kept beside the fp32 export,
    and run in one piece."""

    def __init__(
        self,
        model: Sam,
        calibration: CalibrationSource = None,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from .quantize import int8_model

        OnnxFileEncoder.__init__(self, model, cache_dir)
        self.int8_path, self.calibration = int8_model(model, self.path, calibration)
        self.name = f"openvino-int8-{self.calibration}"
        self.runs = [self._compile(threads, "f32", self.int8_path)]


def _as_numpy(images: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
