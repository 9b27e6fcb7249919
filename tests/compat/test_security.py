"""TLS, x509 and SASL with real clients, against Apache ZooKeeper 3.8 and Rookery alike.

Every test runs once per server kind with the same configuration keys, so a difference in
what the clients see fails one of the two runs:

* kazoo over TLS (``use_ssl``), with the client certificate's subject as an ``x509`` ACL id:
  the same ACL string works on both servers, so Rookery writes the subject as ZooKeeper does;
* TLS refusals: no client certificate, a certificate from another CA, a plain client on the
  secure port, a TLS client on the plain port; the server keeps serving afterwards;
* zkCli.sh over TLS (the Netty client socket, ``zookeeper.client.secure=true``);
* SASL DIGEST-MD5 with kazoo's ``sasl_options`` and with zkCli.sh and a JAAS file, the
  ``sasl`` ACL scheme, a wrong password;
* ``enforce.auth.enabled``: a client that does not authenticate is refused.

Certificates come from ``scripts/make-certs.sh``, the script the docs tell users to run.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, NoAuthError, SessionClosedRequireSaslError
from kazoo.security import make_acl

import servers
import zkcli

REPO = Path(__file__).resolve().parents[2]
KINDS = ["zookeeper", "rookery"]
CLIENT_SUBJECT = "CN=client,O=Rookery"  # RFC 2253, as ZooKeeper's X509AuthenticationProvider
SERVER_JAAS = """Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"
       user_bob="bobsecret";
};
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(REPO / "scripts" / "make-certs.sh"), str(d)], check=True,
                   capture_output=True, timeout=60)
    other = d / "other"
    subprocess.run([str(REPO / "scripts" / "make-certs.sh"), str(other)], check=True,
                   capture_output=True, timeout=60)
    return d


def tls_cfg(certs: Path, port: int, client_auth: str = "need") -> dict:
    return {
        "secureClientPort": port,
        "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
        "ssl.keyStore.location": certs / "server.pem",
        "ssl.keyStore.type": "PEM",
        "ssl.trustStore.location": certs / "ca.pem",
        "ssl.trustStore.type": "PEM",
        "ssl.clientAuth": client_auth,
        "authProvider.x509": "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
    }


def sasl_cfg(tmp: Path) -> dict:
    jaas = tmp / "server-jaas.conf"
    jaas.write_text(SERVER_JAAS)
    return {
        "java.security.auth.login.config": jaas,
        "authProvider.1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    }


def tls_client(port: int, certs: Path, *, cert: str | None = "client",
               ca: Path | None = None) -> KazooClient:
    kw = {}
    if cert:
        kw = {"certfile": str(certs / f"{cert}-cert.pem"), "keyfile": str(certs / f"{cert}-key.pem")}
    return KazooClient(hosts=f"127.0.0.1:{port}", use_ssl=True, verify_certs=True,
                       ca=str(ca or certs / "ca.pem"), timeout=5,
                       connection_retry={"max_tries": 0}, **kw)


def connects(client: KazooClient, timeout: float = 6.0) -> bool:
    try:
        client.start(timeout=timeout)
        ok = client.connected
    except Exception:
        ok = False
    finally:
        client.stop()
        client.close()
    return ok


@pytest.mark.parametrize("kind", KINDS)
def test_kazoo_over_tls_with_an_x509_acl(kind, server_factory, certs):
    port = servers.free_port()
    srv = server_factory(kind, tls_cfg(certs, port))
    c = tls_client(port, certs)
    c.start(timeout=15)
    try:
        c.create("/tls", b"secret", acl=[make_acl("x509", CLIENT_SUBJECT, all=True)])
        assert c.get("/tls")[0] == b"secret"
        acl = c.get_acls("/tls")[0]
        assert [(a.id.scheme, a.id.id) for a in acl] == [("x509", CLIENT_SUBJECT)]
    finally:
        c.stop()
        c.close()
    plain = KazooClient(hosts=srv.host_port, timeout=5)
    plain.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            plain.get("/tls")
    finally:
        plain.stop()
        plain.close()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_tls_clients_are_refused_and_the_server_carries_on(kind, server_factory, certs):
    port = servers.free_port()
    srv = server_factory(kind, tls_cfg(certs, port))
    assert not connects(tls_client(port, certs, cert=None)), "no client certificate"
    other = certs / "other"
    assert not connects(tls_client(port, other, cert="client", ca=certs / "ca.pem")), \
        "a client certificate from an untrusted CA"
    # A plain ZooKeeper client on the TLS port, and a TLS client on the plain port.
    assert not connects(KazooClient(hosts=f"127.0.0.1:{port}", timeout=3,
                                    connection_retry={"max_tries": 0}), timeout=4)
    assert not connects(tls_client(srv.port, certs), timeout=4)
    # A client that trusts another CA refuses the server.
    assert not connects(tls_client(port, certs, ca=other / "ca.pem"))
    # A handshake that stops half way is closed, not kept forever (ZooKeeper's Netty handler and
    # Rookery both bound the handshake); the server still answers.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\x05")
        s.settimeout(30)
        try:
            assert s.recv(1) in (b"", b"\x15")  # closed, or a TLS alert
        except (ConnectionResetError, socket.timeout):
            pass
    assert connects(tls_client(port, certs)), "a good client after the bad ones"
    assert srv.alive()


@pytest.mark.parametrize("kind", KINDS)
def test_zkcli_over_tls(kind, server_factory, certs):
    port = servers.free_port()
    server_factory(kind, tls_cfg(certs, port))
    # Debian's zkEnv.sh fixes the class path to zookeeper.jar, whose manifest lacks the Netty
    # codec the secure client socket needs; a later -cp wins.
    netty = [p for p in servers.ZK_CLASSPATH.split(":") if "netty" in p]
    flags = " ".join([
        "-cp", ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar"] + netty),
        "-Dzookeeper.client.secure=true",
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        f"-Dzookeeper.ssl.keyStore.location={certs / 'client.pem'}",
        "-Dzookeeper.ssl.keyStore.type=PEM",
        f"-Dzookeeper.ssl.trustStore.location={certs / 'ca.pem'}",
        "-Dzookeeper.ssl.trustStore.type=PEM",
    ])
    res = zkcli.run_script(f"127.0.0.1:{port}",
                           ["create /over-tls hello", "get /over-tls", "whoami"],
                           jvm_flags=flags)
    text = "\n".join(res.lines)
    assert "Created /over-tls" in text, res.raw
    assert "hello" in text, res.raw
    assert f"x509: {CLIENT_SUBJECT}" in text, res.raw


def sasl_client(srv, user: str, password: str) -> KazooClient:
    return KazooClient(hosts=srv.host_port, timeout=5, connection_retry={"max_tries": 0},
                       sasl_options={"mechanism": "DIGEST-MD5", "username": user,
                                     "password": password})


@pytest.mark.parametrize("kind", KINDS)
def test_kazoo_sasl_digest_md5(kind, server_factory, tmp_path):
    srv = server_factory(kind, sasl_cfg(tmp_path))
    c = sasl_client(srv, "bob", "bobsecret")
    c.start(timeout=15)
    try:
        c.create("/sasl", b"bob's", acl=[make_acl("sasl", "bob", all=True)])
        assert c.get("/sasl")[0] == b"bob's"
    finally:
        c.stop()
        c.close()
    plain = KazooClient(hosts=srv.host_port, timeout=5)
    plain.start(timeout=15)
    try:
        with pytest.raises(NoAuthError):
            plain.get("/sasl")
    finally:
        plain.stop()
        plain.close()
    # A wrong password: the server answers AUTHFAILED and closes; kazoo reports the
    # connection, then fails every request with AuthFailedError.
    bad = sasl_client(srv, "bob", "wrong")
    try:
        bad.start(timeout=10)
        with pytest.raises(AuthFailedError):
            bad.get("/sasl")
    finally:
        bad.stop()
        bad.close()
    assert srv.alive()


@pytest.mark.parametrize("kind", KINDS)
def test_zkcli_sasl_with_a_jaas_file(kind, server_factory, tmp_path):
    srv = server_factory(kind, sasl_cfg(tmp_path))
    client_jaas = tmp_path / "client-jaas.conf"
    client_jaas.write_text("""Client {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="bob"
       password="bobsecret";
};
""")
    res = zkcli.run_script(srv.host_port,
                           ["create /by-zkcli x sasl:bob:cdrwa", "getAcl /by-zkcli", "whoami"],
                           jvm_flags=f"-Djava.security.auth.login.config={client_jaas}")
    text = "\n".join(res.lines)
    assert "Created /by-zkcli" in text, res.raw
    assert "'sasl,'bob" in text, res.raw
    assert "sasl: bob" in text, res.raw
    c = sasl_client(srv, "bob", "bobsecret")
    c.start(timeout=15)
    try:
        assert c.get("/by-zkcli")[0] == b"x"
    finally:
        c.stop()
        c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_enforced_auth_refuses_anonymous_sessions(kind, server_factory, tmp_path):
    cfg = sasl_cfg(tmp_path)
    cfg.update({"enforce.auth.enabled": "true", "enforce.auth.schemes": "sasl"})
    srv = server_factory(kind, cfg)
    anon = KazooClient(hosts=srv.host_port, timeout=5, connection_retry={"max_tries": 0},
                       command_retry={"max_tries": 0})
    try:
        anon.start(timeout=10)
        # The session opens; its first request is answered SESSIONCLOSEDREQUIRESASLAUTH and
        # the connection closed.
        with pytest.raises(SessionClosedRequireSaslError):
            anon.get("/")
    finally:
        anon.stop()
        anon.close()
    c = sasl_client(srv, "bob", "bobsecret")
    c.start(timeout=15)
    try:
        assert c.exists("/") is not None
    finally:
        c.stop()
        c.close()
    assert srv.alive()
