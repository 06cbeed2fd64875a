"""``repvit-sam distill ...``: results on stdout, clear errors before any work on bad input."""

from __future__ import annotations

import json
import os

import torch

from repvit_sam.cli import main


def _embed_args(images, output, checkpoint, teacher="tiny"):
    return [
        "distill", "teacher-embed", "--images", str(images), "--output", str(output),
        "--teacher", teacher, "--teacher-checkpoint", str(checkpoint), "--device", "cpu",
        "--num-workers", "0", "--no-progress",
    ]  # fmt: skip


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("repvit-sam distill: error: "), err
    return err


def test_teacher_embed_cli(tmp_path, image_folder, teacher_checkpoint, capsys):
    assert main(_embed_args(image_folder, tmp_path / "emb", teacher_checkpoint)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"teacher": "tiny", "image_size": 64, "num_images": 6,
                      "output": str(tmp_path / "emb")}  # fmt: skip


def test_empty_folder(tmp_path, teacher_checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    assert main(_embed_args(tmp_path / "empty", tmp_path / "emb", teacher_checkpoint)) == 2
    assert "no images in" in _error(capsys)
    assert not (tmp_path / "emb" / "config.json").exists()


def test_unreadable_images(tmp_path, image_folder, teacher_checkpoint, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "ok.png").write_bytes((image_folder / "im0.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(_embed_args(folder, tmp_path / "emb", teacher_checkpoint)) == 2
    assert "1 of 2 images" in (err := _error(capsys)) and "broken.jpg" in err
    assert not list((tmp_path / "emb").glob("shard-*"))


def test_teacher_checkpoint_of_another_size(tmp_path, image_folder, capsys):
    vit_b_like = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
                "mask_decoder.iou_token.weight": torch.zeros(1, 256)}, vit_b_like)  # fmt: skip
    assert main(_embed_args(image_folder, tmp_path / "emb", vit_b_like, "vit_h")) == 2
    err = _error(capsys)
    assert "SAM ViT-B" in err and "--teacher vit_h needs" in err and "fits --teacher vit_b" in err
    assert not (tmp_path / "emb" / "config.json").exists()


def test_unknown_teacher(tmp_path, image_folder, teacher_checkpoint, capsys):
    assert main(_embed_args(image_folder, tmp_path / "e", teacher_checkpoint, "vit_x")) == 2
    assert "unknown teacher 'vit_x'" in _error(capsys)


def test_unwritable_output(tmp_path, image_folder, teacher_checkpoint, embeddings, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(_embed_args(image_folder, blocker / "emb", teacher_checkpoint)) == 2
    assert "is not writable" in _error(capsys)
    train = ["distill", "train", "--embeddings", str(embeddings), "--variant", "m0_9"]
    assert main([*train, "--output", str(blocker / "run")]) == 2
    assert "output folder" in _error(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main([*train, "--output", str(locked / "run")]) == 2
        assert "not writable" in _error(capsys)


def test_unknown_student_variant(tmp_path, embeddings, capsys):
    args = ["distill", "train", "--embeddings", str(embeddings), "--output", str(tmp_path / "r")]
    assert main([*args, "--variant", "m9_9"]) == 2
    assert "unknown RepViT variant 'm9_9'" in _error(capsys)
    assert not (tmp_path / "r").exists()


def test_train_without_finished_embeddings(tmp_path, capsys):
    args = ["distill", "train", "--embeddings", str(tmp_path), "--output", str(tmp_path / "r")]
    assert main(args) == 2
    assert "no manifest.json" in _error(capsys)


def test_export_and_evaluate_cli(tmp_path, trained_run, teacher_checkpoint, image_folder, capsys):
    out = tmp_path / "student.pt"
    export = ["distill", "export", "--student", str(trained_run),
              "--teacher-checkpoint", str(teacher_checkpoint), "-o", str(out)]  # fmt: skip
    assert main(export) == 0 and capsys.readouterr().out.strip() == str(out)
    evaluate = ["distill", "evaluate", "--images", str(image_folder), "--teacher", "tiny",
                "--teacher-checkpoint", str(teacher_checkpoint), "--student", str(out),
                "--min-score", "0", "--max-images", "2", "--device", "cpu", "--no-progress",
                "--json", str(tmp_path / "scores.json")]  # fmt: skip
    assert main(evaluate) == 0
    table = capsys.readouterr().out
    assert table.startswith("| image | embedding MSE |") and "| im1.png |" in table
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["images"] == 2 and scores["boxes"] == 32 and 0 <= scores["mask_miou"] <= 1
