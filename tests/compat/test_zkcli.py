"""zkCli.sh transcripts: Rookery must produce the same normalised output as
Apache ZooKeeper 3.8 for every script in zkcli_scripts/.

* test_zkcli_reference[...]  runs a script against ZooKeeper only (checks the
  script + normaliser; the result is cached for the comparison test);
* test_zkcli_matches_zookeeper[...] runs it against a fresh Rookery and
  asserts the normalised transcripts (and sorted watch events) are equal,
  printing a unified diff otherwise.

Both servers are started with superDigest for super:superpw.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import threading
from typing import Dict, List

import pytest

import servers
import zkcli

# script name -> lines that must appear in the normalised transcript (so the
# comparison cannot pass on two empty / broken outputs)
SCRIPTS: Dict[str, List[str]] = {
    "core": [
        "> create /t/plain hello", "Created /t/plain", "Node already exists: /t/plain",
        "Created /t/seq-0000000005", "Created /t/eseq-0000000007", "hello", "null",
        "version No is not valid : /t/plain", "Node does not exist: /t/nonexistent",
        "Ephemerals cannot have children: /t/eph/child", "Node not empty: /t",
        "Insufficient permission : /t/plain", "'world,'anyone", ": r",
        "'digest,'user1:+7K83PhyQ3ijGj0ADmljf0quVwQ=", "'digest,'user1:x",
        "ephemeralOwner = S1", "Sync is OK",
        "NodeDataChanged /t/plain (SyncConnected)",
    ],
    "acl": [
        "Insufficient permission : /acl/alice",
        "'digest,'alice:mmRnm3Q742LDeHiWvW5mAKUPIhY=", "'digest,'bob:0ezhUayTjEymfNB3K9C0+wkMLMo=",
        "KeeperErrorCode = InvalidACL for /acl/badacl", "'ip,'10.0.0.0/8", ": rw",
        "version No is not valid : /acl/multi",
    ],
    "super": [
        "Insufficient permission : /s/locked", "super:", "digest: super", "changed-by-super",
    ],
    "modern": [
        "Created /m/ttlseq-0000000003", "TTLs cannot be used with Ephemeral znodes",
        "[/m/eph1, /m/eph2, /m/ephseq-0000000006]", "digest: bob",
        "KeeperErrorCode = No such watcher for /nothere",
        "PersistentWatchRemoved /m/p (SyncConnected)", "NodeCreated /m/r/a/b (SyncConnected)",
    ],
    "containers_ttl": [
        "[busy, neverused, ttllong, ttlparent, ttlshort, used]",
        "[busy, neverused, ttllong, ttlparent]",
        "Node does not exist: /c/used", "Node does not exist: /c/ttlshort",
    ],
    "system": [
        "[config, quota]", "cversion = -1", "cversion = -2", "aclVersion = -1",
        "ctime = <epoch>", "Arguments are not valid : /zookeeper",
    ],
}


def _run_on(srv: servers.Server, script: str) -> zkcli.CliResult:
    return zkcli.run_script(srv.host_port, zkcli.load_script(script))


class _Reference:
    """Per-session cache of ZooKeeper transcripts (one fresh ZK per script)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: Dict[str, zkcli.CliResult] = {}

    def get(self, script: str) -> zkcli.CliResult:
        with self._lock:
            if script in self._cache:
                return self._cache[script]
        srv = servers.start_zookeeper(
            super_digest=servers.super_digest(servers.SUPER_PASSWORD))
        try:
            res = _run_on(srv, script)
        finally:
            srv.stop()
        with self._lock:
            self._cache[script] = res
        return res


@pytest.fixture(scope="session")
def zk_reference() -> _Reference:
    return _Reference()


def _check_expected(res: zkcli.CliResult, script: str, who: str) -> None:
    text = res.text().splitlines()
    missing = [l for l in SCRIPTS[script] if l not in text]
    assert not missing, (f"{who}: expected lines missing from the '{script}' transcript: "
                         f"{missing}\n--- transcript ---\n{res.text()}")


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_zkcli_reference(script, zk_reference):
    res = zk_reference.get(script)
    assert not res.timed_out, f"zkCli timed out against ZooKeeper:\n{res.raw}"
    n_cmds = len([l for l in zkcli.parse_script(zkcli.load_script(script))
                  if not l.startswith("#!")])
    assert sum(1 for l in res.lines if l.startswith("> ")) == n_cmds
    bad = [l for l in res.lines if l.startswith("!! ")]
    assert not bad, f"harness problems against ZooKeeper: {bad}\n{res.raw}"
    _check_expected(res, script, "zookeeper")


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_zkcli_matches_zookeeper(script, rookery, zk_reference, tmp_path):
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        f_zk = ex.submit(zk_reference.get, script)
        f_rk = ex.submit(_run_on, rookery, script)
        zk, rk = f_zk.result(), f_rk.result()
    (tmp_path / "zookeeper.txt").write_text(zk.text())
    (tmp_path / "rookery.txt").write_text(rk.text())
    (tmp_path / "zookeeper.raw.txt").write_text(zk.raw)
    (tmp_path / "rookery.raw.txt").write_text(rk.raw)
    if zk.text() != rk.text():
        diff = "".join(difflib.unified_diff(
            zk.text().splitlines(keepends=True), rk.text().splitlines(keepends=True),
            fromfile=f"zookeeper/{script}", tofile=f"rookery/{script}", n=4))
        print(diff)
        pytest.fail(
            f"zkCli transcript for '{script}' differs (- zookeeper, + rookery); "
            f"artifacts in {tmp_path}\n{diff}\n--- rookery log tail ---\n"
            f"{rookery.log_tail(40)}", pytrace=False)
    assert not rk.timed_out
    _check_expected(rk, script, "rookery")
