"""RepViT-SAM: Segment Anything with a RepViT image encoder, fast on ordinary hardware.

The public surface::

    build_repvit_sam(checkpoint, variant=..., fuse=..., device=...) -> segment_anything Sam
    fuse(model)                       re-parameterise a built model for inference
    Predictor(model)                  drop-in for segment_anything.SamPredictor
    ImageEmbedding                    an image's embedding as a value (cacheable)
    RepViTSAM                         high-level API: RepViTSAM.from_pretrained().predict(...)
    load_image(source)                files, bytes, PIL images, arrays -> HxWx3 uint8 RGB
    MaskGenerator(model, **params)    automatic masks, SamAutomaticMaskGenerator's output, faster
    EdgeDetector(model)               SAM's zero-shot edge maps
    download_weights(name)            verified download of published weights
"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

# Each public name -> the module that defines it. Imported on first use, so that importing the
# package (the CLI's --help, the torch-free client, the errors) does not import torch.
_EXPORTS = {
    "MaskGenerator": ".amg",
    "Prediction": ".prediction",
    "RepViTSAM": ".api",
    "build_repvit_sam": ".build",
    "fuse": ".build",
    "EdgeDetector": ".edges",
    "EdgeMap": ".edges",
    "edge_map_from_logits": ".edges",
    "ImageEmbedding": ".embedding",
    "CheckpointError": ".errors",
    "ImageNotSetError": ".errors",
    "InvalidImageError": ".errors",
    "InvalidInputError": ".errors",
    "PrecisionOverflowError": ".errors",
    "RepViTSAMError": ".errors",
    "WeightsDownloadError": ".errors",
    "RemoteError": "repvit_sam_client",
    "ImageTooLargeError": ".errors",
    "load_image": ".image_io",
    "VARIANTS": ".modeling",
    "Predictor": ".predictor",
    "CancelledError": ".errors",
    "DeadlineExceededError": ".errors",
    "WEIGHTS": ".weights",
    "default_cache_dir": ".weights",
    "download_weights": ".weights",
}

__all__ = [
    "CancelledError",
    "CheckpointError",
    "DeadlineExceededError",
    "EdgeDetector",
    "EdgeMap",
    "ImageEmbedding",
    "ImageNotSetError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidInputError",
    "MaskGenerator",
    "PrecisionOverflowError",
    "Prediction",
    "Predictor",
    "RemoteError",
    "RepViTSAM",
    "RepViTSAMError",
    "VARIANTS",
    "WEIGHTS",
    "WeightsDownloadError",
    "__version__",
    "build_repvit_sam",
    "default_cache_dir",
    "download_weights",
    "edge_map_from_logits",
    "fuse",
    "load_image",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from repvit_sam_client import RemoteError

    from .amg import MaskGenerator
    from .api import RepViTSAM
    from .build import build_repvit_sam, fuse
    from .edges import EdgeDetector, EdgeMap, edge_map_from_logits
    from .embedding import ImageEmbedding
    from .errors import (
        CancelledError,
        CheckpointError,
        DeadlineExceededError,
        ImageNotSetError,
        ImageTooLargeError,
        InvalidImageError,
        InvalidInputError,
        PrecisionOverflowError,
        RepViTSAMError,
        WeightsDownloadError,
    )
    from .image_io import load_image
    from .modeling import VARIANTS
    from .prediction import Prediction
    from .predictor import Predictor
    from .weights import WEIGHTS, default_cache_dir, download_weights
