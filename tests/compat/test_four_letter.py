"""Four-letter words (4lw.commands.whitelist=*) on both implementations.

Only the parts clients and tooling actually rely on are checked (exact
answers for ruok/isro, key lines for srvr/stat/conf/mntr/envi)."""

from __future__ import annotations

import re
import socket
import struct

import pytest

import servers


@pytest.fixture(scope="module", params=["zookeeper", "rookery"])
def any_server(request):
    """One server per implementation for the whole module (4lw are cheap and
    mostly read-only; this saves a dozen server start-ups)."""
    try:
        srv = servers.start(request.param, super_digest=servers.super_digest(servers.SUPER_PASSWORD))
    except (servers.RookeryBinaryMissing, servers.ServerStartError) as e:
        msg = str(e)
    else:
        request.addfinalizer(srv.stop)
        return srv
    pytest.fail(msg, pytrace=False)


def test_ruok_isro(any_server):
    assert any_server.four_letter("ruok") == "imok"
    assert any_server.four_letter("isro") == "rw"


def test_srvr_stat(any_server):
    for cmd in ("srvr", "stat"):
        out = any_server.four_letter(cmd)
        assert re.search(r"^Zookeeper version: \d+\.\d+\.\d+", out, re.M), out
        assert re.search(r"^Mode: standalone$", out, re.M), out
        assert re.search(r"^Zxid: 0x[0-9a-f]+$", out, re.M), out
        assert re.search(r"^Node count: \d+$", out, re.M), out


def test_conf(any_server):
    out = any_server.four_letter("conf")
    assert f"clientPort={any_server.port}" in out.splitlines(), out
    assert "tickTime=2000" in out.splitlines(), out
    assert "minSessionTimeout=4000" in out.splitlines(), out
    assert "maxSessionTimeout=40000" in out.splitlines(), out


def test_envi(any_server):
    out = any_server.four_letter("envi")
    # kazoo's server_version() parses this line
    assert re.search(r"^zookeeper\.version=\d+\.\d+\.\d+", out, re.M), out


def test_mntr(any_server):
    out = any_server.four_letter("mntr")
    kv = dict(l.split("\t", 1) for l in out.splitlines() if "\t" in l)
    assert kv.get("zk_server_state") == "standalone", out
    for key in ("zk_version", "zk_znode_count", "zk_watch_count", "zk_ephemerals_count",
                "zk_num_alive_connections", "zk_outstanding_requests"):
        assert key in kv, f"{key} missing from mntr:\n{out}"
    assert int(kv["zk_znode_count"]) >= 4, out  # / /zookeeper /zookeeper/{config,quota}


def test_cons_lists_clients(any_server):
    """A connected client shows up in 'cons' as ' /IP:PORT[...](...)'."""
    with socket.create_connection((any_server.host, any_server.port), timeout=5) as s:
        body = struct.pack(">iqiqi16s?", 0, 0, 10000, 0, 16, b"\0" * 16, False)
        s.sendall(struct.pack(">i", len(body)) + body)
        s.settimeout(5)
        s.recv(1024)  # ConnectResponse (session established)
        local_port = s.getsockname()[1]
        out = any_server.four_letter("cons")
    assert re.search(rf"^ /127\.0\.0\.1:{local_port}\[", out, re.M), out


@pytest.mark.parametrize("cmd", ["wchs", "dump", "crst", "srst", "dirs"])
def test_other_words_answer(any_server, cmd):
    assert any_server.four_letter(cmd).strip() != "", cmd
