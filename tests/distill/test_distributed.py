"""Two processes through torchrun (gloo on loopback): teacher-embed and train under DDP."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from repvit_sam.distill.data import EmbeddingDataset, read_manifest
from repvit_sam.distill.logs import read_log

SCRIPT = """
import os, sys
from pathlib import Path

import torch
import torch.distributed as dist

torch.set_num_threads(1)
dist.init_process_group("gloo")  # one group for both steps, as a script should
from repvit_sam.distill import EmbedConfig, TrainConfig, compute_teacher_embeddings, train

images, teacher, out = (Path(a) for a in sys.argv[1:4])
compute_teacher_embeddings(
    EmbedConfig(images, out / "emb", "tiny", teacher, batch_size=1, shard_size=2,
                num_workers=0, device="cpu", progress=False)
)
result = train(
    TrainConfig(out / "emb", out / "run", variant="m0_9", steps=4, batch_size=1, accumulation=2,
                lr=2e-3, warmup_steps=1, checkpoint_every=2, log_every=1, num_workers=0,
                device="cpu", progress=False)
)
torch.save(result.encoder.state_dict(), out / f"rank{os.environ['RANK']}.pt")
dist.destroy_process_group()
"""


def test_torchrun_two_processes(tmp_path, image_folder, teacher_checkpoint, embeddings):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {
        **os.environ,
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(image_folder),
        str(teacher_checkpoint),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]

    # Each rank embedded half of the images; together they equal the single-process embeddings.
    manifest = read_manifest(tmp_path / "emb")
    assert manifest["num_images"] == 6
    assert {s["file"].split("-")[1] for s in manifest["shards"]} == {"r0", "r1"}
    alone = EmbeddingDataset(embeddings)
    alone_by_name = {name: i for i, (name, _, _) in enumerate(alone.items)}
    shared = EmbeddingDataset(tmp_path / "emb")
    for index, (name, _, _) in enumerate(shared.items):
        torch.testing.assert_close(
            shared.embedding(index), alone.embedding(alone_by_name[name]), rtol=1e-3, atol=1e-3
        )

    # Training: both ranks logged through rank 0, and hold identical weights afterwards.
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["world_size"] == 2 and r["loss"] > 0 for r in log)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    saved = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert all(torch.equal(value, saved[key]) for key, value in rank0.items())
