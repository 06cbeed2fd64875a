"""The HTTP client of ``repvit-sam serve``, with the library's types.

::

    Client(base_url, api_key=None)      repvit_sam_client.Client whose ``embedding(id)`` is an
                                        ``ImageEmbedding`` and whose images may be anything
                                        ``load_image`` reads
    RemoteRepViTSAM(base_url)           RepViTSAM.predict over HTTP (``RepViTSAM.remote``)

Everything else (errors, results) is ``repvit_sam_client``'s, re-exported: the torch-free
distribution ``repvit-sam-client`` has the same client for tools that need no model.
"""

from repvit_sam_client import (
    AuthenticationError,
    AutoMask,
    ConnectError,
    EmbedResult,
    MaskResult,
    MasksResult,
    NotFoundError,
    PayloadTooLargeError,
    RemoteError,
    SegmentResult,
    ServerError,
    ServiceBusyError,
    TaskTimeoutError,
    ValidationError,
)

from .remote import Client, RemoteRepViTSAM

__all__ = [
    "AuthenticationError",
    "AutoMask",
    "Client",
    "ConnectError",
    "EmbedResult",
    "MaskResult",
    "MasksResult",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemoteError",
    "RemoteRepViTSAM",
    "SegmentResult",
    "ServerError",
    "ServiceBusyError",
    "TaskTimeoutError",
    "ValidationError",
]
