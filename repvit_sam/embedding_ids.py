"""The ids of embeddings: from the model that computed them and the image's pixels.

The HTTP service's ``embedding_id`` and the keys of the persistent embedding store are the same
id, so an embedding pre-computed by a dataset job serves the service's first click.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["embedding_id", "image_key", "model_fingerprint"]


def image_key(image: np.ndarray) -> str:
    """A digest of an HxWx3 uint8 image's pixels: equal images share embeddings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def model_fingerprint(
    checkpoint_sha256: str, variant: str, image_size: int, fuse: bool, backend: str
) -> str:
    """What makes embeddings of the same image differ: the weights, the variant, the input
    size, fusion and the encoder backend (each rounds differently)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{variant}|{image_size}|{fuse}|{backend}".encode())
    digest.update(checkpoint_sha256.encode())
    return digest.hexdigest()


def embedding_id(fingerprint: str, image: np.ndarray) -> str:
    """The id of ``image``'s embedding by the model of ``fingerprint`` (32 hex digits)."""
    return hashlib.blake2b(f"{fingerprint}:{image_key(image)}".encode(), digest_size=16).hexdigest()
