"""The bad-input corpus: requests every route must refuse with a specific 4xx and a JSON body
naming what was wrong (and a few odd but valid images, which must be accepted).

Each case is data: the request (built lazily, so that collecting the tests costs nothing), the
status expected and a word the JSON answer must contain (a field's name, a setting's, or what
the image was). ``EID`` in a JSON body, a form field or a path stands for the id of an
embedded test image. The cases run against an app with the limits ``LIMITS``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bad_payloads import (
    animated_gif,
    big,
    exif_rotated_jpeg,
    jpeg,
    logits,
    mode,
    multipage_tiff,
    npy,
    npy_header_only,
    palette_transparent,
    png,
    png_bad_crc,
    png_bomb,
    png_claiming,
    png_corrupt_idat,
    png_text_bomb,
    png_without_idat,
    random_bytes,
    rgb,
    save,
    truncated,
)
from PIL import Image

# Replaced, in JSON strings, form fields and paths, by the embedded image's id.
EID = "EID"
# The embedded test image is WIDTH x HEIGHT.
WIDTH, HEIGHT = 160, 120
LIMITS: dict[str, Any] = {
    "max_points": 8,
    "max_boxes": 8,
    "max_pixels": 1_000_000,
    "max_upload_bytes": 2_000_000,
    "max_json_bytes": 64 << 10,
    "max_points_per_side": 4,
    "max_edge_points_per_side": 4,
    "max_points_per_batch": 64,
    # One mask of the test image fits; three (multimask) do not.
    "max_output_pixels": 2 * WIDTH * HEIGHT,
}


@dataclass(frozen=True)
class Case:
    """One request and what it must get.

    Attributes:
        id: The test's name.
        method: HTTP method.
        path: The route; ``EID`` is replaced by the embedded image's id.
        status: The expected status.
        names: A word the JSON answer must contain (field, setting or image problem).
        build: Returns httpx's keyword arguments (``content``, ``files``, ``headers``...).
    """

    id: str
    method: str
    path: str
    status: int
    names: str
    build: Callable[[], dict[str, Any]] = field(default=lambda: {})


def _json(body: Any) -> Callable[[], dict[str, Any]]:
    """A JSON body (``EID`` values replaced later); ``str``/``bytes`` are sent as they are."""

    def build() -> dict[str, Any]:
        raw = body if isinstance(body, str | bytes) else json.dumps(body, allow_nan=True)
        return {"content": raw, "headers": {"Content-Type": "application/json"}}

    return build


def _form(files: dict[str, Any], data: dict[str, str] | None = None) -> Callable[[], dict]:
    def build() -> dict[str, Any]:
        built = {name: (value() if callable(value) else value) for name, value in files.items()}
        return {"files": built, "data": data or {}}

    return build


def _upload(make: Callable[[], bytes], name: str = "a.png", request: str | None = None):
    data = {} if request is None else {"request": request}
    return _form({"image": lambda: (name, make())}, data)


def _raw(content: bytes, content_type: str | None, **headers: str) -> Callable[[], dict]:
    def build() -> dict[str, Any]:
        if content_type is not None:
            headers["Content-Type"] = content_type
        return {"content": content, "headers": headers}

    return build


# The corpus -----------------------------------------------------------------------------------

_POINT = {"embedding_id": EID, "points": [[80, 60]]}
_DEEP = "[" * 20000 + "]" * 20000

SEGMENT_JSON = [
    Case("malformed json", "POST", "/segment", 422, "json_invalid", _json('{"embedding_id": ')),
    Case("json array body", "POST", "/segment", 422, "body", _json([])),
    Case("json string body", "POST", "/segment", 422, "body", _json('"points"')),
    Case("json null body", "POST", "/segment", 422, "body", _json("null")),
    Case("empty json body", "POST", "/segment", 422, "json_invalid", _json(b"")),
    Case("invalid utf-8", "POST", "/segment", 422, "body", _json(b'{"points": "\xff\xfe"}')),
    Case("deeply nested json", "POST", "/segment", 422, "body", _json(f'{{"points": {_DEEP}}}')),
    Case(
        "json over max_json_bytes",
        "POST",
        "/segment",
        413,
        "max_json_bytes",
        _json({**_POINT, "pad": "x" * (70 << 10)}),
    ),
    Case(
        "embedding_id number",
        "POST",
        "/segment",
        422,
        "embedding_id",
        _json({**_POINT, "embedding_id": 12345}),
    ),
    Case(
        "embedding_id not hex",
        "POST",
        "/segment",
        422,
        "embedding_id",
        _json({**_POINT, "embedding_id": "../../etc/passwd"}),
    ),
    Case(
        "embedding_id upper hex",
        "POST",
        "/segment",
        422,
        "embedding_id",
        _json({**_POINT, "embedding_id": "AB" * 16}),
    ),
    Case(
        "embedding_id 33 digits",
        "POST",
        "/segment",
        422,
        "embedding_id",
        _json({**_POINT, "embedding_id": "a" * 33}),
    ),
    Case(
        "embedding_id unknown",
        "POST",
        "/segment",
        404,
        "embedding_id",
        _json({**_POINT, "embedding_id": "0" * 32}),
    ),
    Case(
        "embedding_id missing", "POST", "/segment", 422, "embedding_id", _json({"points": [[1, 1]]})
    ),
    Case("points not a list", "POST", "/segment", 422, "points", _json({**_POINT, "points": "ab"})),
    Case(
        "point of 3 values",
        "POST",
        "/segment",
        422,
        "points",
        _json({**_POINT, "points": [[1, 2, 3]]}),
    ),
    Case("point of 1 value", "POST", "/segment", 422, "points", _json({**_POINT, "points": [[1]]})),
    Case(
        "point NaN",
        "POST",
        "/segment",
        422,
        "points",
        _json('{"embedding_id": "EID", "points": [[NaN, 1]]}'),
    ),
    Case(
        "point Infinity",
        "POST",
        "/segment",
        422,
        "points",
        _json('{"embedding_id": "EID", "points": [[Infinity, 1]]}'),
    ),
    Case(
        "point -Infinity",
        "POST",
        "/segment",
        422,
        "points",
        _json('{"embedding_id": "EID", "points": [[1, -Infinity]]}'),
    ),
    Case(
        "point 1e400",
        "POST",
        "/segment",
        422,
        "points",
        _json('{"embedding_id": "EID", "points": [[1e400, 1]]}'),
    ),
    Case(
        "point 1e308 outside",
        "POST",
        "/segment",
        422,
        "points[0]",
        _json({**_POINT, "points": [[1e308, 1]]}),
    ),
    Case(
        "point negative",
        "POST",
        "/segment",
        422,
        "points[0]",
        _json({**_POINT, "points": [[-1, 5]]}),
    ),
    Case(
        "point past the width",
        "POST",
        "/segment",
        422,
        "points[0]",
        _json({**_POINT, "points": [[WIDTH + 1, 5]]}),
    ),
    Case(
        "point huge int",
        "POST",
        "/segment",
        422,
        "points",
        _json('{"embedding_id": "EID", "points": [[' + "9" * 400 + ", 1]]}"),
    ),
    Case(
        "point strings",
        "POST",
        "/segment",
        422,
        "points",
        _json({**_POINT, "points": [["one", "two"]]}),
    ),
    Case(
        "too many points",
        "POST",
        "/segment",
        422,
        "points",
        _json({**_POINT, "points": [[1, 1]] * 9}),
    ),
    Case("label 2", "POST", "/segment", 422, "labels", _json({**_POINT, "labels": [2]})),
    Case("label -1", "POST", "/segment", 422, "labels", _json({**_POINT, "labels": [-1]})),
    Case("label string", "POST", "/segment", 422, "labels", _json({**_POINT, "labels": ["fg"]})),
    Case("labels count", "POST", "/segment", 422, "labels", _json({**_POINT, "labels": [1, 0]})),
    Case("labels not a list", "POST", "/segment", 422, "labels", _json({**_POINT, "labels": 1})),
    Case(
        "box of 3 values",
        "POST",
        "/segment",
        422,
        "boxes",
        _json({"embedding_id": EID, "boxes": [[1, 2, 3]]}),
    ),
    Case(
        "box inverted",
        "POST",
        "/segment",
        422,
        "boxes",
        _json({"embedding_id": EID, "boxes": [[50, 50, 10, 10]]}),
    ),
    Case(
        "box empty",
        "POST",
        "/segment",
        422,
        "boxes",
        _json({"embedding_id": EID, "boxes": [[10, 10, 10, 40]]}),
    ),
    Case(
        "box outside",
        "POST",
        "/segment",
        422,
        "boxes[0]",
        _json({"embedding_id": EID, "boxes": [[10, 10, 500, 40]]}),
    ),
    Case(
        "box NaN",
        "POST",
        "/segment",
        422,
        "boxes",
        _json('{"embedding_id": "EID", "boxes": [[NaN, 0, 5, 5]]}'),
    ),
    Case(
        "too many boxes",
        "POST",
        "/segment",
        422,
        "boxes",
        _json({"embedding_id": EID, "boxes": [[1, 1, 9, 9]] * 9}),
    ),
    Case(
        "boxes not a list",
        "POST",
        "/segment",
        422,
        "boxes",
        _json({"embedding_id": EID, "boxes": {"x": 1}}),
    ),
    Case("empty prompt", "POST", "/segment", 422, "empty prompt", _json({"embedding_id": EID})),
    Case(
        "empty lists",
        "POST",
        "/segment",
        422,
        "empty prompt",
        _json({"embedding_id": EID, "points": [], "boxes": []}),
    ),
    Case(
        "multimask yes", "POST", "/segment", 422, "multimask", _json({**_POINT, "multimask": "yes"})
    ),
    Case("multimask 1", "POST", "/segment", 422, "multimask", _json({**_POINT, "multimask": 1})),
    Case(
        "multimask null", "POST", "/segment", 422, "multimask", _json({**_POINT, "multimask": None})
    ),
    Case("format gif", "POST", "/segment", 422, "format", _json({**_POINT, "format": "gif"})),
    Case("format upper", "POST", "/segment", 422, "format", _json({**_POINT, "format": "RLE"})),
    Case("unknown field", "POST", "/segment", 422, "pointz", _json({**_POINT, "pointz": []})),
    Case(
        "mask_input_id not hex",
        "POST",
        "/segment",
        422,
        "mask_input_id",
        _json({**_POINT, "mask_input_id": "zz"}),
    ),
    Case(
        "mask_input_id unknown",
        "POST",
        "/segment",
        404,
        "logits id",
        _json({**_POINT, "mask_input_id": "f" * 32}),
    ),
    Case(
        "output over max_output_pixels",
        "POST",
        "/segment",
        413,
        "MAX_OUTPUT_PIXELS",
        _json({**_POINT, "multimask": True}),
    ),
]

SEGMENT_OTHER = [
    Case(
        "text/plain body",
        "POST",
        "/segment",
        415,
        "Content-Type",
        _raw(json.dumps(_POINT).encode(), "text/plain"),
    ),
    Case(
        "no content type",
        "POST",
        "/segment",
        415,
        "Content-Type",
        _raw(json.dumps(_POINT).encode(), None),
    ),
    Case(
        "urlencoded form",
        "POST",
        "/segment",
        415,
        "Content-Type",
        _raw(b"embedding_id=x&points=1", "application/x-www-form-urlencoded"),
    ),
    Case("xml body", "POST", "/segment", 415, "Content-Type", _raw(b"<a/>", "application/xml")),
    Case(
        "multipart without image",
        "POST",
        "/segment",
        422,
        "image",
        _form({"other": ("a.txt", b"x")}, {"request": '{"points": [[1, 1]]}'}),
    ),
    Case(
        "multipart image as text",
        "POST",
        "/segment",
        422,
        "image",
        _form({"other": ("a.txt", b"x")}, {"image": "not a file", "request": "{}"}),
    ),
    Case(
        "multipart request not json",
        "POST",
        "/segment",
        422,
        "request",
        _upload(png, request="points=1,1"),
    ),
    Case(
        "multipart request as file",
        "POST",
        "/segment",
        422,
        "request",
        _form({"image": lambda: ("a.png", png()), "request": ("r.json", b"{}")}),
    ),
    Case(
        "multipart with embedding_id",
        "POST",
        "/segment",
        422,
        "embedding_id",
        _upload(png, request=json.dumps(_POINT)),
    ),
    Case(
        "multipart corrupt image",
        "POST",
        "/segment",
        422,
        "image",
        _upload(lambda: random_bytes(500), request='{"points": [[1, 1]]}'),
    ),
    Case(
        "multipart no boundary",
        "POST",
        "/segment",
        400,
        "multipart",
        _raw(b"--x\r\n\r\n", "multipart/form-data"),
    ),
    Case(
        "multipart truncated",
        "POST",
        "/segment",
        422,
        "image",
        _raw(
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\nab',
            "multipart/form-data; boundary=b",
        ),
    ),
    Case(
        "multipart request over max_json_bytes",
        "POST",
        "/segment",
        413,
        "max_json_bytes",
        _upload(png, request=json.dumps({"points": [[1, 1]], "pad": "x" * (70 << 10)})),
    ),
]


def _embed(name: str, status: int, names: str, make: Callable[[], bytes], filename="a.png"):
    return Case(name, "POST", "/embed", status, names, _upload(make, filename))


EMBED = [
    Case(
        "embed no image field",
        "POST",
        "/embed",
        422,
        "image",
        _form({"picture": ("a.png", png())}),
    ),
    Case("embed json body", "POST", "/embed", 422, "image", _json({"image": "aGVsbG8="})),
    Case("embed text/plain", "POST", "/embed", 422, "image", _raw(b"hello", "text/plain")),
    Case(
        "embed image as text field",
        "POST",
        "/embed",
        422,
        "image",
        _form({}, {"image": "iVBORw0KGgo="}),
    ),
    _embed("empty file", 422, "image", lambda: b""),
    _embed("random bytes", 422, "image", lambda: random_bytes(4096)),
    _embed("text file", 422, "image", lambda: b"hello, world\n" * 10, "a.txt"),
    _embed("svg", 422, "image", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg"),
    _embed("pdf", 422, "image", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a.pdf"),
    _embed("gzip of zeros", 422, "image", lambda: gzip.compress(b"\x00" * (8 << 20)), "a.gz"),
    _embed("png signature only", 422, "image", lambda: b"\x89PNG\r\n\x1a\n"),
    _embed("png truncated", 422, "image", truncated(png)),
    _embed("png truncated early", 422, "image", truncated(png, 0.1)),
    _embed("png bad crc", 422, "image", png_bad_crc),
    _embed("png without idat", 422, "image", png_without_idat),
    _embed("png corrupt idat", 422, "image", png_corrupt_idat),
    _embed("png zero width", 422, "image", lambda: png_claiming(0, 10, zlib.compress(b"\0"))),
    _embed("png bomb", 413, "image", png_bomb),
    _embed(
        "png header claims 100000x100000",
        413,
        "image",
        lambda: png_claiming(100_000, 100_000, zlib.compress(b"\0" * 64)),
    ),
    _embed("png header claims 2^31 wide", 413, "image", lambda: png_claiming(2**31 - 1, 1)),
    _embed("png text chunk bomb", 422, "image", png_text_bomb),
    _embed("png over max_pixels", 413, "image", big("PNG")),
    _embed("jpeg over max_pixels", 413, "image", big("JPEG"), "a.jpg"),
    _embed("gif over max_pixels", 413, "image", big("GIF"), "a.gif"),
    _embed("tiff over max_pixels", 413, "image", big("TIFF", compression="tiff_deflate"), "a.tif"),
    _embed("webp over max_pixels", 413, "image", big("WEBP"), "a.webp"),
    _embed("bmp over max_pixels", 413, "image", big("BMP", "L"), "a.bmp"),
    _embed("jpeg soi only", 422, "image", lambda: b"\xff\xd8", "a.jpg"),
    _embed("jpeg truncated", 422, "image", truncated(jpeg, 0.3), "a.jpg"),
    _embed("tiff truncated", 422, "image", truncated(lambda: save(rgb(), "TIFF")), "a.tif"),
    _embed("webp truncated", 422, "image", truncated(lambda: save(rgb(), "WEBP")), "a.webp"),
    _embed("gif truncated", 422, "image", truncated(lambda: save(rgb(), "GIF"), 0.05)),
    _embed("bmp header only", 422, "image", lambda: save(rgb(), "BMP")[:30], "a.bmp"),
    _embed("aspect beyond 2048", 422, "image", lambda: save(Image.new("RGB", (4100, 1)), "PNG")),
    _embed(
        "upload over max_upload_bytes",
        413,
        "max_upload_bytes",
        lambda: b"\x89PNG\r\n\x1a\n" + random_bytes(2_100_000),
    ),
    Case(
        "content-length over the limit",
        "POST",
        "/embed",
        413,
        "max_upload_bytes",
        _raw(b"x", "multipart/form-data; boundary=b", **{"Content-Length": str(1 << 30)}),
    ),
]

# Odd but valid images: accepted, converted to RGB.
ACCEPTED_IMAGES = [
    _embed("16-bit grayscale png", 200, "embedding_id", mode("I;16")),
    _embed("float tiff", 200, "embedding_id", mode("F", fmt="TIFF"), "a.tif"),
    _embed("cmyk jpeg", 200, "embedding_id", mode("CMYK", fmt="JPEG"), "a.jpg"),
    _embed("cmyk tiff", 200, "embedding_id", mode("CMYK", fmt="TIFF"), "a.tif"),
    _embed("palette png", 200, "embedding_id", mode("P")),
    _embed("palette png with transparency", 200, "embedding_id", palette_transparent),
    _embed("1-bit png", 200, "embedding_id", mode("1")),
    _embed("grayscale alpha png", 200, "embedding_id", mode("LA")),
    _embed("rgba png", 200, "embedding_id", mode("RGBA")),
    _embed("rgba webp", 200, "embedding_id", mode("RGBA", fmt="WEBP", lossless=True)),
    _embed("animated gif", 200, "embedding_id", animated_gif, "a.gif"),
    _embed("multipage tiff", 200, "embedding_id", multipage_tiff, "a.tif"),
    _embed("exif-rotated jpeg", 200, "embedding_id", exif_rotated_jpeg, "a.jpg"),
    _embed("1x1 png", 200, "embedding_id", lambda: png(1, 1)),
    _embed("png named .jpg", 200, "embedding_id", png, "a.jpg"),
]

_FULL = "/embeddings/" + EID
NPY = "application/octet-stream"
EMBEDDINGS = [
    Case("get embedding not hex", "GET", "/embeddings/xyz", 422, "embedding_id"),
    Case("get embedding upper", "GET", "/embeddings/" + "AB" * 16, 422, "embedding_id"),
    Case("get embedding 31 digits", "GET", "/embeddings/" + "a" * 31, 422, "embedding_id"),
    Case("get embedding unknown", "GET", "/embeddings/" + "1" * 32, 404, "embedding_id"),
    Case("get embedding dot-dot", "GET", "/embeddings/..%2F..%2Fetc", 404, "Not Found"),
    Case("delete embedding not hex", "DELETE", "/embeddings/xyz", 422, "embedding_id"),
    Case("delete embedding unknown", "DELETE", "/embeddings/" + "2" * 32, 404, "embedding_id"),
    Case("put embedding", "PUT", _FULL, 405, "Method Not Allowed"),
    Case("get logits not hex", "GET", "/logits/xyz", 422, "logits_id"),
    Case("get logits unknown", "GET", "/logits/" + "3" * 32, 404, "logits id"),
    Case("logits empty body", "POST", "/logits", 422, "logits", _raw(b"", NPY)),
    Case("logits not npy", "POST", "/logits", 422, "logits", _raw(random_bytes(300), NPY)),
    Case(
        "logits npy magic only", "POST", "/logits", 422, "logits", _raw(b"\x93NUMPY\x01\x00", NPY)
    ),
    Case(
        "logits wrong shape",
        "POST",
        "/logits",
        422,
        "logits",
        _raw(npy(np.zeros((3, 5), np.float32)), NPY),
    ),
    Case(
        "logits wrong side",
        "POST",
        "/logits",
        422,
        "logits",
        lambda: _raw(logits(side=32)(), NPY)(),
    ),
    Case(
        "logits header claims huge",
        "POST",
        "/logits",
        422,
        "logits",
        _raw(npy_header_only((1 << 20, 1, 64, 64)), NPY),
    ),
    Case(
        "logits data shorter than header",
        "POST",
        "/logits",
        422,
        "logits",
        _raw(npy_header_only((1, 1, 64, 64)), NPY),
    ),
    Case("logits strings", "POST", "/logits", 422, "dtype", _raw(npy(np.array(["a", "b"])), NPY)),
    Case(
        "logits object pickle",
        "POST",
        "/logits",
        422,
        "dtype",
        _raw(npy(np.array([{"a": 1}], dtype=object)), NPY),
    ),
    Case(
        "logits complex",
        "POST",
        "/logits",
        422,
        "dtype",
        lambda: _raw(logits(dtype=np.complex64)(), NPY)(),
    ),
    Case("logits bool", "POST", "/logits", 422, "dtype", lambda: _raw(logits(dtype=bool)(), NPY)()),
    Case("logits NaN", "POST", "/logits", 422, "NaN", lambda: _raw(logits(fill=np.nan)(), NPY)()),
    Case(
        "logits too many prompts",
        "POST",
        "/logits",
        422,
        "logits",
        lambda: _raw(logits(prompts=9)(), NPY)(),
    ),
    Case(
        "logits over max_upload",
        "POST",
        "/logits",
        413,
        "max_upload_bytes",
        _raw(b"\0" * 3_200_000, NPY),
    ),
]

EVERYTHING = [
    Case(
        "masks points_per_side 0",
        "POST",
        "/masks",
        422,
        "points_per_side",
        _json({"embedding_id": EID, "points_per_side": 0}),
    ),
    Case(
        "masks points_per_side over limit",
        "POST",
        "/masks",
        422,
        "MAX_POINTS_PER_SIDE",
        _json({"embedding_id": EID, "points_per_side": 5}),
    ),
    Case(
        "masks default grid over limit",
        "POST",
        "/masks",
        422,
        "MAX_POINTS_PER_SIDE",
        _json({"embedding_id": EID}),
    ),
    Case(
        "masks points_per_batch 0",
        "POST",
        "/masks",
        422,
        "points_per_batch",
        _json({"embedding_id": EID, "points_per_side": 2, "points_per_batch": 0}),
    ),
    Case(
        "masks points_per_batch over limit",
        "POST",
        "/masks",
        422,
        "MAX_POINTS_PER_BATCH",
        _json({"embedding_id": EID, "points_per_side": 2, "points_per_batch": 65}),
    ),
    Case(
        "masks pred_iou_thresh 2",
        "POST",
        "/masks",
        422,
        "pred_iou_thresh",
        _json({"embedding_id": EID, "points_per_side": 2, "pred_iou_thresh": 2}),
    ),
    Case(
        "masks pred_iou_thresh NaN",
        "POST",
        "/masks",
        422,
        "pred_iou_thresh",
        _json('{"embedding_id": "EID", "points_per_side": 2, "pred_iou_thresh": NaN}'),
    ),
    Case(
        "masks stability offset 0",
        "POST",
        "/masks",
        422,
        "stability_score_offset",
        _json({"embedding_id": EID, "points_per_side": 2, "stability_score_offset": 0}),
    ),
    Case(
        "masks crop layers with an id",
        "POST",
        "/masks",
        422,
        "crop_n_layers",
        _json({"embedding_id": EID, "points_per_side": 2, "crop_n_layers": 1}),
    ),
    Case(
        "masks crop layers 3",
        "POST",
        "/masks",
        422,
        "crop_n_layers",
        _json({"embedding_id": EID, "points_per_side": 2, "crop_n_layers": 3}),
    ),
    Case(
        "masks crop grid without points",
        "POST",
        "/masks",
        422,
        "crop_n_points_downscale",
        _upload(
            png,
            request=json.dumps(
                {"points_per_side": 2, "crop_n_layers": 1, "crop_n_points_downscale_factor": 4}
            ),
        ),
    ),
    Case(
        "masks min region negative",
        "POST",
        "/masks",
        422,
        "min_mask_region_area",
        _json({"embedding_id": EID, "points_per_side": 2, "min_mask_region_area": -1}),
    ),
    Case(
        "masks output_mode binary",
        "POST",
        "/masks",
        422,
        "output_mode",
        _json({"embedding_id": EID, "points_per_side": 2, "output_mode": "binary_mask"}),
    ),
    Case(
        "masks unknown field",
        "POST",
        "/masks",
        422,
        "points_per_sides",
        _json({"embedding_id": EID, "points_per_sides": 2}),
    ),
    Case(
        "masks points_per_side float",
        "POST",
        "/masks",
        422,
        "points_per_side",
        _json({"embedding_id": EID, "points_per_side": 2.5}),
    ),
    Case(
        "masks unknown embedding",
        "POST",
        "/masks",
        404,
        "embedding_id",
        _json({"embedding_id": "4" * 32, "points_per_side": 2}),
    ),
    Case("masks text/plain", "POST", "/masks", 415, "Content-Type", _raw(b"{}", "text/plain")),
    Case(
        "masks multipart without image",
        "POST",
        "/masks",
        422,
        "image",
        _form({"x": ("a", b"1")}, {"request": "{}"}),
    ),
    Case(
        "edges points_per_side over limit",
        "POST",
        "/edges",
        422,
        "MAX_EDGE_POINTS_PER_SIDE",
        _json({"embedding_id": EID, "points_per_side": 5}),
    ),
    Case(
        "edges default grid over limit",
        "POST",
        "/edges",
        422,
        "MAX_EDGE_POINTS_PER_SIDE",
        _json({"embedding_id": EID}),
    ),
    Case(
        "edges format jpg",
        "POST",
        "/edges",
        422,
        "format",
        _json({"embedding_id": EID, "points_per_side": 2, "format": "jpg"}),
    ),
    Case(
        "edges boundary_width 0",
        "POST",
        "/edges",
        422,
        "boundary_width",
        _json({"embedding_id": EID, "points_per_side": 2, "boundary_width": 0}),
    ),
    Case(
        "edges boundary_width 17",
        "POST",
        "/edges",
        422,
        "boundary_width",
        _json({"embedding_id": EID, "points_per_side": 2, "boundary_width": 17}),
    ),
    Case(
        "edges nms_thresh -1",
        "POST",
        "/edges",
        422,
        "nms_thresh",
        _json({"embedding_id": EID, "points_per_side": 2, "nms_thresh": -1}),
    ),
    Case(
        "edges nms_thresh Infinity",
        "POST",
        "/edges",
        422,
        "nms_thresh",
        _json('{"embedding_id": "EID", "points_per_side": 2, "nms_thresh": Infinity}'),
    ),
    Case(
        "edges unknown embedding",
        "POST",
        "/edges",
        404,
        "embedding_id",
        _json({"embedding_id": "5" * 32, "points_per_side": 2}),
    ),
    Case(
        "edges missing embedding",
        "POST",
        "/edges",
        422,
        "embedding_id",
        _json({"points_per_side": 2}),
    ),
    Case(
        "edges corrupt upload",
        "POST",
        "/edges",
        422,
        "image",
        _upload(truncated(png), request='{"points_per_side": 2}'),
    ),
    Case(
        "edges bomb upload",
        "POST",
        "/edges",
        413,
        "image",
        _upload(png_bomb, request='{"points_per_side": 2}'),
    ),
]

ROUTING = [
    Case("get segment", "GET", "/segment", 405, "Method Not Allowed"),
    Case("put embed", "PUT", "/embed", 405, "Method Not Allowed"),
    Case("unknown route", "GET", "/segmentation", 404, "Not Found"),
    Case("static outside the folder", "GET", "/static/..%2F..%2Fpyproject.toml", 404, "static"),
    Case("unknown sample", "GET", "/samples/zebra.jpg", 404, "sample"),
    Case("sample bad name", "GET", "/samples/A1.jpg", 422, "name"),
]

CORPUS: list[Case] = [
    *SEGMENT_JSON,
    *SEGMENT_OTHER,
    *EMBED,
    *ACCEPTED_IMAGES,
    *EMBEDDINGS,
    *EVERYTHING,
    *ROUTING,
]
