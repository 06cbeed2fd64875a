"""Boundary evaluation in the BSDS500 protocol: ODS, OIS and AP.

For each threshold the edge map is binarised and thinned, then matched one-to-one to each
human annotation's boundary pixels within ``max_dist`` (0.0075 of the image diagonal) by a
maximum bipartite matching. Recall counts matched annotation pixels over all annotations;
precision counts edge pixels matched to at least one annotation. ODS is the best F-measure
with one threshold for the dataset, OIS with the best threshold per image, AP the area under
the precision-recall curve (as BSDS's ``collect_eval_bdry``, without its interpolation of the
best F between thresholds).

A dataset folder has the BSDS500 layout: ``images/[SPLIT/]NAME.jpg|png`` and
``groundTruth/[SPLIT/]NAME.mat`` (BSDS's cell array of Segmentation/Boundaries) or
``NAME.png`` / ``NAME_*.png`` (one boundary image per annotator, nonzero = boundary).
Requires scikit-image (``pip install 'repvit-sam[eval]'``); scipy is a core dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError
from .image_io import IMAGE_SUFFIXES

MAX_DIST = 0.0075


@dataclass(frozen=True)
class EdgeScores:
    """Dataset scores; thresholds are on the [0, 1] edge strength."""

    ods: float
    ods_threshold: float
    ois: float
    ap: float
    num_images: int

    def as_dict(self) -> dict[str, float]:
        return {
            "ODS": self.ods,
            "ODS_threshold": self.ods_threshold,
            "OIS": self.ois,
            "AP": self.ap,
            "images": self.num_images,
        }


def default_thresholds(count: int = 99) -> np.ndarray:
    """BSDS's thresholds: ``count`` evenly spaced values strictly inside (0, 1)."""
    return np.linspace(1.0 / (count + 1), 1.0 - 1.0 / (count + 1), count)


def load_ground_truth(path: Path) -> list[np.ndarray]:
    """HxW bool boundary maps of every annotator of one image (.mat or .png).

    Raises:
        InvalidInputError: The file is not a BSDS ground truth (unreadable, or no
            ``groundTruth`` cells with ``Boundaries``).
    """
    path = Path(path)
    try:
        if path.suffix == ".mat":
            from scipy.io import loadmat

            cells = loadmat(str(path))["groundTruth"][0]
            return [np.asarray(cell["Boundaries"][0, 0], dtype=bool) for cell in cells]
        from PIL import Image

        image = np.asarray(Image.open(path))
        return [(image if image.ndim == 2 else image[..., 0]) > 0]
    except FileNotFoundError:
        raise
    except Exception as err:  # scipy and PIL raise many kinds on corrupt files
        raise InvalidInputError(f"{path} is not a BSDS ground truth: {err}") from err


def match_edges(edges: np.ndarray, truth: np.ndarray, max_dist: float) -> tuple[np.ndarray, int]:
    """One-to-one matching of edge pixels to boundary pixels within ``max_dist`` pixels.

    Returns:
        HxW bool map of matched edge pixels and the number of matched boundary pixels.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree

    matched = np.zeros_like(edges, dtype=bool)
    ey, ex = np.nonzero(edges)
    ty, tx = np.nonzero(truth)
    if not len(ey) or not len(ty):
        return matched, 0
    pairs = cKDTree(np.c_[ey, ex]).sparse_distance_matrix(
        cKDTree(np.c_[ty, tx]), max_dist, output_type="ndarray"
    )
    # Pairs at distance 0 are candidates too, so the graph's weights are all ones.
    graph = csr_matrix((np.ones(len(pairs)), (pairs["i"], pairs["j"])), shape=(len(ey), len(ty)))
    match = maximum_bipartite_matching(graph, perm_type="column")
    hits = match >= 0
    matched[ey[hits], ex[hits]] = True
    return matched, int(hits.sum())


def evaluate_image(
    edge_map: np.ndarray,
    truths: list[np.ndarray],
    thresholds: np.ndarray,
    max_dist_ratio: float = MAX_DIST,
) -> np.ndarray:
    """Matching counts of one image at every threshold.

    Args:
        edge_map: HxW edge strength in [0, 1] (uint8 maps are divided by 255).
        truths: HxW bool boundary maps, one per annotator.
        thresholds: T thresholds.

    Returns:
        Tx4 int array: matched truth pixels, truth pixels, matched edge pixels, edge pixels.
    """
    from skimage.morphology import thin

    edge_map = np.asarray(edge_map)
    if edge_map.dtype == np.uint8:
        edge_map = edge_map / 255.0
    for truth in truths:
        if truth.shape != edge_map.shape:
            raise InvalidInputError(
                f"edge map has shape {edge_map.shape} but its ground truth {truth.shape}"
            )
    max_dist = max_dist_ratio * float(np.hypot(*edge_map.shape))
    counts = np.zeros((len(thresholds), 4), dtype=np.int64)
    for i, threshold in enumerate(thresholds):
        edges = thin(edge_map >= threshold)
        matched_any = np.zeros_like(edges)
        for truth in truths:
            matched, hits = match_edges(edges, truth, max_dist)
            matched_any |= matched
            counts[i, 0] += hits
            counts[i, 1] += int(truth.sum())
        counts[i, 2] = int(matched_any.sum())
        counts[i, 3] = int(edges.sum())
    return counts


def _f_measure(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    recall = counts[..., 0] / np.maximum(counts[..., 1], 1)
    precision = counts[..., 2] / np.maximum(counts[..., 3], 1)
    f = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return precision, recall, f


def summarize(per_image: list[np.ndarray], thresholds: np.ndarray) -> EdgeScores:
    """ODS, OIS and AP from the Tx4 counts of every image."""
    if not per_image:
        raise InvalidInputError("no images were evaluated")
    stacked = np.stack(per_image)  # IxTx4
    precision, recall, f = _f_measure(stacked.sum(axis=0))
    best = int(np.argmax(f))
    per_image_best = [counts[int(np.argmax(_f_measure(counts)[2]))] for counts in stacked]
    ois = float(_f_measure(np.sum(per_image_best, axis=0))[2])
    order = np.argsort(recall)
    grid = np.linspace(0, 1, 101)
    inside = (grid >= recall.min()) & (grid <= recall.max())
    ap = float(np.interp(grid[inside], recall[order], precision[order]).sum() / len(grid))
    return EdgeScores(float(f[best]), float(thresholds[best]), ois, ap, len(per_image))


def find_dataset(root: Path, split: str | None = None) -> list[tuple[str, Path, list[Path]]]:
    """(name, image path, ground-truth paths) of every annotated image of a BSDS-layout folder."""
    root = Path(root)
    images_dir, truth_dir = root / "images", root / "groundTruth"
    if split:
        images_dir, truth_dir = images_dir / split, truth_dir / split
    if not images_dir.is_dir() or not truth_dir.is_dir():
        raise InvalidInputError(
            f"{root} is not a BSDS500-layout folder: expected {images_dir} and {truth_dir}"
        )
    items = []
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        truths = sorted(truth_dir.glob(f"{image.stem}.mat")) or sorted(
            [*truth_dir.glob(f"{image.stem}.png"), *truth_dir.glob(f"{image.stem}_*.png")]
        )
        if truths:
            items.append((image.stem, image, truths))
    if not items:
        raise InvalidInputError(f"no image in {images_dir} has ground truth in {truth_dir}")
    return items
