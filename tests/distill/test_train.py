from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from repvit_sam import InvalidInputError
from repvit_sam.distill import train
from repvit_sam.distill.checkpointing import (
    list_checkpoints,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from repvit_sam.distill.logs import read_log

from .conftest import train_config


def test_loss_goes_down(trained_run):
    log = read_log(trained_run / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 31))
    losses = [r["loss"] for r in log]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.25 * first, losses
    assert all(r["images_per_s"] > 0 and r["world_size"] == 1 for r in log)
    lrs = [r["lr"] for r in log]
    assert lrs[0] == pytest.approx(2e-3 / 4) and max(lrs) == pytest.approx(2e-3)
    assert lrs[-1] < 0.05 * max(lrs)  # cosine decay towards min_lr_ratio


def test_run_outputs(trained_run):
    run = json.loads((trained_run / "run.json").read_text())
    assert run["variant"] == "m0_9" and run["image_size"] == 64
    assert Image.open(trained_run / "loss_curve.png").size == (640, 400)
    steps = [step for step, _ in list_checkpoints(trained_run / "checkpoints")]
    assert steps == [20, 30]  # every 10 steps, newest 2 kept
    state = load_checkpoint(trained_run / "checkpoints" / "step_0000030.pt")
    assert state["step"] == 30 and state["scheduler"]["last_epoch"] == 30
    assert len(state["rng"]) == 1 and state["optimizer"]["state"]
    encoder = torch.load(trained_run / "encoder.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(encoder[k], v) for k, v in state["model"].items())


def test_interrupted_run_resumes_to_the_same_losses(tmp_path, embeddings):
    options = dict(steps=8, checkpoint_every=4, augment="flip", accumulation=2, batch_size=1)
    straight = train(train_config(embeddings, tmp_path / "straight", **options))
    interrupted = train(train_config(embeddings, tmp_path / "resumed", stop_after=5, **options))
    assert interrupted.step == 5 and not (tmp_path / "resumed" / "encoder.pt").exists()
    # Lose the progress after the last checkpoint, as a crash would.
    (tmp_path / "resumed" / "checkpoints" / "step_0000005.pt").unlink()
    resumed = train(train_config(embeddings, tmp_path / "resumed", **options))
    assert resumed.step == 8
    expected = [r["loss"] for r in read_log(tmp_path / "straight" / "log.jsonl")]
    got = [r["loss"] for r in read_log(tmp_path / "resumed" / "log.jsonl")]
    # Bit-identical with one thread; multi-threaded CPU kernels may differ in the last bits.
    assert len(got) == 8 and got == pytest.approx(expected, rel=1e-5)
    resumed_state = resumed.encoder.state_dict()
    for key, value in straight.encoder.state_dict().items():
        torch.testing.assert_close(resumed_state[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_tensorboard_writer(tmp_path, embeddings):
    pytest.importorskip("tensorboard")
    train(train_config(embeddings, tmp_path / "tb", steps=2, tensorboard=True))
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_drop_path_rate_reaches_the_student(tmp_path, embeddings):
    result = train(train_config(embeddings, tmp_path / "dp", steps=1, drop_path_rate=0.2))
    rates = [m.drop_path for m in result.encoder.modules() if hasattr(m, "drop_path")]
    assert rates and rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    with pytest.raises(InvalidInputError, match="drop_path_rate"):
        train(train_config(embeddings, tmp_path / "bad", steps=1, drop_path_rate=1.0))


def test_rng_state_keeps_only_this_process_gpu(monkeypatch):
    state = rng_state(torch.device("cpu"))
    assert state["cuda"] is None
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((s, device)))
    set_rng_state(state, torch.device("cuda", 0))  # saved on the CPU: no GPU state to restore
    assert restored == []
    gpu_state = torch.ones(4, dtype=torch.uint8)
    set_rng_state({**state, "cuda": gpu_state}, torch.device("cuda", 1))
    assert len(restored) == 1 and torch.equal(restored[0][0], gpu_state)
    assert restored[0][1] == torch.device("cuda", 1)
