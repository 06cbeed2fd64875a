"""``Client``: the HTTP client of ``repvit-sam serve`` (httpx, numpy and Pillow; no torch)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Literal, overload

import httpx
import numpy as np

from .errors import (
    _BY_STATUS,
    ConnectError,
    RemoteError,
    ServerError,
    ServiceBusyError,
)
from .images import encode_image
from .results import AutoMask, Embedding, EmbedResult, MaskResult, MasksResult, SegmentResult

logger = logging.getLogger(__name__)

__all__ = ["Client"]


class Client:
    """A synchronous client of the RepViT-SAM service.

    Args:
        base_url: Where ``repvit-sam serve`` listens, e.g. "http://127.0.0.1:8000".
        api_key: Sent as ``X-API-Key`` when the service requires one.
        timeout: Seconds per request.
        transport: An httpx transport (``httpx.MockTransport``, ``httpx.WSGITransport``...)
            for tests.

    Images (``image`` arguments) are encoded bytes, a path, a PIL image or a uint8 array (see
    ``encode_image``); errors are ``RemoteError`` subclasses, one per way a request fails.
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

    def encode_image(self, image: Any) -> bytes:
        """The upload's bytes for ``image``; a subclass may accept more kinds of image."""
        return encode_image(image)

    def embed(self, image: Any, filename: str = "image") -> EmbedResult:
        """Uploads an image; the id it answers serves every later ``segment`` of it."""
        data = self.encode_image(image)
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
            files = {"image": ("image", self.encode_image(image))}
            response = self._request(
                "POST", "/segment", files=files, data={"request": json.dumps(body)}
            )
        else:
            if embedding_id is None:
                raise ValueError("segment needs embedding_id or image")
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
            files = {"image": ("image", self.encode_image(image))}
            data = {"request": json.dumps(body)}
            return self._request("POST", path, files=files, data=data, **kwargs)
        if embedding_id is None:
            raise ValueError(f"{path.strip('/')} needs embedding_id or image")
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
            image: The image to upload instead; needed for ``crop_n_layers`` > 0.
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
            image: The image to upload instead.
            format: "npy": an HxW float32 array in [0, 1]; "png": the 8-bit PNG's bytes.
            timeout: Seconds for this request (default: the client's).
            **params: ``EdgeDetector``'s parameters: points_per_side (16), points_per_batch,
                nms_thresh (0.7), boundary_width (1).

        Raises:
            TaskTimeoutError: The service's time limit passed first.
        """
        if format not in ("npy", "png"):
            raise ValueError(f"format must be 'npy' or 'png', got {format!r}")
        options = {} if timeout is None else {"timeout": timeout}
        body = {**params, "format": format}
        response = self._post_task("/edges", embedding_id, image, body, **options)
        if format == "png":
            return response.content
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def embedding(self, embedding_id: str) -> Embedding:
        """The cached embedding as numpy, with the geometry the decoder needs."""
        response = self._request("GET", f"/embeddings/{embedding_id}")
        features = np.load(io.BytesIO(response.content), allow_pickle=False)
        original = tuple(int(v) for v in response.headers["X-Original-Size"].split(","))
        input_size = tuple(int(v) for v in response.headers["X-Input-Size"].split(","))
        return Embedding(features, original, input_size)  # type: ignore[arg-type]

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
