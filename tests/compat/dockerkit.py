"""Docker and compose helpers for test_docker.py and test_compose_system.py: whether an engine
runs, the compose command, a compose project on free host ports, and the probes the tests poll.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, TypeVar

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from servers import free_port, four_letter

MODE = re.compile(r"^Mode: (leader|follower|observer)$", re.M)
ZXID = re.compile(r"^Zxid: (0x[0-9a-f]+)$", re.M)
T = TypeVar("T")


def docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def compose_command() -> Optional[List[str]]:
    """`docker compose` (the CLI plugin) or the standalone `docker-compose`, whichever exists."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_or_skip() -> List[str]:
    """The compose command; skips the calling test where there is none."""
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    return compose


def srvr_mode(port: int) -> Optional[str]:
    m = MODE.search(four_letter("127.0.0.1", port, "srvr"))
    return m.group(1) if m else None


def srvr_zxid(port: int) -> Optional[str]:
    m = ZXID.search(four_letter("127.0.0.1", port, "srvr"))
    return m.group(1) if m else None


def free_ports(n: int) -> List[int]:
    ports: List[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def stop_client(zk: Optional[KazooClient]) -> None:
    if zk is None:
        return
    try:
        zk.stop()
        zk.close()
    except Exception:  # noqa: BLE001 - best effort in cleanup
        pass


def try_write(hosts: str, path: str, timeout: float = 10) -> bool:
    """One attempt, on a fresh session, to create `path` through `hosts`; True once it is done."""
    zk = KazooClient(hosts=hosts, timeout=timeout)
    try:
        zk.start(timeout=min(timeout, 5))
        zk.create_async(path, b"after", makepath=True).get(timeout=timeout)
        return True
    except NodeExistsError:
        return True  # an earlier attempt whose answer was lost did create it
    except Exception:  # noqa: BLE001 - the ensemble may still be electing
        return False
    finally:
        stop_client(zk)


class Project:
    """One `<compose> -p <unique> -f FILE` project; `env` carries its ports and tag, `ports` the
    host port of each ensemble member's client port."""

    def __init__(self, compose: List[str], file: Path, env: Dict[str, str],
                 ports: Dict[str, int]) -> None:
        self.compose = compose
        self.file = file
        self.project = f"rookerytest{uuid.uuid4().hex[:10]}"
        self.env = {**os.environ, **env}
        self.ports = ports

    def modes(self) -> Dict[str, Optional[str]]:
        return {m: srvr_mode(p) for m, p in self.ports.items()}

    def hosts(self, members: List[str]) -> str:
        return ",".join(f"127.0.0.1:{self.ports[m]}" for m in members)

    def run(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*self.compose, "-p", self.project, "-f", str(self.file), *args]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def containers(self, service: str) -> List[str]:
        return self.run("ps", "-q", service).stdout.split()

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def logs(self, tail: int = 80) -> str:
        try:
            r = self.run("logs", "--no-color", "--tail", str(tail), timeout=60, check=False)
            return r.stdout + r.stderr
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return f"<no logs: {e}>"

    def down(self) -> None:
        # Containers, networks and named volumes, whatever state the test left.
        self.run("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)


def wait_for(what: str, predicate: Callable[[], T], timeout: float,
             describe: Callable[[], object] = lambda: "", interval: float = 0.25) -> T:
    """Polls `predicate` until it returns something true (returned), or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s; {describe()}")
        time.sleep(interval)
