"""The FROM-scratch container image: it builds without a registry, serves clients, and keeps its
data across a container restart (a volume on /data).

Runs whenever a Docker engine is present (as in CI); skipped otherwise. Containers use the host
network and bind 127.0.0.1 only, so no traffic leaves loopback.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from servers import REPO_ROOT, free_port, four_letter

IMAGE = "rookery:compat-test"


def docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


pytestmark = pytest.mark.skipif(not docker_ok(), reason="no Docker engine")


@pytest.fixture(scope="module")
def image():
    env = {"ROOKERY_IMAGE": IMAGE}
    import os
    env = {**os.environ, **env}
    subprocess.run([str(REPO_ROOT / "scripts" / "docker-build.sh")], check=True, env=env, timeout=900)
    yield IMAGE
    subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True, timeout=60)


def wait_ruok(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if four_letter("127.0.0.1", port, "ruok") == "imok":
            return
        time.sleep(0.1)
    raise AssertionError("container did not answer ruok")


def test_image_serves_and_keeps_data_across_restarts(image, tmp_path: Path):
    port = free_port()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"tickTime=2000\ndataDir=/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n")
    volume = f"rookery-test-{uuid.uuid4().hex[:8]}"
    name = f"rookery-test-{uuid.uuid4().hex[:8]}"
    run = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
           "-v", f"{cfg}:/etc/rookery/zoo.cfg:ro", "-v", f"{volume}:/data", image]
    try:
        subprocess.run(run, check=True, capture_output=True, timeout=60)
        wait_ruok(port)
        zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
        zk.start(timeout=10)
        zk.create("/in-a-container", b"persisted")
        zk.stop()
        zk.close()
        subprocess.run(["docker", "kill", name], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while subprocess.run(["docker", "inspect", name], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "container did not go away"
            time.sleep(0.1)
        subprocess.run(run, check=True, capture_output=True, timeout=60)
        wait_ruok(port)
        zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
        zk.start(timeout=10)
        assert zk.get("/in-a-container")[0] == b"persisted"
        zk.stop()
        zk.close()
    finally:
        subprocess.run(["docker", "kill", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, timeout=60)
