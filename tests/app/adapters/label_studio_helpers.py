"""Bodies of Label Studio's ML backend requests, and a loopback server standing in for Label
Studio's file serving (with its token check), for the adapter's tests."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from repvit_sam_client import decode_rle as decode_coco_rle

# The SDK's SAM example config: brush masks, smart keypoints and rectangles.
BRUSH_CONFIG = """
<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Banana" background="#FF0000"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Banana" smart="true" background="#000000" showInline="true"/>
  </KeyPointLabels>
  <RectangleLabels name="tag3" toName="image" smart="true">
    <Label value="Banana" background="#000000" showInline="true"/>
  </RectangleLabels>
</View>
"""
POLYGON_CONFIG = BRUSH_CONFIG.replace("BrushLabels", "PolygonLabels")
TOKEN = "ls-token-0123"


def jwt(**claims: object) -> str:
    """A JWT-shaped token (unsigned: the stand-in server checks it by equality)."""
    header = {"alg": "HS256", "typ": "JWT"}
    parts = [json.dumps(part).encode() for part in (header, claims)]
    encoded = [base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts]
    return ".".join([*encoded, "c2lnbmF0dXJl"])


# A personal access token (a refresh token) and the access token it is exchanged for.
PERSONAL_TOKEN = jwt(token_type="refresh", exp=int(time.time()) + 86400, jti="1")
ACCESS_TOKEN = jwt(token_type="access", exp=int(time.time()) + 3600, jti="2")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def click(x: float, y: float, width: int, height: int, positive: bool = True) -> dict:
    """A smart keypoint at (x, y) percent, as Label Studio sends it in ``context.result``."""
    return {
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["Banana"]},
        "is_positive": positive,
        "id": "fBWv1t0S2L",
        "from_name": "tag2",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }


def box(x: float, y: float, w: float, h: float, width: int, height: int) -> dict:
    return {
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                  "rectanglelabels": ["Banana"]},
        "id": "r1",
        "from_name": "tag3",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }  # fmt: skip


def predict_body(image_url: str, context: list[dict], config: str = BRUSH_CONFIG) -> dict:
    """``MLApi.make_predictions``' body for one task."""
    return {
        "tasks": [{"id": 7, "data": {"image": image_url}}],
        "project": "1.1700000000",
        "label_config": config,
        "params": {"login": None, "password": None, "context": {"result": context}},
    }


def best_segment_mask(answer: dict) -> tuple[np.ndarray, float]:
    """The highest-scoring mask of a /segment answer (format "rle") and its score."""
    best = max(answer["masks"], key=lambda m: m["score"])
    return decode_coco_rle(best["segmentation"]), best["score"]


class FileServer:
    """Serves ``files`` (path -> bytes) on a loopback port, 401 without ``Token TOKEN`` or
    ``Bearer ACCESS_TOKEN``; exchanges ``PERSONAL_TOKEN`` at /api/token/refresh/ as Label
    Studio does; counts the requests it gets."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                data = owner.files.get(self.path)
                if self.headers.get("Authorization") not in (
                    f"Token {TOKEN}",
                    f"Bearer {ACCESS_TOKEN}",
                ):
                    self.send_response(401)
                    data = b""
                elif data is None:
                    self.send_response(404)
                    data = b""
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                owner.hits.append(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                sent = json.loads(self.rfile.read(length) or b"{}")
                good = self.path == "/api/token/refresh/" and sent == {"refresh": PERSONAL_TOKEN}
                data = json.dumps({"access": ACCESS_TOKEN} if good else {"detail": "no"}).encode()
                self.send_response(200 if good else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[FileServer]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join()
