"""Named RepViT encoder configurations, in the style of timm's ``repvit_m*`` registry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepViTConfig:
    """Architecture of a RepViT image encoder for SAM.

    Attributes:
        name: Registry name, e.g. ``"m2_3"``.
        embed_dims: Channel width of each of the four stages.
        depths: Squeeze-excite-alternating blocks per stage (timm's ``depth``). Every stage but
            the last also ends with one block without squeeze-excite, and every stage but the
            first opens with a downsampling block.
        downsample_strides: Stride of the three stage transitions. SAM needs output stride 16, so
            the last transition keeps stride 1 (the stem contributes 4).
        img_size: Side of the square input the encoder is built for.
        out_chans: Channels of the image embedding produced by the neck.
    """

    name: str
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    downsample_strides: tuple[int, int, int] = (2, 2, 1)
    img_size: int = 1024
    out_chans: int = 256

    @property
    def output_stride(self) -> int:
        stride = 4
        for s in self.downsample_strides:
            stride *= s
        return stride

    @property
    def embedding_size(self) -> int:
        """Side of the (square) image embedding, 64 for SAM's 1024 input."""
        return self.img_size // self.output_stride


VARIANTS: dict[str, RepViTConfig] = {
    config.name: config
    for config in (
        RepViTConfig("m0_9", embed_dims=(48, 96, 192, 384), depths=(2, 2, 14, 2)),
        RepViTConfig("m1_0", embed_dims=(56, 112, 224, 448), depths=(2, 2, 14, 2)),
        RepViTConfig("m1_1", embed_dims=(64, 128, 256, 512), depths=(2, 2, 12, 2)),
        RepViTConfig("m1_5", embed_dims=(64, 128, 256, 512), depths=(4, 4, 24, 4)),
        RepViTConfig("m2_3", embed_dims=(80, 160, 320, 640), depths=(6, 6, 34, 2)),
    )
}

DEFAULT_VARIANT = "m2_3"


def get_variant(name: str) -> RepViTConfig:
    """Looks up a variant by name: ``"m2_3"`` (also ``"repvit_m2_3"`` or ``"m2.3"``)."""
    if not isinstance(name, str):
        raise TypeError(f"variant must be a str, got {type(name).__name__}")
    key = name.lower().removeprefix("repvit_").replace(".", "_")
    if key not in VARIANTS:
        raise ValueError(f"unknown RepViT variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[key]
