"""ONNX pairs laid out as each tool that runs SAM's ONNX expects them.

==================  ========================================================================
``sam``             ``encoder.onnx`` (input ``images``, 1x3xSxS normalised and padded, or with
                    ``preprocess`` ``input_image``, HxWx3 0..255) and ``decoder.onnx`` with
                    segment-anything's signature
``samexporter``     samexporter's pair, which X-AnyLabeling and AnyLabeling load:
                    ``repvit_sam.encoder.onnx`` (``input_image``: an HxWx3 float32 RGB image in
                    0..255 resized to a long side of S, dynamic H and W, normalised and padded in
                    the graph -> ``image_embeddings``), ``repvit_sam.decoder.onnx`` (SAM's
                    names, one mask by SAM's rule, as samexporter's ``--return-single-mask``
                    exports for those tools) and ``repvit_sam.yaml``, the model config
                    X-AnyLabeling reads (``type: segment_anything``)
``official``        the official RepViT-SAM exporter's encoder, ``repvit_sam_image_encoder.onnx``
                    (input ``image``, 1x3xSxS -> ``image_embeddings``), and ``decoder.onnx``
==================  ========================================================================

``cvat=True`` writes ``decoder.onnx`` as CVAT's SAM plugin runs it instead (see
``repvit_sam.onnx_export.CvatOnnxDecoder``); samexporter's readers take SAM's three outputs only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInputError

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

__all__ = ["FORMATS", "OnnxExport", "check_export_options", "export_onnx", "xanylabeling_config"]

FORMATS = ("sam", "samexporter", "official")
# X-AnyLabeling's SAM wrapper letterboxes every image into a 684x1024 (HxW) canvas before the
# encoder; its own SAM configs name that canvas 1024 wide and 682 high.
XANYLABELING_MAX_SIZE = (1024, 682)


@dataclass(frozen=True)
class OnnxExport:
    """The files ``export_onnx`` wrote; ``config`` is the tool's model config, where it has one."""

    encoder: Path
    decoder: Path
    config: Path | None = None

    def as_dict(self) -> dict[str, str]:
        paths = {"encoder": self.encoder, "decoder": self.decoder, "config": self.config}
        return {name: str(path) for name, path in paths.items() if path is not None}


def export_onnx(
    model: Sam,
    folder: str | os.PathLike[str],
    *,
    format: str = "sam",
    cvat: bool = False,
    preprocess: bool = False,
    return_single_mask: bool = False,
    name: str = "repvit_sam",
    opset: int = 17,
) -> OnnxExport:
    """Writes the encoder and decoder (and the tool's config) of ``format`` into ``folder``.

    Args:
        model: A RepViT-SAM model (the export is always fused).
        folder: Output folder, created if missing.
        format: One of ``FORMATS`` (see the module docstring).
        cvat: ``sam`` and ``official`` formats: write the decoder CVAT's SAM plugin runs.
        preprocess: ``sam`` format only: the encoder takes an HxWx3 0..255 image.
        return_single_mask: ``sam`` and ``official`` formats: one mask by SAM's rule.
        name: Model name in the ``samexporter`` files and config.
        opset: ONNX opset.

    Raises:
        InvalidInputError: See ``check_export_options``.
    """
    from .onnx_export import export_decoder, export_encoder

    check_export_options(
        format, cvat=cvat, preprocess=preprocess, return_single_mask=return_single_mask
    )
    folder = Path(folder)
    if format == "samexporter":
        encoder = export_encoder(
            model, folder / f"{name}.encoder.onnx", preprocess=True, opset=opset
        )
        decoder = export_decoder(
            model, folder / f"{name}.decoder.onnx", return_single_mask=True, opset=opset
        )
        config = folder / f"{name}.yaml"
        config.write_text(xanylabeling_config(model, encoder.name, decoder.name, name=name))
        return OnnxExport(encoder, decoder, config)
    if format == "official":
        encoder = export_encoder(
            model, folder / "repvit_sam_image_encoder.onnx", input_name="image", opset=opset
        )
    else:
        encoder = export_encoder(model, folder / "encoder.onnx", preprocess=preprocess, opset=opset)
    decoder = export_decoder(
        model,
        folder / "decoder.onnx",
        return_single_mask=return_single_mask,
        cvat=cvat,
        opset=opset,
    )
    return OnnxExport(encoder, decoder)


def check_export_options(
    format: str, *, cvat: bool = False, preprocess: bool = False, return_single_mask: bool = False
) -> None:
    """Refuses, before any work, options ``format`` does not take (torch-free, for the CLI).

    Raises:
        InvalidInputError: An unknown format, ``preprocess`` outside ``sam``, or ``cvat`` or
            ``return_single_mask`` with ``samexporter`` (whose decoder is fixed).
    """
    if format not in FORMATS:
        raise InvalidInputError(f"format must be one of {FORMATS}, got {format!r}")
    if preprocess and format != "sam":
        raise InvalidInputError(
            f"preprocess applies to the 'sam' format only: the {format!r} encoder's input is fixed"
        )
    if format == "samexporter" and (return_single_mask or cvat):
        raise InvalidInputError(
            "the 'samexporter' decoder always returns a single mask with SAM's three outputs "
            "(its readers unpack exactly those); write the CVAT decoder with format 'sam'"
        )


def xanylabeling_config(
    model: Sam, encoder_path: str, decoder_path: str, *, name: str = "repvit_sam"
) -> str:
    """The model YAML X-AnyLabeling (and AnyLabeling) load for a samexporter pair.

    Paths are relative to the YAML's folder, where X-AnyLabeling looks for them, so the folder
    can be dropped into its models folder or loaded with "Load Custom Model" as it is. Strings
    are written as JSON strings, which YAML reads unchanged.
    """
    max_width, max_height = XANYLABELING_MAX_SIZE
    fields = {
        "type": "segment_anything",
        "name": name,
        "provider": "THU-MIG",
        "display_name": "RepViT-SAM",
        "encoder_model_path": encoder_path,
        "decoder_model_path": decoder_path,
        "input_size": model.image_encoder.img_size,
        "max_width": max_width,
        "max_height": max_height,
    }
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in fields.items())
