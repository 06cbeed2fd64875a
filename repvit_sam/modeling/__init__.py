"""RepViT-SAM's modules: only ``nn.Module``s and their configurations, no I/O."""

from .conv_bn import Conv2dBN
from .fuse import fuse_modules, is_fused
from .image_encoder import (
    RepViTImageEncoder,
    block_specs,
    check_parts,
    encoder_parts,
    layer_count,
)
from .repvit_block import (
    RepVGGDW,
    RepViTBlock,
    RepViTDownsample,
    Residual,
    SqueezeExcite,
    use_portable_squeeze_excite,
)
from .variants import DEFAULT_VARIANT, VARIANTS, RepViTConfig, get_variant

__all__ = [
    "DEFAULT_VARIANT",
    "VARIANTS",
    "Conv2dBN",
    "RepVGGDW",
    "RepViTBlock",
    "RepViTConfig",
    "RepViTDownsample",
    "RepViTImageEncoder",
    "Residual",
    "SqueezeExcite",
    "block_specs",
    "check_parts",
    "encoder_parts",
    "fuse_modules",
    "get_variant",
    "is_fused",
    "layer_count",
    "use_portable_squeeze_excite",
]
