"""RepViT blocks: a token mixer (depthwise conv + optional squeeze-excite), a channel mixer (FFN).

Module and parameter names follow the official RepViT-SAM code so its checkpoint loads unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn import Conv2dBN, conv_from_weights, float64_on_cpu, fold_batch_norm


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor``, never below it (timm's rule)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def grouped_mean(x: torch.Tensor, group: int = 16) -> torch.Tensor:
    """Mean over the spatial dims, BxCxHxW -> BxCx1x1, as a tree of means of ``group`` values.

    The same value as ``x.mean((2, 3))`` up to rounding, but with every float32 sum short.
    Runtimes that sum a whole map in one pass lose enough precision there to flip a
    squeeze-excite gate that sits on an edge: ONNX Runtime; OpenVINO, which also merges
    consecutive reductions into one; PyTorch itself on channels-last tensors. Each level
    reduces after a reshape, which keeps the levels apart in an exported graph.
    """
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view: channels innermost
        while pixels.shape[1] > group and pixels.shape[1] % group == 0:
            pixels = pixels.reshape(b, -1, group, c).mean(2)
        return pixels.mean(1).reshape(b, c, 1, 1)
    flat = x.reshape(b, c, h * w)
    while flat.shape[-1] > group and flat.shape[-1] % group == 0:
        flat = flat.reshape(b, c, -1, group).mean(-1)
    return flat.mean(-1).reshape(b, c, 1, 1)


class SqueezeExcite(nn.Module):
    """Channel attention: mean, 1x1 reduce, ReLU, 1x1 expand, sigmoid gate (timm's SEModule).

    ``portable`` computes the same function with ops that every runtime gets right: the mean
    as ``grouped_mean`` and the gate as ``1 / (1 + exp(-z))``, because ONNX Runtime's
    ``Sigmoid`` is off by several times its value below z = -17, where a gate still scales
    a channel of a large activation. The ONNX export and the channels-last encoder turn it on.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd_channels = make_divisible(channels * rd_ratio, 8)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1)
        self.portable = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BxCxHxW -> BxCxHxW."""
        if not self.portable:
            gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
            return x * torch.sigmoid(gate)
        gate = self.fc2(F.relu(self.fc1(grouped_mean(x))))
        return x * torch.reciprocal(1 + torch.exp(-gate))


def use_portable_squeeze_excite(module: nn.Module) -> None:
    """Turns on ``SqueezeExcite.portable`` in every squeeze-excite block of ``module``."""
    for block in module.modules():
        if isinstance(block, SqueezeExcite):
            block.portable = True


class Residual(nn.Module):
    """``x + m(x)``, with optional stochastic depth while training."""

    def __init__(self, m: nn.Module, drop_path: float = 0.0) -> None:
        super().__init__()
        self.m = m
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            return x + self.m(x) * keep.to(x.dtype) / (1 - self.drop_path)
        return x + self.m(x)


class RepVGGDW(nn.Module):
    """Depthwise ``bn(conv3x3_bn(x) + conv1x1(x) + x)``; re-parameterises to one 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2dBN(channels, channels, 3, 1, 1, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, 1, 0, groups=channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BxCxHxW -> BxCxHxW."""
        return self.bn((self.conv(x) + self.conv1(x)) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Returns one 3x3 depthwise convolution computing this module in inference mode."""
        weight, bias = self.conv.fused_parameters()
        conv1_weight = float64_on_cpu(self.conv1.weight)  # Cx1x1x1
        identity = torch.ones_like(conv1_weight)
        weight = weight + F.pad(conv1_weight + identity, [1, 1, 1, 1])
        bias = bias + float64_on_cpu(self.conv1.bias)
        weight, bias = fold_batch_norm(weight, bias, self.bn)
        return conv_from_weights(self.conv.c, weight, bias)


def _channel_mixer(channels: int, drop_path: float) -> Residual:
    """The FFN: 1x1 expand x2, GELU, 1x1 project, as a residual branch."""
    return Residual(
        nn.Sequential(
            Conv2dBN(channels, 2 * channels),
            nn.GELU(),
            Conv2dBN(2 * channels, channels, bn_weight_init=0.0),
        ),
        drop_path=drop_path,
    )


def _squeeze_excite_or_identity(channels: int, use_se: bool) -> nn.Module:
    return SqueezeExcite(channels, 0.25) if use_se else nn.Identity()


class RepViTBlock(nn.Module):
    """A stride-1 RepViT block keeping ``channels``: RepVGG depthwise mixer (+SE), then the FFN."""

    def __init__(self, channels: int, use_se: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.token_mixer = nn.Sequential(
            RepVGGDW(channels), _squeeze_excite_or_identity(channels, use_se)
        )
        self.channel_mixer = _channel_mixer(channels, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BxCxHxW -> BxCxHxW."""
        return self.channel_mixer(self.token_mixer(x))


class RepViTDownsample(nn.Module):
    """Opens a stage: depthwise conv (strided or not, +SE), 1x1 to the new width, then the FFN.

    The official SAM encoder keeps stride 1 in its last transition (320 -> 640 channels) so that a
    1024x1024 input gives a 64x64 embedding; ``stride`` carries that choice.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, use_se: bool, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.token_mixer = nn.Sequential(
            Conv2dBN(in_channels, in_channels, 3, stride, 1, groups=in_channels),
            _squeeze_excite_or_identity(in_channels, use_se),
            Conv2dBN(in_channels, out_channels, 1),
        )
        self.channel_mixer = _channel_mixer(out_channels, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BxC_inxHxW -> BxC_outxH/sxW/s."""
        return self.channel_mixer(self.token_mixer(x))
