"""The whole system in containers (examples/compose/compose.yml): a three-member ensemble, the
demo service under its sidecars, and the demo client sending steady traffic through its own
sidecar while it runs an election and a fenced lock. Under that traffic the test

1. scales the demo service from 3 to 5 to 2 instances: no request fails;
2. kills the ensemble leader's container: the sidecars keep routing (no request fails), the lock
   is taken again and its fencing tokens only grow; the killed member comes back;
3. cuts one follower off the quorum network: that minority member stops serving (no write
   through it), the majority takes writes; connected again, it catches up;
4. stops everything: every sidecar goes through its lame duck and exits 0;

and prints the figures (requests sent and failed, the failover time). Skipped where no Docker
engine or compose runs.
"""
from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from typing import Dict, List, Optional

import pytest
from kazoo.client import KazooClient

from dockerkit import (Project, compose_or_skip, docker_ok, free_ports, srvr_mode, srvr_zxid,
                       stop_client, try_write, wait_for)
from servers import REPO_ROOT

pytestmark = pytest.mark.skipif(not docker_ok(), reason="no Docker engine")

COMPOSE_FILE = REPO_ROOT / "examples" / "compose" / "compose.yml"
MEMBERS = ["zk1", "zk2", "zk3"]


def free_quorum_net() -> str:
    """A 10.x.y prefix for the quorum network's /24 that no Docker network uses yet."""
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split()
    used = subprocess.run(["docker", "network", "inspect", "-f",
                           "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
                          capture_output=True, text=True, timeout=30).stdout
    for _ in range(100):
        prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if f"{prefix}." not in used:
            return prefix
    raise AssertionError("no free 10.x.y.0/24 for the quorum network")


class System(Project):
    def __init__(self, compose: List[str], tag: str) -> None:
        ports = free_ports(len(MEMBERS) + 1)
        self.ports: Dict[str, int] = dict(zip(MEMBERS, ports))
        self.admin_port = ports[-1]
        self.quorum_net = free_quorum_net()
        env = {"ROOKERY_TAG": tag, "CLIENT_ADMIN_PORT": str(self.admin_port),
               "QUORUM_NET": self.quorum_net}
        for name, port in self.ports.items():
            env[f"{name.upper()}_PORT"] = str(port)
        super().__init__(compose, COMPOSE_FILE, env, self.ports)


    def stats(self) -> Optional[dict]:
        """The client's last `stats {...}` line."""
        logs = subprocess.run(["docker", "logs", "--tail", "200", self.container("client")],
                              capture_output=True, text=True, timeout=30).stdout
        lines = [ln for ln in logs.splitlines() if ln.startswith("stats ")]
        return json.loads(lines[-1][len("stats "):]) if lines else None

    def fresh_stats(self) -> dict:
        """A stats line printed after this call (the client prints one every 2 s)."""
        time.sleep(2.5)
        s = self.stats()
        assert s is not None, "the client printed no stats"
        return s

    def endpoints(self) -> List[dict]:
        """The demo service's endpoints in the client's sidecar."""
        url = f"http://127.0.0.1:{self.admin_port}/endpoints"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                doc = json.load(r)
        except OSError:
            return []
        return doc["services"].get("demo", {}).get("endpoints", [])

    def describe(self) -> str:
        return f"modes {self.modes()}, endpoints {len(self.endpoints())}, stats {self.stats()}"

    def scale(self, n: int) -> None:
        self.run("up", "-d", "--no-recreate", "--scale", f"demo={n}", timeout=300)
        wait_for(f"the client's sidecar routes to exactly {n} demo instances",
                 lambda: len([e for e in self.endpoints() if e.get("state") != "filtered"]) == n,
                 90, self.describe, 0.5)


def failed(after: dict, before: dict) -> int:
    return after["failed"] - before["failed"]


def test_the_whole_system_scales_fails_over_and_heals(docker_tag):
    compose = compose_or_skip()
    system = System(compose, docker_tag)
    clients: List[KazooClient] = []
    try:
        system.run("up", "-d", timeout=300)
        wait_for("all three members report a Mode line", lambda: all(system.modes().values()),
                 120, system.describe)
        wait_for("the client's requests are answered",
                 lambda: (system.stats() or {}).get("ok", 0) > 50, 120, system.describe, 1)
        wait_for("the client's sidecar routes to 3 demo instances",
                 lambda: len(system.endpoints()) == 3, 60, system.describe, 0.5)
        start = system.fresh_stats()

        # 1. Scale out and in under steady traffic.
        system.scale(5)
        wait_for("all 5 instances answer the client",
                 lambda: len((system.stats() or {}).get("by_instance", {})) >= 5, 60, system.describe, 1)
        system.scale(2)
        scaled = system.fresh_stats()
        assert failed(scaled, start) == 0, f"requests failed while scaling: {scaled['failures']}"

        # 2. Kill the ensemble's leader.
        leader = next(m for m, mode in system.modes().items() if mode == "leader")
        survivors = [m for m in MEMBERS if m != leader]
        locks_before = scaled["lock_acquisitions"]
        killed_at = time.monotonic()
        subprocess.run(["docker", "kill", system.container(leader)], check=True,
                       capture_output=True, timeout=60)
        wait_for("a client of the two survivors can write again",
                 lambda: try_write(system.hosts(survivors), "/compose-test/after-failover"),
                 120, system.describe, 0.2)
        failover_s = time.monotonic() - killed_at
        wait_for("the client takes the lock again after the failover",
                 lambda: (system.stats() or {}).get("lock_acquisitions", 0) >= locks_before + 3, 90,
                 system.describe, 1)
        after_kill = system.fresh_stats()
        assert failed(after_kill, scaled) == 0, \
            f"requests failed across the leader's death: {after_kill['failures']}"
        assert after_kill["token_regressions"] == 0
        assert after_kill["last_token"] > scaled["last_token"], "the fencing token did not grow"
        subprocess.run(["docker", "start", system.container(leader)], check=True,
                       capture_output=True, timeout=60)
        wait_for("the killed member serves again", lambda: all(system.modes().values()), 120,
                 system.describe)

        # 3. Cut a follower off the quorum network.
        follower = next(m for m, mode in system.modes().items() if mode == "follower")
        others = [m for m in MEMBERS if m != follower]
        cid = system.container(follower)
        network = f"{system.project}_quorum"
        member_id = MEMBERS.index(follower) + 1
        subprocess.run(["docker", "network", "disconnect", network, cid], check=True,
                       capture_output=True, timeout=60)
        wait_for(f"{follower}, cut off, stops serving", lambda: srvr_mode(system.ports[follower]) is None,
                 60, system.describe)
        assert not try_write(system.hosts([follower]), "/compose-test/through-the-minority", 3), \
            "the minority member took a write"
        assert try_write(system.hosts(others), "/compose-test/majority"), "the majority took no write"
        subprocess.run(["docker", "network", "connect", "--ip", f"{system.quorum_net}.{10 + member_id}",
                        "--alias", f"peer{member_id}", network, cid],
                       check=True, capture_output=True, timeout=60)
        wait_for(f"{follower} serves again", lambda: srvr_mode(system.ports[follower]) is not None,
                 120, system.describe)
        zk = KazooClient(hosts=system.hosts([follower]), timeout=10)
        clients.append(zk)
        zk.start(timeout=15)
        zk.sync("/compose-test")
        assert zk.exists("/compose-test/majority"), f"{follower} lacks the majority's write"
        assert not zk.exists("/compose-test/through-the-minority")
        wait_for("all members at one zxid",
                 lambda: len({srvr_zxid(p) for p in system.ports.values()}) == 1, 60,
                 system.describe)
        healed = system.fresh_stats()
        assert failed(healed, start) == 0, f"requests failed: {healed['failures']}"
        assert healed["token_regressions"] == 0

        # 4. Stop: every sidecar runs its lame duck and exits cleanly.
        services = system.containers("demo") + [system.container("client")]
        system.run("stop", "-t", "30", timeout=300)
        for c in services:
            code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", c],
                                  capture_output=True, text=True, timeout=30).stdout.strip()
            logs = subprocess.run(["docker", "logs", c], capture_output=True, text=True,
                                  timeout=30)
            text = logs.stdout + logs.stderr
            assert "sidecar stopped" in text, f"{c}: no lame duck in its log:\n{text[-2000:]}"
            assert code == "0", f"{c} exited with {code}"

        print(f"\nrequests sent {healed['sent'] - start['sent']}, failed "
              f"{failed(healed, start)}; {len(healed['by_instance'])} instances answered; "
              f"leader {leader} killed: writes again after {failover_s:.2f} s; lock taken "
              f"{healed['lock_acquisitions'] - start['lock_acquisitions']} times, last token "
              f"{healed['last_token']:#x}, regressions {healed['token_regressions']}")
    except BaseException:
        print(f"== compose logs ({system.project}) ==\n{system.logs(60)}")
        raise
    finally:
        for zk in clients:
            stop_client(zk)
        system.down()
