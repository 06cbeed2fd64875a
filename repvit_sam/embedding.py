"""The image embedding as a value: what a server caches and passes between requests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidInputError


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one image and the geometry needed to decode prompts against it.

    Attributes:
        features: 1x256x64x64 float tensor, the image encoder's output.
        original_size: (H, W) of the image as given, in pixels.
        input_size: (h, w) of the resized image fed to the encoder, before padding to 1024.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.features, torch.Tensor):
            raise TypeError(
                f"features must be a torch.Tensor (ImageEmbedding.from_numpy takes arrays), got "
                f"{type(self.features).__name__}"
            )
        if self.features.dim() != 4 or self.features.shape[0] != 1:
            raise InvalidInputError(
                f"features must be 1xCxHxW, got shape {tuple(self.features.shape)}"
            )
        object.__setattr__(self, "original_size", _pair(self.original_size, "original_size"))
        object.__setattr__(self, "input_size", _pair(self.input_size, "input_size"))

    @property
    def nbytes(self) -> int:
        """Memory held by the features."""
        return self.features.numel() * self.features.element_size()

    @property
    def device(self) -> torch.device:
        return self.features.device

    def to(self, device: str | torch.device) -> ImageEmbedding:
        """This embedding with its features on ``device``."""
        return ImageEmbedding(self.features.to(device), self.original_size, self.input_size)

    def numpy(self) -> np.ndarray:
        """The features as a 1x256x64x64 float32 array."""
        return self.features.detach().to("cpu", torch.float32).numpy()

    @classmethod
    def from_numpy(
        cls, features: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
    ) -> ImageEmbedding:
        """Rebuilds an embedding from ``numpy()`` output (e.g. read back from a cache)."""
        return cls(torch.from_numpy(np.ascontiguousarray(features)), original_size, input_size)


def _pair(value: tuple[int, int], name: str) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise InvalidInputError(f"{name} must be two positive integers (H, W), got {value!r}")
    return pair  # type: ignore[return-value]
