"""Fixtures for the Rookery <-> Apache ZooKeeper compatibility suite.

Every server started through these fixtures is a child process with its own
free port and temp dir, and is killed in the fixture teardown (which runs
even when the test fails); servers.py additionally kills leftovers atexit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402

SUPER_PASSWORD = servers.SUPER_PASSWORD
KINDS = ["zookeeper", "rookery"]


def _start(kind: str, extra_cfg: Optional[Dict[str, object]] = None,
           super_password: Optional[str] = None) -> servers.Server:
    sd = servers.super_digest(super_password) if super_password else None
    try:
        return servers.start(kind, extra_cfg, super_digest=sd)
    except servers.RookeryBinaryMissing as e:
        msg = str(e)
    except servers.ServerStartError as e:
        msg = f"{kind} did not start:\n{e}"
    pytest.fail(msg, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture
def server_factory(request) -> Callable[..., servers.Server]:
    """``server_factory(kind, extra_cfg=None, super_password=None)`` -> Server.

    All servers started through it are stopped at teardown.
    """
    started: List[servers.Server] = []

    def factory(kind: str, extra_cfg: Optional[Dict[str, object]] = None,
                super_password: Optional[str] = None) -> servers.Server:
        srv = _start(kind, extra_cfg, super_password)
        started.append(srv)
        return srv

    def teardown():
        for srv in reversed(started):
            srv.stop()

    request.addfinalizer(teardown)
    return factory


@pytest.fixture
def zookeeper(server_factory) -> servers.Server:
    """Fresh Apache ZooKeeper 3.8 (super digest for SUPER_PASSWORD)."""
    return server_factory("zookeeper", super_password=SUPER_PASSWORD)


@pytest.fixture
def rookery(server_factory) -> servers.Server:
    """Fresh Rookery server (fails the test if the binary is missing)."""
    return server_factory("rookery", super_password=SUPER_PASSWORD)


@pytest.fixture(params=KINDS)
def any_server(request, server_factory) -> servers.Server:
    """Parametrised over both implementations: ids [zookeeper] / [rookery]."""
    return server_factory(request.param, super_password=SUPER_PASSWORD)


DOCKER_TAG = "compat-test"
DOCKER_IMAGES = ["rookery", "rookery-demo-service", "rookery-demo-client"]


@pytest.fixture(scope="session")
def docker_tag() -> str:
    """Builds the FROM-scratch images once per run (scripts/docker-build.sh) under a tag of
    their own, and removes them at the end: `rookery:<tag>` and the demo service's and client's."""
    env = {**os.environ, "ROOKERY_TAG": DOCKER_TAG}
    subprocess.run([str(servers.REPO_ROOT / "scripts" / "docker-build.sh")], check=True, env=env,
                   timeout=1800)
    yield DOCKER_TAG
    subprocess.run(["docker", "rmi", "-f", *(f"{i}:{DOCKER_TAG}" for i in DOCKER_IMAGES)],
                   capture_output=True, timeout=120)


def _on_sigterm(signum, frame):
    # SIGTERM would otherwise kill pytest without running fixture teardown or
    # atexit handlers: stop our servers first, then die the default way.
    servers.stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def pytest_configure(config):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_report_header(config):
    b = servers.rookery_bin()
    return [f"compat: rookery binary {b} ({'present' if b.exists() else 'MISSING'}); "
            f"zookeeper classpath {servers.ZK_CLASSPATH}"]
