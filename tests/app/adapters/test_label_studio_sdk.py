"""Our /label-studio answers, checked by Label Studio's own code: its SDK's ``LabelInterface``
(the validation Label Studio runs on every prediction it stores or imports), its
``PredictionValue`` model and its brush decoder, run in Label Studio's virtual environment
(``REPVIT_SAM_TEST_LABEL_STUDIO``, as for test_label_studio_server.py; skipped without one).

The ``label-studio-ml`` package on PyPI (1.0.9, the newest there) is the 2022 Flask server SDK:
it has no client and no response classes to check answers with (its newer releases, with
``ModelResponse``, are only on GitHub), so Label Studio's SDK is the reference here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from label_studio_converter.brush import decode_rle
from label_studio_helpers import POLYGON_CONFIG, box, click, data_url, predict_body

LABEL_STUDIO = os.environ.get("REPVIT_SAM_TEST_LABEL_STUDIO") or shutil.which("label-studio")
# Label Studio's venv python, beside its label-studio executable.
PYTHON = Path(LABEL_STUDIO).with_name("python") if LABEL_STUDIO else None
VALIDATE = Path(__file__).with_name("label_studio_validate.py")
W, H = 160, 120

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        PYTHON is None or not PYTHON.exists(),
        reason="Label Studio's SDK not run: set REPVIT_SAM_TEST_LABEL_STUDIO to the label-studio "
        "executable of its own venv (label-studio==1.23.2; .ci/tool-venvs.sh makes one)",
    ),
]


def validated(tmp_path: Path, cases: list[dict]) -> list[list[dict]]:
    """What label_studio_validate.py, in Label Studio's venv, says of each case's predictions."""
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(cases))
    done = subprocess.run(
        [str(PYTHON), str(VALIDATE), str(answers)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_label_studio_accepts_our_brush_and_polygon_predictions(client, png, tmp_path):
    image = data_url(png)
    bodies = [
        predict_body(image, [click(37.5, 37.5, W, H)]),
        predict_body(image, [click(37.5, 37.5, W, H), click(10.0, 90.0, W, H, positive=False)]),
        predict_body(image, [box(20.0, 20.0, 40.0, 40.0, W, H), click(37.5, 37.5, W, H)],
                     POLYGON_CONFIG),
    ]  # fmt: skip
    answers = []
    for body in bodies:
        answer = await client.post("/label-studio/predict", json=body)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    # A control: a label the config does not have must be refused, or the check proves nothing.
    wrong = copy.deepcopy(answers[0])
    wrong["results"][0]["result"][0]["value"]["brushlabels"] = ["Apple"]
    cases = [
        {"label_config": body["label_config"], "answer": answer}
        for body, answer in zip([*bodies, bodies[0]], [*answers, wrong], strict=True)
    ]

    *ours, refused = validated(tmp_path, cases)
    assert refused[0]["errors"] and "Apple" in " ".join(refused[0]["errors"])
    for answer, checked in zip(answers, ours, strict=True):
        (prediction,) = answer["results"]
        (verdict,) = checked
        assert verdict["errors"] == []
        assert verdict["regions"] == len(prediction["result"]) > 0
        assert verdict["score"] == pytest.approx(prediction["score"])
        brushes = [r for r in prediction["result"] if r["type"] == "brushlabels"]
        # Label Studio's own decoder reads the mask label-studio-converter's does
        expected = [int((decode_rle(r["value"]["rle"])[3::4] > 0).sum()) for r in brushes]
        assert verdict["brush_areas"] == expected
        assert all(0 < area < W * H for area in expected)
    assert [len(v[0]["brush_areas"]) for v in ours] == [1, 1, 0]
    assert np.all([r["type"] == "polygonlabels" for r in answers[2]["results"][0]["result"]])
