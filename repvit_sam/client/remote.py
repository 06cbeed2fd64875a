"""The library's side of the client: ``Client`` with ``ImageEmbedding`` values, and
``RemoteRepViTSAM`` (``RepViTSAM.predict`` over HTTP, uploading each image once)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np

import repvit_sam_client
from repvit_sam_client import NotFoundError

from ..embedding import ImageEmbedding
from ..image_io import ImageSource, load_image
from ..prediction import Prediction


class Client(repvit_sam_client.Client):
    """``repvit_sam_client.Client`` speaking the library's types.

    Images may be anything ``repvit_sam.load_image`` reads (float, 16-bit and RGBA arrays
    included: they are converted to 8-bit RGB before upload), and ``embedding(id)`` is an
    ``ImageEmbedding`` for ``Predictor.predict(embedding=...)``.
    """

    def encode_image(self, image: Any) -> bytes:
        if isinstance(image, (bytes, bytearray, memoryview, str)) or hasattr(image, "__fspath__"):
            return repvit_sam_client.encode_image(image)
        return repvit_sam_client.encode_image(load_image(image))

    def embedding(self, embedding_id: str) -> ImageEmbedding:  # type: ignore[override]
        """The cached embedding, to run the decoder locally."""
        fetched = super().embedding(embedding_id)
        return ImageEmbedding.from_numpy(
            fetched.features, fetched.original_size, fetched.input_size
        )


class RemoteRepViTSAM:
    """``RepViTSAM.predict`` against a running service; each image is uploaded only once.

    Args:
        base_url: Where the service listens.
        api_key: Sent as ``X-API-Key``.
        cache_size: How many image -> embedding id pairs to remember.
        **client_options: Passed to ``Client`` (``timeout``, ``transport``).
    """

    def __init__(
        self, base_url: str, *, api_key: str | None = None, cache_size: int = 64, **client_options
    ) -> None:
        self.client = Client(base_url, api_key, **client_options)
        self.cache_size = cache_size
        self._ids: OrderedDict[str, str] = OrderedDict()

    def close(self) -> None:
        self.client.close()

    def embed(self, image: ImageSource) -> str:
        """The service's embedding id of ``image``, uploading it on first use."""
        data = self.client.encode_image(image)
        key = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key in self._ids:
            self._ids.move_to_end(key)
            return self._ids[key]
        embedding_id = self.client.embed(data).embedding_id
        self._ids[key] = embedding_id
        while len(self._ids) > self.cache_size:
            self._ids.popitem(last=False)
        return embedding_id

    def predict(
        self,
        image: ImageSource,
        points: Any = None,
        labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = False,
    ) -> Prediction:
        """Same arguments and result as ``RepViTSAM.predict`` (see there)."""
        if isinstance(image, ImageEmbedding):
            raise TypeError("a remote model takes images, not ImageEmbedding values")
        batched = boxes is not None and np.ndim(boxes) == 2
        mask_input_id = None
        if mask_input is not None:
            mask_input_id = self.client.upload_logits(np.asarray(mask_input))
        embedding_id = self.embed(image)
        kwargs = {"mask_input_id": mask_input_id, "multimask": multimask}
        try:
            result = self.client.segment(embedding_id, points, labels, boxes, **kwargs)
        except NotFoundError:
            # Evicted on the service: upload again once.
            self._ids = OrderedDict((k, v) for k, v in self._ids.items() if v != embedding_id)
            result = self.client.segment(self.embed(image), points, labels, boxes, **kwargs)
        num_prompts = max(m.prompt for m in result.masks) + 1
        masks = np.stack([m.decode() for m in result.masks])
        masks = masks.reshape(num_prompts, -1, result.height, result.width)
        scores = np.array([m.score for m in result.masks], np.float32).reshape(num_prompts, -1)
        logits = self.client.logits(result.logits_id)
        if not batched:
            masks, scores, logits = masks[0], scores[0], logits[0]
        return Prediction(masks=masks, scores=scores, low_res_logits=logits)
