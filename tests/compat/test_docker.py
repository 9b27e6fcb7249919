"""The FROM-scratch container image: it builds without a registry, serves clients, and keeps its
data across a container restart (a volume on /data); and docker/compose.yml runs a three-member
ensemble from it that survives the loss of its leader.

Runs whenever a Docker engine is present (as in CI); skipped otherwise (the ensemble test also
needs `docker compose` or `docker-compose`). Single containers use the host network and bind
127.0.0.1 only; the ensemble runs on its own compose network and publishes its client ports on
127.0.0.1 only, so no traffic leaves the machine.
"""
from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from kazoo.client import KazooClient

from dockerkit import (Project, compose_or_skip, docker_ok, free_ports, srvr_mode, stop_client,
                       try_write, wait_for)
from servers import REPO_ROOT, free_port, four_letter

pytestmark = pytest.mark.skipif(not docker_ok(), reason="no Docker engine")


def wait_ruok(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if four_letter("127.0.0.1", port, "ruok") == "imok":
            return
        time.sleep(0.1)
    raise AssertionError("container did not answer ruok")


def test_image_serves_and_keeps_data_across_restarts(docker_tag, tmp_path: Path):
    image = f"rookery:{docker_tag}"
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


COMPOSE_FILE = REPO_ROOT / "docker" / "compose.yml"
MEMBERS = ["rookery1", "rookery2", "rookery3"]


class Ensemble(Project):
    """docker/compose.yml on free host ports."""

    def __init__(self, compose: List[str], tag: str) -> None:
        self.ports: Dict[str, int] = dict(zip(MEMBERS, free_ports(len(MEMBERS))))
        env = {"ROOKERY_TAG": tag}
        for i, name in enumerate(MEMBERS, 1):
            env[f"ROOKERY{i}_PORT"] = str(self.ports[name])
        super().__init__(compose, COMPOSE_FILE, env, self.ports)



def test_compose_ensemble_keeps_acknowledged_writes_when_the_leader_is_killed(docker_tag):
    compose = compose_or_skip()
    ens = Ensemble(compose, docker_tag)
    clients: List[KazooClient] = []
    stop_writer = threading.Event()
    writer: Optional[threading.Thread] = None

    def client(hosts: str, timeout: float = 10) -> KazooClient:
        zk = KazooClient(hosts=hosts, timeout=timeout)
        clients.append(zk)
        zk.start(timeout=15)
        return zk

    try:
        ens.run("up", "-d")
        # Every member elected: one leader, two followers.
        wait_for("all three members report a Mode line",
                 lambda: all(ens.modes().values()), 120, ens.modes)
        modes = ens.modes()
        assert sorted(modes.values()) == ["follower", "follower", "leader"], modes

        # 200 writes through member 1 (leader or follower: a follower forwards them).
        zk1 = client(ens.hosts(["rookery1"]))
        acked: Dict[str, bytes] = {}
        zk1.create("/ensemble-test", b"")
        for i in range(200):
            path, data = f"/ensemble-test/before-{i:04d}", f"before {i}".encode()
            zk1.create_async(path, data).get(timeout=10)
            acked[path] = data
        stop_client(zk1)

        leader = next(m for m, mode in ens.modes().items() if mode == "leader")
        survivors = [m for m in MEMBERS if m != leader]

        # Keep writing through a survivor while the leader dies; record what is acknowledged
        # (a write whose outcome is unknown is not recorded, and its path is never reused).
        during: Dict[str, bytes] = {}
        zkw = KazooClient(hosts=ens.hosts([survivors[0]]), timeout=30)
        clients.append(zkw)
        zkw.start(timeout=15)

        def write_during() -> None:
            for i in range(100_000):
                if stop_writer.is_set():
                    return
                path, data = f"/ensemble-test/during-{i:05d}", f"during {i}".encode()
                try:
                    zkw.create_async(path, data).get(timeout=10)
                    during[path] = data
                except Exception:  # noqa: BLE001 - lost leader, electing, reconnecting
                    stop_writer.wait(0.2)

        writer = threading.Thread(target=write_during, name="write-during-failover", daemon=True)
        writer.start()
        wait_for("the writer gets 20 writes acknowledged", lambda: len(during) >= 20, 60, ens.modes, 0.05)

        subprocess.run(["docker", "kill", ens.container(leader)], check=True,
                       capture_output=True, timeout=60)
        assert srvr_mode(ens.ports[leader]) is None

        # The survivors elect a new leader and take writes again.
        wait_for("a client of the two survivors can write again",
                 lambda: try_write(ens.hosts(survivors), "/ensemble-test/after-failover"), 120, ens.modes, 1)
        modes = {m: srvr_mode(ens.ports[m]) for m in survivors}
        assert sorted(modes.values()) == ["follower", "leader"], modes

        stop_writer.set()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the writer did not stop"
        print(f"killed {leader}; {len(during)} writes acknowledged around the failover")
        acked.update(during)
        acked["/ensemble-test/after-failover"] = b"after"

        # Every acknowledged write is on both survivors (sync first: reads are local).
        for member in survivors:
            zk = client(ens.hosts([member]))
            zk.sync("/ensemble-test")
            children = {f"/ensemble-test/{c}" for c in zk.get_children("/ensemble-test")}
            missing = sorted(set(acked) - children)
            assert not missing, f"{member} lacks {len(missing)} acknowledged znodes: {missing[:10]}"
            for path, data in acked.items():
                assert zk.get(path)[0] == data, f"{member}: {path}"
            stop_client(zk)
    except BaseException:
        print(f"== docker compose logs ({ens.project}) ==\n{ens.logs()}")
        raise
    finally:
        stop_writer.set()
        for zk in clients:
            stop_client(zk)
        if writer is not None:
            writer.join(timeout=30)
        ens.down()
