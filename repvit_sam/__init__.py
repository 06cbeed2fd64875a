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

from .amg import MaskGenerator
from .api import Prediction, RepViTSAM
from .build import build_repvit_sam, fuse
from .edges import EdgeDetector, EdgeMap, edge_map_from_logits
from .embedding import ImageEmbedding
from .errors import (
    CheckpointError,
    ImageNotSetError,
    InvalidImageError,
    InvalidInputError,
    PrecisionOverflowError,
    RemoteError,
    RepViTSAMError,
    WeightsDownloadError,
)
from .image_io import ImageTooLargeError, load_image
from .modeling import VARIANTS
from .predictor import Predictor
from .progress import CancelledError, DeadlineExceededError
from .weights import WEIGHTS, default_cache_dir, download_weights

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "WEIGHTS",
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
    "PrecisionOverflowError",
    "MaskGenerator",
    "Prediction",
    "Predictor",
    "RemoteError",
    "RepViTSAM",
    "RepViTSAMError",
    "WeightsDownloadError",
    "__version__",
    "build_repvit_sam",
    "default_cache_dir",
    "download_weights",
    "edge_map_from_logits",
    "fuse",
    "load_image",
]
