"""Run kazoo_smoke.py against Rookery and (as a check of the script itself)
against Apache ZooKeeper 3.8."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import servers

SMOKE = Path(__file__).resolve().parent / "kazoo_smoke.py"
TIMEOUT = 150  # the script has its own per-check watchdog (45 s)


@pytest.mark.parametrize("kind", ["zookeeper", "rookery"])
def test_kazoo_smoke(kind, server_factory):
    srv = server_factory(kind, super_password=servers.SUPER_PASSWORD)
    try:
        p = subprocess.run([sys.executable, str(SMOKE), srv.host_port,
                            "--super", servers.SUPER_PASSWORD],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        pytest.fail(f"kazoo_smoke.py timed out after {TIMEOUT}s against {kind}\n{out}"
                    f"\n--- {kind} log tail ---\n{srv.log_tail(40)}", pytrace=False)
    print(p.stdout)
    if p.returncode != 0:
        pytest.fail(f"kazoo_smoke.py failed against {kind} (exit {p.returncode}):\n"
                    f"{p.stdout}\n--- {kind} log tail ---\n{srv.log_tail(40)}",
                    pytrace=False)
    assert re.search(r"^(\d+)/\1 checks passed", p.stdout, re.M), p.stdout


def test_kazoo_smoke_against_a_rookery_ensemble():
    """The same script against a 3-member ensemble, connected to all members."""
    members = servers.start_rookery_ensemble(
        3, super_digest=servers.super_digest(servers.SUPER_PASSWORD))
    try:
        hosts = ",".join(m.host_port for m in members)
        try:
            p = subprocess.run([sys.executable, str(SMOKE), hosts,
                                "--super", servers.SUPER_PASSWORD],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            logs = "\n".join(m.log_tail(30) for m in members)
            pytest.fail(f"kazoo_smoke.py timed out against the ensemble\n{out}\n{logs}",
                        pytrace=False)
        print(p.stdout)
        if p.returncode != 0:
            logs = "\n".join(m.log_tail(30) for m in members)
            pytest.fail(f"kazoo_smoke.py failed against the ensemble (exit {p.returncode}):\n"
                        f"{p.stdout}\n{logs}", pytrace=False)
        assert re.search(r"^(\d+)/\1 checks passed", p.stdout, re.M), p.stdout
        modes = sorted(m.four_letter("srvr").split("Mode: ")[1].split()[0] for m in members)
        assert modes == ["follower", "follower", "leader"], modes
    finally:
        for m in members:
            m.stop()
