"""ONNX export: the image encoder, and a decoder with segment-anything's ONNX signature.

The decoder graph is segment-anything's own ``SamOnnxModel`` (inputs ``image_embeddings``,
``point_coords``, ``point_labels``, ``mask_input``, ``has_mask_input``, ``orig_im_size``;
outputs ``masks``, ``iou_predictions``, ``low_res_masks``), so clients written for SAM's ONNX
decoder work unchanged (with one fix: ``SamOnnxDecoder``). Boxes go in as two points labelled 2
and 3, as in SAM. ``CvatOnnxDecoder`` adds the outputs CVAT's SAM plugin reads. The files each
tool expects (names, layout, its model config) are written by ``repvit_sam.onnx_formats``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn

from .modeling import encoder_parts, fuse_modules, use_portable_squeeze_excite

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
CVAT_OUTPUTS = (*DECODER_OUTPUTS, "xtl", "ytl", "xbr", "ybr")


class PreprocessingEncoder(nn.Module):
    """The encoder with SAM's normalisation and padding inside the graph.

    Takes an HxWx3 float32 RGB image in 0..255 whose longest side is already the encoder's
    input size (``ResizeLongestSide``), and returns the 1x256x64x64 embedding.
    """

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.img_size = model.image_encoder.img_size
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), persistent=False)

    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        """HxWx3 (H, W <= img_size) -> 1x256x(img_size/16)x(img_size/16)."""
        x = input_image.permute(2, 0, 1)[None]
        x = (x - self.pixel_mean) / self.pixel_std
        pad_h = self.img_size - x.shape[-2]
        pad_w = self.img_size - x.shape[-1]
        return self.image_encoder(nn.functional.pad(x, (0, pad_w, 0, pad_h)))


class SamOnnxDecoder(SamOnnxModel):
    """segment-anything's ``SamOnnxModel`` with a crop that stays dynamic in the graph.

    Its ``mask_postprocessing`` slices with sizes computed from ``orig_im_size``; the tracer turns
    those into constants of the example, so images of another aspect ratio were cropped wrong.
    Selecting rows and columns with ``arange`` of the computed size keeps them graph values.
    """

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Bx4x256x256 logits -> Bx4xHxW at ``orig_im_size`` (H, W)."""
        masks = F.interpolate(
            masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False
        )
        prepadded = self.resize_longest_image_size(orig_im_size, self.img_size).to(torch.int64)
        rows = torch.arange(prepadded[0], device=masks.device)
        cols = torch.arange(prepadded[1], device=masks.device)
        masks = masks.index_select(2, rows).index_select(3, cols)
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


class CvatOnnxDecoder(SamOnnxDecoder):
    """The decoder CVAT's SAM plugin runs in the browser (its ``/assets/decoder.onnx``).

    Same inputs as SAM's, and SAM's selection of one mask (``return_single_mask``). Outputs, as
    CVAT's own export writes them: ``masks`` is the mask thresholded at the model's threshold
    and cropped to its bounding box, 1x1xhxw uint8 (0 or 1); ``iou_predictions`` 1x1;
    ``low_res_masks`` the 1x1x256x256 logits for the next click's ``mask_input``; and ``xtl``,
    ``ytl``, ``xbr``, ``ybr`` the box, int64 scalars, inclusive, in pixels of the original image
    (``w = xbr - xtl + 1``). An empty mask comes back as one 0 pixel at (0, 0).
    """

    def __init__(self, model: Sam) -> None:
        super().__init__(model, return_single_mask=True)

    @torch.no_grad()
    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        masks, scores, low_res_masks = super().forward(*inputs)
        binary = (masks > self.model.mask_threshold).to(torch.float32)
        ytl, ybr = _extent(binary.amax(dim=3)[0, 0])
        xtl, xbr = _extent(binary.amax(dim=2)[0, 0])
        rows = torch.arange(ytl, ybr + 1, device=masks.device)
        cols = torch.arange(xtl, xbr + 1, device=masks.device)
        crop = binary.index_select(2, rows).index_select(3, cols).to(torch.uint8)
        return crop, scores, low_res_masks, xtl, ytl, xbr, ybr


def _extent(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index (int64 scalars) where a 1-D 0/1 float vector is 1; (0, 0) if none.

    Reductions run in float32 (exact for indices below 2**24), the form every ONNX runtime,
    onnxruntime-web's included, implements for ReduceMin/ReduceMax.
    """
    index = torch.arange(occupied.shape[0], device=occupied.device, dtype=torch.float32)
    first = torch.where(occupied > 0, index, torch.full_like(index, float("inf"))).amin()
    last = torch.where(occupied > 0, index, torch.full_like(index, -1.0)).amax()
    empty = last < 0
    first = torch.where(empty, torch.zeros_like(first), first)
    last = torch.where(empty, torch.zeros_like(last), last)
    return first.to(torch.int64), last.to(torch.int64)


def _fused_copy_on_cpu(model: Sam) -> Sam:
    import copy

    clone = copy.deepcopy(model).to("cpu", torch.float32).eval()
    fuse_modules(clone.image_encoder)
    use_portable_squeeze_excite(clone)
    return clone


def export_encoder(
    model: Sam,
    path: str | os.PathLike[str],
    *,
    preprocess: bool = False,
    input_name: str | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int = 1,
) -> Path:
    """Writes the (fused) image encoder as ONNX.

    Args:
        model: A RepViT-SAM model, fused or not (the export is always fused).
        path: Output ``.onnx`` file.
        preprocess: Without it the input ``images`` is 1x3xSxS, normalised and padded (S = 1024);
            with it the input ``input_image`` is an HxWx3 float RGB image in 0..255 with its
            longest side resized to S (dynamic H and W), normalised and padded in the graph.
        input_name: The input's name instead (``image`` is the official RepViT-SAM export's).
        opset: ONNX opset.
        batch: Without ``preprocess``, the images per call B: the input is Bx3xSxS (a fixed
            size, as the squeeze-excite gates' reshapes are traced with it).

    Returns:
        The written path. The output is ``image_embeddings``, Bx256x(S/16)x(S/16).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_model = _fused_copy_on_cpu(model)
    size = cpu_model.image_encoder.img_size
    if preprocess:
        module: nn.Module = PreprocessingEncoder(cpu_model).eval()
        example = torch.randint(0, 255, (size, size * 3 // 4, 3)).float()
        names, axes = ["input_image"], {"input_image": {0: "height", 1: "width"}}
    else:
        module = cpu_model.image_encoder
        example = torch.randn(batch, 3, size, size)
        names, axes = ["images"], None
    if input_name is not None:
        axes = {input_name: axes[names[0]]} if axes else None
        names = [input_name]
    _export(module, (example,), path, names, ["image_embeddings"], axes, opset)
    return path


def export_encoder_parts(
    model: Sam, paths: Sequence[str | os.PathLike[str]], *, opset: int = DEFAULT_OPSET
) -> list[Path]:
    """Writes the (fused) image encoder as ``len(paths)`` ONNX graphs that, run in turn, are
    ``export_encoder``'s: a runtime that runs a graph in one piece can then do other work
    between them (``repvit_sam.backends.between_layers``).

    The first graph's input is ``images`` (1x3xSxS, normalised and padded), each graph's
    output ``features`` is the next one's input, and the last one's output is
    ``image_embeddings``. The cuts are ``modeling.encoder_parts``'.

    Returns:
        The written paths.
    """
    cpu_model = _fused_copy_on_cpu(model)
    size = cpu_model.image_encoder.img_size
    features = torch.randn(1, 3, size, size)
    modules = encoder_parts(cpu_model.image_encoder, len(paths))
    written = []
    for index, (module, path) in enumerate(zip(modules, paths, strict=True)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        input_name = "images" if index == 0 else "features"
        output_name = "image_embeddings" if index == len(modules) - 1 else "features"
        _export(module.eval(), (features,), path, [input_name], [output_name], None, opset)
        with torch.no_grad():
            features = module(features)
        written.append(path)
    return written


def export_decoder(
    model: Sam,
    path: str | os.PathLike[str],
    *,
    return_single_mask: bool = False,
    cvat: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Writes the prompt encoder + mask decoder with segment-anything's ONNX signature.

    Args:
        model: A RepViT-SAM (or any segment-anything) model.
        path: Output ``.onnx`` file.
        return_single_mask: Return only the best mask (SAM's ``--return-single-mask``).
        cvat: Write ``CvatOnnxDecoder`` (one mask, cropped, with its box), the decoder CVAT's
            SAM plugin runs; implies ``return_single_mask``.
        opset: ONNX opset.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_model = _fused_copy_on_cpu(model)
    onnx_model = (
        CvatOnnxDecoder(cpu_model)
        if cvat
        else SamOnnxDecoder(cpu_model, return_single_mask=return_single_mask)
    ).eval()
    embed_dim = cpu_model.prompt_encoder.embed_dim
    embed_size = cpu_model.prompt_encoder.image_embedding_size
    mask_size = [4 * x for x in embed_size]
    example = {
        "image_embeddings": torch.randn(1, embed_dim, *embed_size),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, *mask_size),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    assert tuple(example) == DECODER_INPUTS
    axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    outputs = list(CVAT_OUTPUTS if cvat else DECODER_OUTPUTS)
    _export(onnx_model, tuple(example.values()), path, list(example), outputs, axes, opset)
    return path


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict | None,
    opset: int,
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    logger.info("exported %s", path)
