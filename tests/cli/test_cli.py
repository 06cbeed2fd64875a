from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from repvit_sam import runtimes
from repvit_sam.cli import main


@pytest.fixture
def image_path(tmp_path, rgb_image):
    path = tmp_path / "in.png"
    Image.fromarray(rgb_image).save(path)
    return path


def _model_args(checkpoint):
    return ["--checkpoint", str(checkpoint), "--variant", "m0_9"]


def test_segment_writes_mask_and_overlay(tmp_path, image_path, small_checkpoint, capsys):
    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    code = main(
        [
            "segment",
            str(image_path),
            "--point",
            "80,50",
            "--point",
            "10,10,0",
            "-o",
            str(out),
            "--overlay",
            str(overlay),
            *_model_args(small_checkpoint),
        ]
    )
    assert code == 0
    mask = np.asarray(Image.open(out))
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(overlay)).shape == (120, 160, 3)
    record = json.loads(capsys.readouterr().out)
    assert record["area"] == int((mask > 0).sum()) and 0 <= record["score"] <= 2


def test_segment_several_boxes(tmp_path, image_path, small_checkpoint, capsys):
    out = tmp_path / "m.png"
    code = main(
        [
            "segment",
            str(image_path),
            "--box",
            "10,10,100,100",
            "--box",
            "50,30,150,110",
            "-o",
            str(out),
            *_model_args(small_checkpoint),
        ]
    )
    assert code == 0
    assert (tmp_path / "m_0.png").is_file() and (tmp_path / "m_1.png").is_file()
    assert len(json.loads(capsys.readouterr().out)) == 2


@pytest.mark.parametrize("bad", ["80", "80,x", "1,2,5"])
def test_bad_point_syntax(image_path, tmp_path, bad):
    with pytest.raises(SystemExit) as info:
        main(["segment", str(image_path), "--point", bad, "-o", str(tmp_path / "o.png")])
    assert info.value.code == 2


def test_prompt_outside_the_image_is_a_clear_error(image_path, tmp_path, small_checkpoint, capsys):
    code = main(
        [
            "segment",
            str(image_path),
            "--point",
            "999,5",
            "-o",
            str(tmp_path / "o.png"),
            *_model_args(small_checkpoint),
        ]
    )
    assert code == 2
    assert "outside the 160x120 image" in capsys.readouterr().err


def test_wrong_checkpoint_is_a_clear_error(image_path, tmp_path, small_checkpoint, capsys):
    code = main(
        [
            "segment",
            str(image_path),
            "--point",
            "5,5",
            "-o",
            str(tmp_path / "o.png"),
            "--checkpoint",
            str(small_checkpoint),
        ]
    )
    assert code == 2
    assert "pass variant='m0_9'" in capsys.readouterr().err


def test_missing_image(tmp_path, small_checkpoint, capsys):
    code = main(
        [
            "segment",
            str(tmp_path / "none.png"),
            "--point",
            "1,1",
            "-o",
            str(tmp_path / "o.png"),
            *_model_args(small_checkpoint),
        ]
    )
    assert code == 2 and "not found" in capsys.readouterr().err


def test_export_onnx(tmp_path, small_checkpoint, capsys):
    import onnxruntime

    code = main(
        [
            "export-onnx",
            str(tmp_path / "onnx"),
            "--checkpoint",
            str(small_checkpoint),
            "--variant",
            "m0_9",
            "--return-single-mask",
        ]
    )
    assert code == 0
    written = json.loads(capsys.readouterr().out)
    session = onnxruntime.InferenceSession(written["decoder"], providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "masks"
    encoder = onnxruntime.InferenceSession(written["encoder"], providers=["CPUExecutionProvider"])
    assert encoder.get_inputs()[0].shape == [1, 3, 1024, 1024]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_segment_with_backend(tmp_path, image_path, small_checkpoint, backend):
    out = tmp_path / f"{backend}.png"
    code = main(
        [
            "segment",
            str(image_path),
            "--point",
            "80,50",
            "-o",
            str(out),
            "--backend",
            backend,
            *_model_args(small_checkpoint),
        ]
    )
    assert code == 0 and out.is_file()


@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("-o", "mask.xyz", "--output .*mask.xyz: not an image format PIL writes"),
        ("-o", "mask.psd", "not an image format PIL writes"),  # PIL reads PSD only
        ("--overlay", "over.xyz", "--overlay .*over.xyz: not an image format PIL writes"),
        ("-o", "", "is a folder"),
        ("--overlay", "absent/over.png", "folder .*absent does not exist"),
    ],
)
def test_unwritable_outputs_are_refused_before_the_model_runs(
    image_path, tmp_path, small_checkpoint, capsys, flag, name, message
):
    outputs = {"-o": str(tmp_path / "o.png"), flag: str(tmp_path / name)}
    args = ["segment", str(image_path), "--point", "5,5", *_model_args(small_checkpoint)]
    for option, path in outputs.items():
        args += [option, path]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(message, line), line
    assert not (tmp_path / "o.png").exists()


def test_an_existing_amg_output_file_is_one_clear_line(
    image_path, tmp_path, small_checkpoint, capsys
):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["amg", str(image_path), str(taken), *_model_args(small_checkpoint)]) == 2
    assert capsys.readouterr().err.startswith("repvit-sam amg: error: ")


def test_eval_edges_limit_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval-edges", str(tmp_path), "--limit", "-1"])
    assert exit_.value.code == 2 and "--limit" in capsys.readouterr().err


def test_help_imports_neither_torch_nor_the_service():
    # --help must answer at once: the commands import their work only when they run.
    script = (
        "import sys, contextlib, io\n"
        "from repvit_sam.cli import main\n"
        "for argv in (['--help'], ['serve', '--help'], ['amg', '--help'], ['distill', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "heavy = {'torch', 'fastapi', 'segment_anything', 'pydantic_settings'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["segment", "--help"], ["(default: auto)", "(default: m2_3)", "(default: cpu)"]),
        (["amg", "--help"], ["(default: 32)", "(default: 0.88)", "(default: 0.95)"]),
        (["serve", "--help"], ["--backend", "REPVIT_SAM_BACKEND"]),
    ],
)
def test_help_shows_defaults(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for words in shown:
        assert words in text


@pytest.mark.skipif(bool(runtimes.missing_modules("int8")), reason="needs the [int8] extra")
def test_segment_with_int8_calibrated_on_a_folder(tmp_path, image_path, small_checkpoint, capsys):
    folder = tmp_path / "calibration"
    folder.mkdir()
    shutil.copy(image_path, folder / "one.png")
    out = tmp_path / "int8.png"
    argv = ["segment", str(image_path), "--point", "80,50", "-o", str(out)]
    options = ["--precision", "int8", "--calibration-images", str(folder)]
    assert main([*argv, *options, *_model_args(small_checkpoint)]) == 0 and out.is_file()
    assert main([*argv, "--calibration-images", str(folder)]) == 2
    assert "--calibration-images only applies to --precision int8" in capsys.readouterr().err


def test_commands_refuse_a_backend_they_cannot_run(monkeypatch, tmp_path, image_path, capsys):
    from repvit_sam import backends

    monkeypatch.setattr(backends, "missing_modules", lambda backend: ["openvino"])
    argv = ["segment", str(image_path), "--point", "10,10", "-o", str(tmp_path / "m.png")]
    assert main([*argv, "--backend", "openvino"]) == 2
    assert "backend 'openvino' needs openvino" in capsys.readouterr().err
