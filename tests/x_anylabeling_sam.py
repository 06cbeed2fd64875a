"""Loads a model YAML with X-AnyLabeling's own "Load Custom Model" path and asks it for masks.

Run by test_onnx_formats.py with the python of a virtual environment holding
``x-anylabeling-cvhub[cpu]`` (never imported by the test suite itself; X-AnyLabeling's Qt and
OpenCV builds stay out of this project's environment)::

    QT_QPA_PLATFORM=offscreen python x_anylabeling_sam.py MODEL_YAML IMAGE PROMPTS_JSON OUT_DIR

``ModelManager.load_custom_model`` reads the YAML with X-AnyLabeling's loader, checks it as the
application does (type, name, display name) and builds its ``SegmentAnything`` model in the
manager's worker thread. For each prompt (a list of X-AnyLabeling marks) the script saves the
mask its ``SegmentAnythingONNX`` predicts (``OUT_DIR/mask_<i>.npy``, HxW bool) and prints, as
JSON, the shapes ``predict_shapes`` (the labelling canvas' call) made of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from anylabeling import config as anylabeling_config
from anylabeling.config import get_config, get_work_directory
from anylabeling.services.auto_labeling.model_manager import ModelManager
from anylabeling.views.labeling.utils.opencv import qt_img_to_rgb_cv_img
from PyQt6.QtCore import QCoreApplication, QEventLoop, QTimer
from PyQt6.QtGui import QImage


def load(config: str) -> object:
    """X-AnyLabeling's loaded ``SegmentAnything`` for the YAML, or exits naming what it said."""
    # What X-AnyLabeling's main() does first: the user config is ~/.xanylabelingrc (the test
    # points HOME at a fresh folder), where load_custom_model records the custom model.
    anylabeling_config.current_config_file = str(Path(get_work_directory()) / ".xanylabelingrc")
    get_config()
    manager = ModelManager()
    statuses: list[str] = []
    manager.new_model_status.connect(statuses.append)
    loop = QEventLoop()
    manager.model_loaded.connect(lambda _info: loop.quit())
    QTimer.singleShot(300_000, loop.quit)
    if not manager.load_custom_model(config):
        sys.exit(f"load_custom_model refused {config}: {statuses}")
    loop.exec()
    loaded = manager.loaded_model_config
    if loaded is None:
        sys.exit(f"X-AnyLabeling did not load {config}: {statuses}")
    return loaded["model"]


def main() -> None:
    config, image_path, prompts_path, out = sys.argv[1:5]
    app = QCoreApplication(sys.argv[:1])  # noqa: F841 - the event loop the manager's thread needs
    model = load(config)
    prompts = json.loads(Path(prompts_path).read_text())
    image = QImage(image_path)
    # What predict_shapes does before its decoder call: the canvas' image as HxWx3 RGB uint8.
    embedding = model.model.encode(qt_img_to_rgb_cv_img(image, image_path))
    answers = []
    for index, marks in enumerate(prompts):
        masks = model.model.predict_masks(embedding, marks)
        np.save(Path(out) / f"mask_{index}.npy", masks[0, 0] > 0)
        model.set_auto_labeling_marks(marks)
        result = model.predict_shapes(image, image_path)
        answers.append(
            [
                {
                    "label": shape.label,
                    "shape_type": shape.shape_type,
                    "points": [[point.x(), point.y()] for point in shape.points],
                }
                for shape in result.shapes
            ]
        )
    print(json.dumps({"type": type(model).__name__, "shapes": answers}))


if __name__ == "__main__":
    main()
