"""The verified download, against a local HTTP server serving checkpoints the tests write."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from repvit_sam import WeightsDownloadError, download_weights, weights


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    lie_about_length: ClassVar[set[str]] = set()

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        length = len(body) + (100 if self.path in self.lie_about_length else 0)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()


@pytest.fixture
def small_weights(monkeypatch):
    spec = weights.PretrainedWeights("small", "m0_9", "http://127.0.0.1:9/unused", "small.pt")
    monkeypatch.setitem(weights.WEIGHTS, "small", spec)
    return spec


def test_official_weights_are_registered():
    spec = weights.WEIGHTS["repvit_sam"]
    assert spec.variant == "m2_3"
    assert spec.url == "https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_sam.pt"


def test_download_verifies_and_renames(server, small_weights, small_checkpoint, tmp_path):
    url, handler = server
    data = small_checkpoint.read_bytes()
    handler.files["/good.pt"] = data
    digest = hashlib.sha256(data).hexdigest()
    path = download_weights("small", tmp_path, url=f"{url}/good.pt", sha256=digest, progress=False)
    assert path == tmp_path / "small.pt" and path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["small.pt"]  # no temporary file left
    # A second call uses the cached file without any download.
    assert download_weights("small", tmp_path, url=f"{url}/missing", progress=False) == path


def test_official_layout_download(server, official_layout_checkpoint, tmp_path):
    url, handler = server
    handler.files["/repvit_sam.pt"] = official_layout_checkpoint.read_bytes()
    path = download_weights(cache_dir=tmp_path, url=f"{url}/repvit_sam.pt", progress=False)
    assert path.name == "repvit_sam.pt"


def _assert_nothing_left(folder: Path):
    assert list(folder.iterdir()) == []


def test_wrong_digest_is_rejected(server, small_weights, small_checkpoint, tmp_path):
    url, handler = server
    handler.files["/good.pt"] = small_checkpoint.read_bytes()
    with pytest.raises(WeightsDownloadError, match="sha256"):
        download_weights("small", tmp_path, url=f"{url}/good.pt", sha256="0" * 64, progress=False)
    _assert_nothing_left(tmp_path)


def test_wrong_checkpoint_is_rejected(server, small_weights, official_layout_checkpoint, tmp_path):
    url, handler = server
    handler.files["/other.pt"] = official_layout_checkpoint.read_bytes()
    with pytest.raises(WeightsDownloadError, match="not small"):
        download_weights("small", tmp_path, url=f"{url}/other.pt", progress=False)
    _assert_nothing_left(tmp_path)


def test_cut_download_is_rejected(server, small_weights, small_checkpoint, tmp_path):
    url, handler = server
    handler.files["/cut.pt"] = small_checkpoint.read_bytes()
    handler.lie_about_length.add("/cut.pt")
    with pytest.raises(WeightsDownloadError):
        download_weights("small", tmp_path, url=f"{url}/cut.pt", progress=False, timeout=5)
    _assert_nothing_left(tmp_path)


def test_http_error(server, small_weights, tmp_path):
    url, _ = server
    with pytest.raises(WeightsDownloadError, match="404"):
        download_weights("small", tmp_path, url=f"{url}/absent.pt", progress=False)
    _assert_nothing_left(tmp_path)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown weights"):
        download_weights("vit_h")


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REPVIT_SAM_HOME", str(tmp_path / "home"))
    assert weights.default_cache_dir() == tmp_path / "home"
    monkeypatch.delenv("REPVIT_SAM_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.default_cache_dir() == tmp_path / "xdg" / "repvit_sam"


def test_checkpoint_built_from_downloaded_file_works(
    server, small_weights, small_checkpoint, tmp_path
):
    from repvit_sam import build_repvit_sam

    url, handler = server
    handler.files["/good.pt"] = small_checkpoint.read_bytes()
    path = download_weights("small", tmp_path, url=f"{url}/good.pt", progress=False)
    model = build_repvit_sam(path, variant="m0_9")
    expected = torch.load(small_checkpoint, weights_only=True)["mask_decoder.iou_token.weight"]
    assert torch.equal(model.mask_decoder.iou_token.weight, expected)


def test_mirror_from_environment(server, small_weights, small_checkpoint, tmp_path, monkeypatch):
    url, handler = server
    handler.files["/mirror/small.pt"] = small_checkpoint.read_bytes()
    monkeypatch.setenv(weights.MIRROR_ENV, f"{url}/mirror/small.pt")
    path = download_weights("small", tmp_path, progress=False)
    assert path.read_bytes() == small_checkpoint.read_bytes()


def test_failed_download_says_how_to_do_without_it(server, small_weights, tmp_path):
    url, _ = server
    with pytest.raises(WeightsDownloadError) as caught:
        download_weights("small", tmp_path, url=f"{url}/absent.pt", progress=False)
    message = str(caught.value)
    assert message.startswith(f"download of {url}/absent.pt failed")
    for advice in (
        "--checkpoint PATH",
        "REPVIT_SAM_CHECKPOINT=PATH",
        "RepViTSAM(PATH)",
        str(tmp_path / "small.pt"),
        "$REPVIT_SAM_WEIGHTS_URL=URL",
        "repvit-sam download --url URL",
    ):
        assert advice in message
