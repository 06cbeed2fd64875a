"""The images of a dataset job: every image file below a folder, or the lines of a list file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError
from ..image_io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class SourceImage:
    """One image of a dataset.

    Attributes:
        name: How the manifest and the outputs know it: the path relative to the folder (or as
            the list file writes it), with ``/`` separators.
        path: Where to read it.
    """

    name: str
    path: Path


def list_images(source: str | Path) -> list[SourceImage]:
    """The images of ``source``: a folder (searched recursively, sorted by name) or a text file
    with one image path per line (relative paths are relative to the file's folder; blank lines
    and lines starting with ``#`` are skipped).

    Raises:
        InvalidInputError: ``source`` does not exist or holds no images.
    """
    root = Path(source)
    if root.is_dir():
        found = sorted(
            path
            for path in root.rglob("*")
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        images = [SourceImage(path.relative_to(root).as_posix(), path) for path in found]
    elif root.is_file():
        lines = [line.strip() for line in root.read_text().splitlines()]
        names = [line for line in lines if line and not line.startswith("#")]
        images = [SourceImage(name, root.parent / name) for name in names]
    else:
        raise InvalidInputError(f"source {source}: no such folder or list file")
    if not images:
        raise InvalidInputError(f"source {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return images
