"""Checks ML backend answers with Label Studio's own code (its SDK, ``label-studio-sdk``).

Run by test_label_studio_sdk.py with the python of Label Studio's virtual environment (never
imported by the test suite itself)::

    python label_studio_validate.py ANSWERS_JSON

``ANSWERS_JSON`` holds ``[{"label_config": ..., "answer": <a /label-studio/predict answer>}]``.
For each prediction of each answer it prints, as JSON, what Label Studio would say when storing
it: the errors of ``LabelInterface(label_config).validate_prediction`` (the check Label
Studio's prediction serializer and importer run), whether ``PredictionValue`` (the SDK's
prediction model) parses it, and, per brush region, the mask area its own brush decoder reads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.objects import PredictionValue


def check(label_config: str, prediction: dict) -> dict:
    interface = LabelInterface(label_config)
    errors = interface.validate_prediction(prediction, return_errors=True)
    parsed = PredictionValue(**prediction)
    areas = []
    for region in prediction["result"]:
        if region["type"] == "brushlabels":
            shape = (region["original_height"], region["original_width"], 4)
            rgba = np.reshape(decode_rle(region["value"]["rle"]), shape)
            areas.append(int((rgba[:, :, 3] > 0).sum()))
    return {
        "errors": errors,
        "regions": len(parsed.result),
        "score": parsed.score,
        "brush_areas": areas,
    }


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    checked = [
        [check(case["label_config"], prediction) for prediction in case["answer"]["results"]]
        for case in cases
    ]
    print(json.dumps(checked))


if __name__ == "__main__":
    main()
