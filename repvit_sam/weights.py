"""The registry of published weights, and their verified download into a cache folder."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, InvalidInputError, WeightsDownloadError

logger = logging.getLogger(__name__)

CACHE_ENV = "REPVIT_SAM_HOME"
# A mirror of the registered weights, for machines that cannot reach the publisher.
MIRROR_ENV = "REPVIT_SAM_WEIGHTS_URL"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PretrainedWeights:
    """Published weights.

    Attributes:
        name: Registry name.
        variant: Encoder variant the weights are for.
        url: Where they are published.
        filename: File name in the cache folder.
        sha256: Hex digest to verify, or None where no digest is published (the file is then
            verified by a strict load into the architecture only).
    """

    name: str
    variant: str
    url: str
    filename: str
    sha256: str | None = None


WEIGHTS: dict[str, PretrainedWeights] = {
    "repvit_sam": PretrainedWeights(
        name="repvit_sam",
        variant="m2_3",
        url="https://github.com/THU-MIG/RepViT/releases/download/v1.0/repvit_sam.pt",
        filename="repvit_sam.pt",
        # THU-MIG publish no digest for this release asset, so none is pinned here.
        sha256=None,
    ),
}
DEFAULT_WEIGHTS = "repvit_sam"


def get_weights_spec(name: str) -> PretrainedWeights:
    if name not in WEIGHTS:
        raise InvalidInputError(f"unknown weights {name!r}; expected one of {sorted(WEIGHTS)}")
    return WEIGHTS[name]


def default_cache_dir() -> Path:
    """``$REPVIT_SAM_HOME``, else ``$XDG_CACHE_HOME/repvit_sam``, else ``~/.cache/repvit_sam``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "repvit_sam"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(path: Path, spec: PretrainedWeights, sha256: str | None = None) -> None:
    """Checks the digest (when known) and that the file loads strictly into ``spec.variant``.

    Raises:
        WeightsDownloadError: The digest differs, or the file is not the expected checkpoint.
    """
    from .build import build_repvit_sam  # local: build pulls in torch and segment-anything

    expected = sha256 or spec.sha256
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected.lower():
            raise WeightsDownloadError(
                f"{path} has sha256 {actual}, expected {expected} for {spec.name}"
            )
    try:
        build_repvit_sam(path, variant=spec.variant)
    except CheckpointError as err:
        raise WeightsDownloadError(f"downloaded file is not {spec.name}: {err}") from err


def download_weights(
    name: str = DEFAULT_WEIGHTS,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Returns the path of verified weights, downloading them into ``cache_dir`` if needed.

    The file is streamed to a temporary file beside its destination, verified (sha256 where
    known, and always a strict load into the architecture) and only then renamed into place, so
    an interrupted or corrupt download never leaves a file that looks valid.

    Args:
        name: Registry name (``repvit_sam.weights.WEIGHTS``).
        cache_dir: Folder for weights; ``default_cache_dir()`` by default.
        url: Download from this address instead of the registered one (a mirror); default
            ``$REPVIT_SAM_WEIGHTS_URL`` where set.
        sha256: Expected digest, overriding the registered one.
        force: Download again even if the file is present.
        progress: Show a progress bar on stderr.
        timeout: Seconds to wait for the server on each read.

    Raises:
        WeightsDownloadError: The download or its verification failed; the message says how
            to do without it (a checkpoint of one's own, where to put the file, a mirror).
    """
    spec = get_weights_spec(name)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    destination = folder / spec.filename
    if destination.is_file() and not force:
        logger.debug("using cached weights %s", destination)
        return destination
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsDownloadError(f"cannot create the weights folder {folder}: {err}") from err
    source = url or os.environ.get(MIRROR_ENV) or spec.url
    logger.info("downloading %s from %s to %s", spec.name, source, destination)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{spec.filename}.", suffix=".part")
    temporary_path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as stream:
            try:
                _fetch(source, stream, progress, timeout)
            except WeightsDownloadError as err:
                raise WeightsDownloadError(f"{err}. {_without_download(destination)}") from err
        verify_checkpoint(temporary_path, spec, sha256)
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)
    logger.info("weights %s verified and saved to %s", spec.name, destination)
    return destination


def _without_download(destination: Path) -> str:
    return (
        "To run without this download: pass a checkpoint you have (--checkpoint PATH; "
        "REPVIT_SAM_CHECKPOINT=PATH for the service; RepViTSAM(PATH) in Python), or copy the "
        f"file to {destination} (the cache folder, ${CACHE_ENV}), or download it from a "
        f"mirror (${MIRROR_ENV}=URL, or repvit-sam download --url URL)"
    )


def _fetch(url: str, stream, progress: bool, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, progress)
            received = 0
            while chunk := response.read(_CHUNK):
                stream.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            bar.close()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise WeightsDownloadError(f"download of {url} failed: {err}") from err
    if total is not None and received != total:
        raise WeightsDownloadError(f"download of {url} was cut short: {received} of {total} bytes")


def _progress_bar(total: int | None, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled, leave=False
    )
