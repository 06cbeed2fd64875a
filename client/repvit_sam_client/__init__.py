"""The HTTP client of the RepViT-SAM service, without torch: httpx, numpy and Pillow only.

::

    Client(base_url, api_key=None)   embed(image), segment(...), masks(...), edges(...),
                                     embedding(id), logits(id), upload_logits(...)
    encode_image(image)              bytes, paths, PIL images, uint8 arrays -> upload bytes
    decode_rle(rle)                  COCO RLE -> HxW bool mask

Errors are ``RemoteError`` subclasses (the tree is drawn in ``repvit_sam_client.errors``).
The full ``repvit-sam`` package re-exports all of this as ``repvit_sam.client``, adding
``RemoteRepViTSAM`` (``RepViTSAM.remote``: ``RepViTSAM.predict`` over HTTP).
"""

from ._client import Client
from .errors import (
    AuthenticationError,
    ConnectError,
    NotFoundError,
    PayloadTooLargeError,
    RemoteError,
    ServerError,
    ServiceBusyError,
    TaskTimeoutError,
    ValidationError,
)
from .images import ImageInput, encode_image
from .results import (
    AutoMask,
    Embedding,
    EmbedResult,
    MaskResult,
    MasksResult,
    SegmentResult,
    decode_rle,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "AutoMask",
    "Client",
    "ConnectError",
    "EmbedResult",
    "Embedding",
    "ImageInput",
    "MaskResult",
    "MasksResult",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemoteError",
    "SegmentResult",
    "ServerError",
    "ServiceBusyError",
    "TaskTimeoutError",
    "ValidationError",
    "__version__",
    "decode_rle",
    "encode_image",
]
