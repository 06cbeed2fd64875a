"""The persistent embedding store and its value format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repvit_sam import ImageEmbedding, InvalidInputError
from repvit_sam.dataset import EmbeddingStore
from repvit_sam.embedding_codec import MAGIC, CorruptValueError, decode_value, encode_value

KEY = "0123456789abcdef0123456789abcdef"


def _embedding(seed: int = 0) -> ImageEmbedding:
    features = torch.randn(1, 256, 16, 16, generator=torch.Generator().manual_seed(seed))
    return ImageEmbedding(features, (120, 160), (192, 256))


def _header(value: bytes) -> dict:
    length = int.from_bytes(value[len(MAGIC) : len(MAGIC) + 4], "big")
    return json.loads(value[len(MAGIC) + 4 : len(MAGIC) + 4 + length])


def _with_header(value: bytes, **changes) -> bytes:
    header = {**_header(value), **changes}
    length = int.from_bytes(value[len(MAGIC) : len(MAGIC) + 4], "big")
    payload = value[len(MAGIC) + 4 + length :]
    text = json.dumps(header).encode()
    return MAGIC + len(text).to_bytes(4, "big") + text + payload


def test_values_round_trip_bit_for_bit():
    embedding = _embedding()
    value, meta = decode_value(encode_value(embedding, {"fingerprint": "f", "width": 160}))
    assert meta == {"fingerprint": "f", "width": 160}
    assert value.original_size == (120, 160) and value.input_size == (192, 256)
    assert torch.equal(value.features, embedding.features)
    array, _ = decode_value(encode_value(np.arange(6, dtype=np.float32).reshape(2, 3), {}))
    np.testing.assert_array_equal(array, np.arange(6).reshape(2, 3))


GOOD = encode_value(_embedding(), {"fingerprint": "f"})
CORRUPT = {
    "empty": b"",
    "bad magic": b"PICKLE\n" + GOOD[7:],
    "truncated payload": GOOD[:-4],
    "header length beyond the value": MAGIC + (1 << 20).to_bytes(4, "big") + b"{}",
    "header not utf-8": MAGIC + (2).to_bytes(4, "big") + b"\xff\xfe",
    "header a list": MAGIC + (2).to_bytes(4, "big") + b"[]",
    "meta a list": _with_header(GOOD, meta=[1, 2]),
    "meta a string": _with_header(GOOD, meta="x"),
    "huge shape": _with_header(GOOD, shape=[10**20, 0]),
    "negative shape": _with_header(GOOD, shape=[-1, 256, 16, 16]),
    "float shape": _with_header(GOOD, shape=[1.5, 256, 16, 16]),
    "unknown dtype": _with_header(GOOD, dtype="|O"),
    "unknown kind": _with_header(GOOD, kind="pickle"),
    "bad original size": _with_header(GOOD, original_size=[0, 5]),
    "size of strings": _with_header(GOOD, input_size=["a", "b"]),
}


@pytest.mark.parametrize("data", CORRUPT.values(), ids=CORRUPT.keys())
def test_damaged_values_are_named_errors(data):
    with pytest.raises(CorruptValueError):
        decode_value(data)


def test_store_writes_atomically_and_reads_back(tmp_path):
    store = EmbeddingStore(str(tmp_path / "store"), fingerprint="model-a")
    assert store.get(KEY) is None and KEY not in store
    store.put(KEY, _embedding())
    assert torch.equal(store.get(KEY).features, _embedding().features)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"store/embeddings/01/{KEY}.rvsam"]  # no temporary file left behind


def test_values_of_another_model_or_damaged_are_absent(tmp_path):
    EmbeddingStore(str(tmp_path), "model-a").put(KEY, _embedding())
    assert EmbeddingStore(str(tmp_path), "model-b").get(KEY) is None
    path = tmp_path / "embeddings" / "01" / f"{KEY}.rvsam"
    path.write_bytes(path.read_bytes()[:-10])
    assert EmbeddingStore(str(tmp_path), "model-a").get(KEY) is None


def test_the_manifest_accumulates(tmp_path):
    store = EmbeddingStore(str(tmp_path), "m")
    assert store.manifest() == {}
    store.record({"a.png": KEY})
    store.record({"b/c.jpg": KEY[::-1]})
    assert store.manifest() == {"a.png": KEY, "b/c.jpg": KEY[::-1]}


def test_fsspec_urls_work(tmp_path):
    store = EmbeddingStore("memory://repvit-sam-test-store", "m")
    store.put(KEY, _embedding(1))
    assert torch.equal(store.get(KEY).features, _embedding(1).features)
    store.fs.rm(store.root, recursive=True)


def test_bad_ids_and_urls_are_named_errors(tmp_path):
    store = EmbeddingStore(str(tmp_path), "m")
    with pytest.raises(InvalidInputError, match="32 hex digits"):
        store.get("../../etc/passwd")
    with pytest.raises(InvalidInputError, match="store"):
        EmbeddingStore("nosuchprotocol://bucket", "m")
