"""Image folders, teacher-embedding shards and their manifest, and the training dataset.

Layout of an embeddings folder::

    embeddings/
        config.json             teacher, image size, image root (checked when resuming)
        parts/rank<R>.jsonl     one line per finished shard of rank R: {"file", "images"}
        shard-r<R>-<N>.npy      float16 array, Nx256xExE (E = image size / 16)
        manifest.json           written once every image is embedded: config + all shards

A shard is written to a temporary file and renamed, then its line is appended to the rank's
part file, so an interrupted run loses at most the shards in flight and resumes after the last
line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidImageError, InvalidInputError
from ..image_io import load_image
from .teacher import preprocess

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MANIFEST = "manifest.json"
CONFIG = "config.json"
MANIFEST_VERSION = 1


def list_images(root: str | os.PathLike[str]) -> list[str]:
    """Image files under ``root``, recursively, as sorted POSIX paths relative to ``root``.

    Any folder of images works, SA-1B's layout too (``sa_*.jpg`` beside ``sa_*.json``
    annotations, which are skipped).

    Raises:
        InvalidInputError: ``root`` is not a folder or holds no image.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise InvalidInputError(f"images folder {folder} does not exist or is not a folder")
    names = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if not names:
        raise InvalidInputError(
            f"no images in {folder} (looked recursively for {', '.join(IMAGE_SUFFIXES)})"
        )
    return names


def check_images(root: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Opens every image's header (no decoding) so that unreadable files fail before any work.

    Raises:
        InvalidImageError: Listing the unreadable files and why.
    """
    bad: list[str] = []
    for name in names:
        try:
            with Image.open(Path(root) / name) as image:
                width, height = image.size
            if width < 1 or height < 1:
                bad.append(f"{name} (empty)")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            bad.append(
                f"{name} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            )
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise InvalidImageError(
            f"{len(bad)} of {len(names)} images in {root} cannot be read: "
            f"{'; '.join(bad[:5])}{more}. Remove or replace them."
        )


def ensure_writable(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Creates ``folder`` if needed and proves it writable with a probe file.

    Raises:
        InvalidInputError: Naming the folder and the OS error.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise InvalidInputError(f"{what} {path} is not writable: {err}") from err
    return path


class ImageFolder(torch.utils.data.Dataset):
    """Images of a folder preprocessed exactly as SAM does.

    Items are ``(index, image)``: ``image`` 3xSxS float32 (S = ``img_size``).
    """

    def __init__(self, root: str | os.PathLike[str], names: Sequence[str], img_size: int) -> None:
        self.root = Path(root)
        self.names = list(names)
        self.img_size = img_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        image = load_image(self.root / self.names[index])
        return index, preprocess(image, self.img_size)[0]


def _write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def prepare_embeddings_folder(folder: Path, config: dict) -> None:
    """Writes ``config.json``, or checks that an existing one (a run to resume) matches.

    Raises:
        InvalidInputError: The folder holds embeddings of another teacher, size or image root.
    """
    path = folder / CONFIG
    if path.is_file():
        old = json.loads(path.read_text())
        differing = [k for k in config if old.get(k) != config[k]]
        if differing:
            raise InvalidInputError(
                f"{folder} holds embeddings made with different settings "
                f"({', '.join(f'{k}: {old.get(k)!r} != {config[k]!r}' for k in differing)}); "
                "choose another output folder"
            )
    else:
        _write_json_atomic(path, config)
    (folder / "parts").mkdir(exist_ok=True)


def read_parts(folder: Path) -> list[dict]:
    """Every finished shard recorded in ``parts/*.jsonl`` (a torn last line is ignored)."""
    shards = []
    for part in sorted((folder / "parts").glob("rank*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("ignoring a torn line in %s", part)
                continue
            if (folder / record["file"]).is_file():
                shards.append(record)
    return shards


class ShardWriter:
    """Collects one rank's embeddings and writes them as float16 shards of ``shard_size``."""

    def __init__(self, folder: Path, rank: int, shard_size: int) -> None:
        self.folder = folder
        self.rank = rank
        self.shard_size = shard_size
        self.part = folder / "parts" / f"rank{rank}.jsonl"
        self.count = len(self.part.read_text().splitlines()) if self.part.is_file() else 0
        self._names: list[str] = []
        self._arrays: list[np.ndarray] = []

    def add(self, names: Iterable[str], embeddings: torch.Tensor) -> None:
        """Adds a batch: ``embeddings`` Bx256xExE, any float dtype or device."""
        self._names.extend(names)
        self._arrays.append(embeddings.detach().to("cpu", torch.float16).numpy())
        if len(self._names) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Writes what has been collected as one shard (atomically) and records it."""
        if not self._names:
            return
        name = f"shard-r{self.rank}-{self.count:05d}.npy"
        tmp = self.folder / f".{name}.tmp"
        with tmp.open("wb") as stream:
            np.save(stream, np.concatenate(self._arrays))
        os.replace(tmp, self.folder / name)
        with self.part.open("a") as stream:
            stream.write(json.dumps({"file": name, "images": self._names}) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        logger.debug("wrote %s (%d embeddings)", name, len(self._names))
        self.count += 1
        self._names, self._arrays = [], []


def write_manifest(folder: Path, names: Sequence[str]) -> dict:
    """Joins config and parts into ``manifest.json`` once every image in ``names`` is embedded.

    Raises:
        RuntimeError: Some images have no embedding (a rank failed).
    """
    config = json.loads((folder / CONFIG).read_text())
    shards = read_parts(folder)
    done = {name for shard in shards for name in shard["images"]}
    missing = [name for name in names if name not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} images have no embedding yet (first: {missing[0]}); "
            "run again to resume"
        )
    manifest = {
        **config,
        "version": MANIFEST_VERSION,
        "dtype": "float16",
        "num_images": len(done),
        "shards": sorted(shards, key=lambda s: s["file"]),
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: str | os.PathLike[str]) -> dict:
    """The manifest of a finished embeddings folder.

    Raises:
        InvalidInputError: No manifest (the embedding run has not finished) or a bad one.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InvalidInputError(
            f"no {MANIFEST} in {folder}: run `repvit-sam distill teacher-embed` (to the end; it "
            "resumes) to write the teacher embeddings first"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path} is not valid JSON: {err}") from err
    if manifest.get("version") != MANIFEST_VERSION or not manifest.get("shards"):
        raise InvalidInputError(f"{path} is not a version-{MANIFEST_VERSION} manifest with shards")
    return manifest


class EmbeddingDataset(torch.utils.data.Dataset):
    """Images with their teacher embeddings, for training the student.

    Items are keyed by ``(index, flip)`` (see ``StepSampler``) and are ``(image, target)``:
    ``image`` 3xSxS float32 preprocessed as SAM does, ``target`` 256xExE float16. ``flip``
    mirrors both along the axis the resized image fills (width for landscape and square images,
    height for portrait ones), so the padding stays bottom-right and every target cell stays on
    the patch it describes.
    """

    def __init__(self, folder: str | os.PathLike[str], manifest: dict | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = manifest if manifest is not None else read_manifest(folder)
        self.image_root = Path(self.manifest["image_root"])
        self.img_size = int(self.manifest["image_size"])
        self.items = [
            (name, shard["file"], row)
            for shard in self.manifest["shards"]
            for row, name in enumerate(shard["images"])
        ]
        self._open: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def embedding(self, index: int) -> torch.Tensor:
        """The teacher embedding of item ``index``: 256xExE float16."""
        _, file, row = self.items[index]
        if file not in self._open:
            self._open[file] = np.load(self.folder / file, mmap_mode="r")
        return torch.from_numpy(np.array(self._open[file][row]))

    def __getitem__(self, key: tuple[int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        index, flip = key
        name = self.items[index][0]
        image, (_, w) = preprocess(load_image(self.image_root / name), self.img_size)
        target = self.embedding(index)
        if flip:
            dim = -1 if w == self.img_size else -2
            image, target = image.flip(dim), target.flip(dim)
        return image, target
