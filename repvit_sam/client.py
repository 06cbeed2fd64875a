"""An HTTP client of ``repvit-sam serve``.

::

    Client(base_url, api_key=None)      embed(image), segment(...), embedding(id), logits(id),
                                        masks(...) (segment everything), edges(...)
    RemoteRepViTSAM(base_url)           RepViTSAM.predict over HTTP (repvit_sam.remote)

Errors are all ``repvit_sam.errors.RemoteError``, with ``status_code`` and ``detail``; the tree
is drawn in ``repvit_sam.client_errors``. Errors and results (``repvit_sam.client_results``) are
re-exported here.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Literal, overload

import httpx
import numpy as np
from PIL import Image

from .client_errors import (
    _BY_STATUS,
    AuthenticationError,
    ConnectError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    ServiceBusyError,
    TaskTimeoutError,
    ValidationError,
)
from .client_results import AutoMask, EmbedResult, MaskResult, MasksResult, SegmentResult
from .embedding import ImageEmbedding
from .errors import InvalidInputError, RemoteError
from .image_io import load_image

logger = logging.getLogger(__name__)

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
    "SegmentResult",
    "ServerError",
    "ServiceBusyError",
    "TaskTimeoutError",
    "ValidationError",
]


class Client:
    """A synchronous client of the RepViT-SAM service.

    Args:
        base_url: Where ``repvit-sam serve`` listens, e.g. "http://127.0.0.1:8000".
        api_key: Sent as ``X-API-Key`` when the service requires one.
        timeout: Seconds per request.
        transport: An httpx transport (``httpx.MockTransport``, ``httpx.WSGITransport``...)
            for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ConnectError(0, f"{method} {path}: {err}") from err
        if response.is_success:
            return response
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        status = response.status_code
        logger.debug("%s %s -> %d: %s", method, path, status, detail)
        if status == 503:
            retry = response.headers.get("Retry-After")
            raise ServiceBusyError(status, detail, float(retry) if retry else None)
        raise _BY_STATUS.get(status, ServerError if status >= 500 else RemoteError)(status, detail)

    def healthy(self) -> bool:
        """True when /readyz answers 200 (model loaded)."""
        try:
            self._request("GET", "/readyz")
        except RemoteError:
            return False
        return True

    def embed(self, image: bytes | str | Any, filename: str = "image") -> EmbedResult:
        """Uploads an image (encoded bytes, a path, or anything ``load_image`` reads)."""
        data = encode_image(image)
        response = self._request("POST", "/embed", files={"image": (filename, data)})
        return EmbedResult(**response.json())

    def segment(
        self,
        embedding_id: str | None = None,
        points: Any = None,
        labels: Any = None,
        boxes: Any = None,
        *,
        mask_input_id: str | None = None,
        multimask: bool = False,
        format: str = "rle",
        image: Any = None,
    ) -> SegmentResult:
        """Masks for prompts in pixels: against ``embedding_id``, or uploading ``image``."""
        body: dict[str, Any] = {"multimask": multimask, "format": format}
        if points is not None:
            body["points"] = np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist()
        if labels is not None:
            body["labels"] = np.asarray(labels).reshape(-1).astype(int).tolist()
        if boxes is not None:
            body["boxes"] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()
        if mask_input_id is not None:
            body["mask_input_id"] = mask_input_id
        if image is not None:
            files = {"image": ("image", encode_image(image))}
            response = self._request(
                "POST", "/segment", files=files, data={"request": json.dumps(body)}
            )
        else:
            if embedding_id is None:
                raise InvalidInputError("segment needs embedding_id or image")
            response = self._request(
                "POST", "/segment", json={**body, "embedding_id": embedding_id}
            )
        payload = response.json()
        masks = [
            MaskResult(m["prompt"], m["score"], m["area"], tuple(m["bbox"]), m["segmentation"])
            for m in payload.pop("masks")
        ]
        return SegmentResult(masks=masks, **payload)

    def _post_task(
        self, path: str, embedding_id: str | None, image: Any, body: dict[str, Any], **kwargs: Any
    ) -> httpx.Response:
        """POSTs ``body`` as JSON against ``embedding_id``, or as multipart with ``image``."""
        if image is not None:
            files = {"image": ("image", encode_image(image))}
            data = {"request": json.dumps(body)}
            return self._request("POST", path, files=files, data=data, **kwargs)
        if embedding_id is None:
            raise InvalidInputError(f"{path.strip('/')} needs embedding_id or image")
        return self._request("POST", path, json={**body, "embedding_id": embedding_id}, **kwargs)

    def masks(
        self,
        embedding_id: str | None = None,
        *,
        image: Any = None,
        timeout: float | None = None,
        **params: Any,
    ) -> MasksResult:
        """Segments everything: ``SamAutomaticMaskGenerator``'s records, computed by the service.

        Args:
            embedding_id: From ``embed``; or leave out and pass ``image``.
            image: Encoded bytes, a path, or anything ``load_image`` reads; needed for
                ``crop_n_layers`` > 0.
            timeout: Seconds for this request (default: the client's); generation can take
                up to the service's time limit (120 s by default).
            **params: ``SamAutomaticMaskGenerator``'s parameters (points_per_side,
                pred_iou_thresh, stability_score_thresh, crop_n_layers, ...); the service
                bounds them and says which one it refused (``ValidationError``).

        Raises:
            TaskTimeoutError: The service's time limit passed first.
        """
        options = {} if timeout is None else {"timeout": timeout}
        response = self._post_task("/masks", embedding_id, image, params, **options)
        payload = response.json()
        masks = [
            AutoMask(**{**m, "bbox": tuple(m["bbox"]), "crop_box": tuple(m["crop_box"])})
            for m in payload.pop("masks")
        ]
        return MasksResult(masks=masks, **payload)

    @overload
    def edges(
        self,
        embedding_id: str | None = ...,
        *,
        image: Any = ...,
        format: Literal["npy"] = ...,
        timeout: float | None = ...,
        **params: Any,
    ) -> np.ndarray: ...

    @overload
    def edges(
        self,
        embedding_id: str | None = ...,
        *,
        image: Any = ...,
        format: Literal["png"],
        timeout: float | None = ...,
        **params: Any,
    ) -> bytes: ...

    def edges(
        self,
        embedding_id: str | None = None,
        *,
        image: Any = None,
        format: Literal["npy", "png"] = "npy",
        timeout: float | None = None,
        **params: Any,
    ) -> np.ndarray | bytes:
        """The image's edge map (SAM's zero-shot edge detection), computed by the service.

        Args:
            embedding_id: From ``embed``; or leave out and pass ``image``.
            image: Encoded bytes, a path, or anything ``load_image`` reads.
            format: "npy": an HxW float32 array in [0, 1]; "png": the 8-bit PNG's bytes.
            timeout: Seconds for this request (default: the client's).
            **params: ``EdgeDetector``'s parameters: points_per_side (16), points_per_batch,
                nms_thresh (0.7), boundary_width (1).

        Raises:
            TaskTimeoutError: The service's time limit passed first.
        """
        if format not in ("npy", "png"):
            raise InvalidInputError(f"format must be 'npy' or 'png', got {format!r}")
        options = {} if timeout is None else {"timeout": timeout}
        body = {**params, "format": format}
        response = self._post_task("/edges", embedding_id, image, body, **options)
        if format == "png":
            return response.content
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def embedding(self, embedding_id: str) -> ImageEmbedding:
        """The cached embedding, to run the decoder locally."""
        response = self._request("GET", f"/embeddings/{embedding_id}")
        features = np.load(io.BytesIO(response.content), allow_pickle=False)
        original = tuple(int(v) for v in response.headers["X-Original-Size"].split(","))
        input_size = tuple(int(v) for v in response.headers["X-Input-Size"].split(","))
        return ImageEmbedding.from_numpy(features, original, input_size)  # type: ignore[arg-type]

    def delete_embedding(self, embedding_id: str) -> None:
        self._request("DELETE", f"/embeddings/{embedding_id}")

    def logits(self, logits_id: str) -> np.ndarray:
        """BxCxSxS low-res logits of a /segment answer."""
        response = self._request("GET", f"/logits/{logits_id}")
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def upload_logits(self, logits: np.ndarray) -> str:
        """Stores SxS, 1xSxS or Bx1xSxS logits server-side; the id goes in ``mask_input_id``."""
        stream = io.BytesIO()
        np.save(stream, np.asarray(logits, dtype=np.float32), allow_pickle=False)
        headers = {"Content-Type": "application/octet-stream"}
        response = self._request("POST", "/logits", content=stream.getvalue(), headers=headers)
        return response.json()["logits_id"]


def encode_image(image: Any) -> bytes:
    """Encoded image bytes: files and bytes as they are, arrays and PIL images as PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        with open(image, "rb") as stream:
            return stream.read()
    stream = io.BytesIO()
    Image.fromarray(load_image(image)).save(stream, format="PNG")
    return stream.getvalue()
