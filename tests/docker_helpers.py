"""A real Docker engine for the container tests (``-m docker``): the project's image and compose
stack, built and run as a user would.

Where no engine runs, one is started as root with the flags that work without iptables or a
default bridge (``DOCKERD_FLAGS``) and stopped again at the end of the session. Public registries
cannot be reached from the CI machines, so ``python:3.11-slim-bookworm``, ``redis`` and
``nginx`` are replaced by stand-in images made from Debian's own packages (``debootstrap`` of
the suite, then ``docker import``), cached by a tag that digests their recipe. Where an engine
cannot be had (no root, no ``dockerd``, no cgroups), :func:`engine_or_skip` skips with one line
that names why, and pytest's summary (``-ra``, as ``.ci/run`` runs it) prints that line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERD_FLAGS = ("--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none")
# The image the tests build, and the host's certificate bundle, which the build's pip needs
# where HTTPS goes through an intercepting proxy (only the test's stand-in base carries it).
SERVICE_TAG = "repvit-sam-test/repvit-sam:latest"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STANDIN_CA_BUNDLE = "/etc/ssl/certs/host-ca-bundle.crt"


def docker(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the docker CLI; a failure shows the command and its output."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class Engine:
    """The Docker engine of the session: the one running, or ``dockerd`` started here."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def why_not(self) -> str | None:
        """Why no engine can be started here, or None."""
        if shutil.which("docker") is None:
            return "no docker CLI (apt-get install docker.io; .ci/run does)"
        if shutil.which("dockerd") is None:
            return "no dockerd (apt-get install docker.io; .ci/run does)"
        if os.geteuid() != 0:
            return "dockerd must start as root and this user is not"
        if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
            return "no cgroup file system at /sys/fs/cgroup"
        return None

    def start(self, timeout: float = 60) -> None:
        log = self.folder / "dockerd.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                ["dockerd", *DOCKERD_FLAGS], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not engine_running():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"dockerd did not start ({' '.join(DOCKERD_FLAGS)}):\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def engine_or_skip(folder: Path) -> Engine:
    """The engine, started if need be; skips the docker tests with the reason where none can."""
    engine = Engine(folder)
    if engine_running():
        return engine
    reason = engine.why_not()
    if reason is None:
        try:
            engine.start()
            return engine
        except RuntimeError as error:
            reason = str(error).splitlines()[0]
    line = f"DOCKER TESTS SKIPPED: no Docker engine can run here: {reason}"
    print(line, file=sys.stderr)
    pytest.skip(line)


@dataclass(frozen=True)
class StandIn:
    """A base image made from a Debian suite's packages, in place of a registry's image.

    Args:
        name: The repository part of the tag (``repvit-sam-standin/NAME``).
        suite: The Debian suite debootstrap installs (``bookworm``, ``sid``).
        packages: Packages installed on top of the minimal base.
        changes: Dockerfile instructions for ``docker import --change`` (CMD, ENTRYPOINT, ENV,
            EXPOSE, ...: Docker 20.10 takes no STOPSIGNAL there).
        files: Files written into the tree, path to (content, mode).
        remove: Paths removed from the tree after the packages are installed.
        links: Symbolic links made in the tree, path to target.
        host_ca: Whether the host's certificate bundle goes in, at ``STANDIN_CA_BUNDLE``.
    """

    name: str
    suite: str
    packages: tuple[str, ...]
    changes: tuple[str, ...] = ()
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    host_ca: bool = False

    @property
    def tag(self) -> str:
        recipe = repr((self.suite, self.packages, self.changes, sorted(self.files.items())))
        recipe += repr((self.remove, sorted(self.links.items()), self.host_ca))
        if self.host_ca:
            recipe += hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()
        return f"repvit-sam-standin/{self.name}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"

    def ensure(self) -> str:
        """The image's tag, made first unless the engine has it already."""
        if docker("image", "inspect", self.tag, check=False).returncode == 0:
            return self.tag
        if shutil.which("debootstrap") is None:
            pytest.fail("the stand-in images need debootstrap (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory(prefix=f"standin-{self.name}-") as folder:
            tree = Path(folder) / "rootfs"
            self._bootstrap(tree, Path(folder) / "debootstrap.log")
            changes = [option for change in self.changes for option in ("--change", change)]
            tar = subprocess.Popen(
                ["tar", "-C", str(tree), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
            )
            imported = subprocess.run(
                ["docker", "import", *changes, "-", self.tag],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=600,
            )
            tar.stdout.close()  # tar ends (SIGPIPE) if the import stopped reading early
            tar.wait()
            assert imported.returncode == 0 and tar.returncode == 0, imported.stderr
        return self.tag

    def _bootstrap(self, tree: Path, log: Path) -> None:
        # debootstrap's default mirror, Debian's own archive.
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(self.packages)}"]
        with log.open("w") as out:
            done = subprocess.run(
                [*command, self.suite, str(tree)],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1200,
            )
        assert done.returncode == 0, f"debootstrap {self.suite} failed:\n{log.read_text()[-3000:]}"
        for path in self.remove:
            target = tree / path.lstrip("/")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for path, (content, mode) in self.files.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        for path, target in self.links.items():
            link = tree / path.lstrip("/")
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        if self.host_ca:
            shutil.copyfile(HOST_CA_BUNDLE, tree / STANDIN_CA_BUNDLE.lstrip("/"))
        # No apt lists or caches in the image: a build runs apt-get update first.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (tree / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()


# python:3.11-slim-bookworm: Debian bookworm's Python 3.11 with venv, `python` on PATH.
PYTHON = StandIn(
    name="python",
    suite="bookworm",
    packages=("python3", "python3-venv", "python-is-python3", "ca-certificates"),
    changes=("ENV LANG=C.UTF-8", f"ENV PIP_CERT={STANDIN_CA_BUNDLE}", 'CMD ["python3"]'),
    host_ca=True,
)

# redis: Debian's redis-server; like the official image's entrypoint, a server started without
# a configuration file listens on every address of its network without protected mode.
REDIS_ENTRYPOINT = """#!/bin/sh
set -e
if [ "$1" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
"""
REDIS = StandIn(
    name="redis",
    suite="bookworm",
    packages=("redis-server",),
    changes=(
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["redis-server"]',
        "EXPOSE 6379",
    ),
    files={"/usr/local/bin/docker-entrypoint.sh": (REDIS_ENTRYPOINT, 0o755)},
)

# nginx: Debian sid's nginx (>= 1.27.3, for `resolve` in upstream servers; bookworm's 1.22 and
# trixie's 1.26 reject it), laid out as the official image: conf.d/default.conf is the site.
NGINX = StandIn(
    name="nginx",
    suite="sid",
    packages=("nginx",),
    changes=('CMD ["nginx", "-g", "daemon off;"]', "EXPOSE 80"),
    remove=("/etc/nginx/sites-enabled/default",),
    # As in the official image: the logs go to the container's output (docker logs).
    links={"/var/log/nginx/access.log": "/dev/stdout", "/var/log/nginx/error.log": "/dev/stderr"},
)


# PyTorch's CPU index cannot be reached from these machines, so the test image carries PyPI's
# CUDA torch (about 5.5 GB), which the build stage installs and the runtime stage copies whole.
# Measured on a 2-core development machine, a first build from the stand-in base: 18.4 GB of the
# disk in use at the peak (the runtime stage's copy being committed), 12.4 GB kept after.
SERVICE_BUILD_FREE_BYTES = 20 * 2**30
BUILD_STAGE_TAG = "repvit-sam-test/repvit-sam-build:latest"


def engine_root() -> Path:
    """The folder the engine keeps its images in (``docker info``'s DockerRootDir)."""
    return Path(docker("info", "--format", "{{.DockerRootDir}}").stdout.strip())


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def skip_unless_room_for_the_build(folder: Path, needed: int = SERVICE_BUILD_FREE_BYTES) -> None:
    """Skips the image's tests, saying how much disk is free and needed, before a build that
    would fail half-way with "no space left on device"."""
    free = free_bytes(folder)
    if free >= needed:
        return
    line = (
        f"DOCKER TESTS SKIPPED: {free / 2**30:.1f} GB free on {folder}, and building the test "
        f"image (PyPI's CUDA torch, copied between two stages) needs about "
        f"{needed / 2**30:.0f} GB: free some, or point dockerd's --data-root at a larger disk"
    )
    print(line, file=sys.stderr)
    pytest.skip(line)


def build_service_image(python_image: str, build_args: Sequence[str] = ()) -> str:
    """Builds the project's Dockerfile from the repository root, as the README documents.

    ``TORCH_INDEX_URL`` is empty (pip's own index: PyPI's torch, the CUDA build) unless
    ``build_args`` set it, and the build runs on the host's network (the engine has no default
    bridge). The legacy builder is used: BuildKit here would need its frontend and helper images
    from a registry. The build stage is tagged on its own first, so that where the disk is then
    short its layers (a second copy of the environment) can be removed for the tests that follow;
    elsewhere they stay as the next build's cache. Skips where the disk cannot hold the build.
    """
    root = engine_root()
    skip_unless_room_for_the_build(root)
    previous = docker("image", "inspect", "--format", "{{.Id}}", SERVICE_TAG, check=False)
    arguments = [f"PYTHON_IMAGE={python_image}", "TORCH_INDEX_URL=", *build_args]
    command = ["build", "--network", "host"]
    command += [option for argument in arguments for option in ("--build-arg", argument)]
    for extra in (("--target", "build", "-t", BUILD_STAGE_TAG), ("-t", SERVICE_TAG)):
        docker(*command, *extra, str(ROOT), timeout=3600, env={"DOCKER_BUILDKIT": "0"})
    current = docker("image", "inspect", "--format", "{{.Id}}", SERVICE_TAG).stdout.strip()
    old = previous.stdout.strip()
    if previous.returncode == 0 and old != current:
        docker("image", "rm", old, check=False)  # the previous build, unless still in use
    if free_bytes(root) < SERVICE_BUILD_FREE_BYTES:
        docker("image", "rm", BUILD_STAGE_TAG, check=False)
    return SERVICE_TAG
