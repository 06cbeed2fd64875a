"""The RepViT image encoder of RepViT-SAM: a stem, RepViT blocks and SAM's neck."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from .conv_bn import Conv2dBN
from .repvit_block import RepViTBlock, RepViTDownsample
from .variants import RepViTConfig


@dataclass(frozen=True)
class BlockSpec:
    """One entry of ``features[1:]``: a plain block (``stride`` None) or a stage transition."""

    in_channels: int
    out_channels: int
    use_se: bool
    stride: int | None = None


def block_specs(config: RepViTConfig) -> list[BlockSpec]:
    """Lays out the blocks of ``config`` in the official order.

    Each stage: [downsample] + ``depth`` blocks with squeeze-excite on every other one (first on)
    + [one block without squeeze-excite before the next downsample].
    """
    specs: list[BlockSpec] = []
    dims, last = config.embed_dims, len(config.embed_dims) - 1
    for stage, (dim, depth) in enumerate(zip(dims, config.depths, strict=True)):
        if stage > 0:
            stride = config.downsample_strides[stage - 1]
            specs.append(BlockSpec(dims[stage - 1], dim, use_se=False, stride=stride))
        specs.extend(BlockSpec(dim, dim, use_se=(i % 2 == 0)) for i in range(depth))
        if stage < last:
            specs.append(BlockSpec(dim, dim, use_se=False))
    return specs


def _stem(out_channels: int) -> nn.Sequential:
    """Two stride-2 3x3 convolutions: Bx3xHxW -> Bx``out_channels``xH/4xW/4."""
    return nn.Sequential(
        Conv2dBN(3, out_channels // 2, 3, 2, 1),
        nn.GELU(),
        Conv2dBN(out_channels // 2, out_channels, 3, 2, 1),
    )


def _neck(in_channels: int, out_channels: int) -> nn.Sequential:
    """SAM's neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (convolutions without bias)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        LayerNorm2d(out_channels),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_channels),
    )


class RepViTImageEncoder(nn.Module):
    """Maps a preprocessed image to SAM's image embedding.

    ``features[0]`` is the stem, ``features[1:]`` the RepViT blocks, ``neck`` projects to
    ``out_chans``. ``img_size`` is read by segment-anything's ``Sam`` and ``SamPredictor``.
    """

    def __init__(self, config: RepViTConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        specs = block_specs(config)
        rates = [drop_path_rate * i / max(len(specs) - 1, 1) for i in range(len(specs))]
        layers: list[nn.Module] = [_stem(config.embed_dims[0])]
        for spec, rate in zip(specs, rates, strict=True):
            if spec.stride is None:
                layers.append(RepViTBlock(spec.out_channels, spec.use_se, drop_path=rate))
            else:
                layers.append(
                    RepViTDownsample(
                        spec.in_channels, spec.out_channels, spec.stride, spec.use_se, rate
                    )
                )
        self.features = nn.ModuleList(layers)
        self.neck = _neck(config.embed_dims[-1], config.out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xNxN (normalised, padded, N = img_size) -> Bx``out_chans``xSxS, S = N/16."""
        for layer in self.features:
            x = layer(x)
        return self.neck(x)


def encoder_parts(encoder: RepViTImageEncoder, parts: int) -> list[nn.Sequential]:
    """``encoder`` as ``parts`` consecutive modules that, applied in turn, are its function:
    ``features`` cut into runs of about as many layers, the neck after the last run.

    The first maps Bx3xNxN images to features, the last features to the Bx``out_chans``xSxS
    embedding; the modules share the encoder's parameters.

    Raises:
        ValueError: ``parts`` below 1 or above the number of layers.
    """
    layers = list(encoder.features)
    check_parts(parts, len(layers))
    bounds = [round(index * len(layers) / parts) for index in range(parts + 1)]
    runs = [nn.Sequential(*layers[start:end]) for start, end in itertools.pairwise(bounds)]
    runs[-1].append(encoder.neck)
    return runs


def layer_count(config: RepViTConfig) -> int:
    """``len(RepViTImageEncoder(config).features)``: the stem and the blocks."""
    return 1 + len(block_specs(config))


def check_parts(parts: int, layers: int) -> None:
    """Raises ``ValueError`` unless an encoder of ``layers`` layers can be cut in ``parts``."""
    if not 1 <= parts <= layers:
        raise ValueError(f"parts must be between 1 and {layers} (the layers), got {parts}")
