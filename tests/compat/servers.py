"""Start/stop helpers for the compatibility harness.

Usable as a plain library (``from servers import start_zookeeper``) and from
the pytest fixtures in ``conftest.py``.

Reference ZooKeeper command line
================================

Verified with the Debian package ``zookeeper`` 3.8.0-11+deb12u2 and
OpenJDK 17.0.15.  ``/usr/share/java/zookeeper.jar`` carries a manifest
``Class-Path`` that pulls in zookeeper-jute, netty, slf4j-api, jackson, jetty,
commons-*, snappy, metrics-core (``jline.jar`` is listed but absent; only the
CLI would use it).  There is no slf4j binding in that list, so we add
``slf4j-simple.jar`` and point it at a file.  Exact command (run in the
foreground, one JVM per server)::

    /usr/bin/java \
        -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dzookeeper.extendedTypesEnabled=true \
        -Dznode.container.checkIntervalMs=1000 \
        -Dorg.slf4j.simpleLogger.logFile=$TMP/zookeeper.log \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        [-Dzookeeper.DigestAuthenticationProvider.superDigest=super:<base64(sha1("super:<password>"))>] \
        -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
        org.apache.zookeeper.server.ZooKeeperServerMain $TMP/zoo.cfg

with ``$TMP/zoo.cfg``::

    tickTime=2000
    dataDir=$TMP/data
    clientPort=<free port>
    clientPortAddress=127.0.0.1
    4lw.commands.whitelist=*
    admin.enableServer=false

Notes:
  * ``zookeeper.extendedTypesEnabled``, ``znode.container.checkIntervalMs``
    and the super digest MUST be JVM system properties.  Unknown zoo.cfg keys
    are turned into system properties by prefixing ``zookeeper.``, so putting
    ``zookeeper.extendedTypesEnabled`` into zoo.cfg would set the useless
    ``zookeeper.zookeeper.extendedTypesEnabled``.  (``4lw.commands.whitelist``
    works in zoo.cfg precisely because of that prefixing.)
  * ``ZooKeeperServerMain`` (standalone) is used, not ``QuorumPeerMain``
    (which zkServer.sh uses and which daemonizes through the script).
  * Startup to ``imok`` takes ~0.5-1 s on this machine.

Rookery is started as ``$ROOKERY_BIN server --config $TMP/zoo.cfg`` where the
zoo.cfg additionally contains ``zookeeper.extendedTypesEnabled=true``,
``znode.container.checkIntervalMs=1000`` and optionally
``zookeeper.DigestAuthenticationProvider.superDigest=...`` as plain keys.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]

JAVA = shutil.which("java") or "/usr/bin/java"
# The Netty jars the Debian manifest's Class-Path lacks: the secure client port
# (NettyServerCnxnFactory) needs them.
ZK_CLASSPATH = ":".join([
    "/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar",
    "/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
])
ZK_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"

READY_TIMEOUT = 30.0  # seconds, bound for "server is ready"
HOST = "127.0.0.1"
# super user password used by the pytest fixtures (super:superpw)
SUPER_PASSWORD = "superpw"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Keys that Apache ZooKeeper only honours as JVM system properties.
# (``java.security.auth.login.config``, the JAAS file, is a JVM property only; Rookery reads it
# from zoo.cfg.)
_ZK_SYSPROP_PREFIXES = ("zookeeper.", "znode.", "jute.", "java.")


class ServerStartError(RuntimeError):
    pass


class RookeryBinaryMissing(FileNotFoundError):
    pass


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def digest(user: str, password: str) -> str:
    """``user:base64(sha1("user:password"))`` as used by digest ACLs/superDigest."""
    h = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(h).decode()}"


def super_digest(password: str) -> str:
    """Value for zookeeper.DigestAuthenticationProvider.superDigest."""
    return digest("super", password)


# --------------------------------------------------------------------------
# Raw-socket probes (no kazoo dependency)
# --------------------------------------------------------------------------


def four_letter(host: str, port: int, cmd: str, timeout: float = 2.0) -> str:
    """Send a four-letter word and return the full reply ('' on failure)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(cmd.encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise ConnectionError("connection closed by server")
        buf += b
    return buf


def _recv_frame(s: socket.socket) -> bytes:
    (n,) = struct.unpack(">i", _recv_exact(s, 4))
    return _recv_exact(s, n)


def probe_session(host: str, port: int, timeout: float = 3.0) -> int:
    """Open a real session (ConnectRequest), ping once, close it.

    Returns the session id.  Raises on any failure.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        # ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId,
        # passwd (buffer), readOnly
        body = struct.pack(">iqiqi16s?", 0, 0, 10000, 0, 16, b"\0" * 16, False)
        s.sendall(struct.pack(">i", len(body)) + body)
        resp = _recv_frame(s)
        if len(resp) < 16:
            raise ConnectionError(f"short ConnectResponse ({len(resp)} bytes)")
        _proto, timeout_ms, session_id = struct.unpack(">iiq", resp[:16])
        if session_id == 0 or timeout_ms <= 0:
            raise ConnectionError("session refused (sessionId=0 or timeout<=0)")
        # ping: RequestHeader(xid=-2, type=11)
        s.sendall(struct.pack(">iii", 8, -2, 11))
        rh = _recv_frame(s)
        xid, _zxid, err = struct.unpack(">iqi", rh[:16])
        if xid == -2 and err == -124:
            # SESSIONCLOSEDREQUIRESASLAUTH: the server serves, but only authenticated clients
            # (enforce.auth.enabled); it has closed the connection.
            return session_id
        if xid != -2 or err != 0:
            raise ConnectionError(f"bad ping reply xid={xid} err={err}")
        # closeSession: RequestHeader(xid=1, type=-11)
        s.sendall(struct.pack(">iii", 8, 1, -11))
        rh = _recv_frame(s)
        xid, _zxid, err = struct.unpack(">iqi", rh[:16])
        if xid != 1 or err != 0:
            raise ConnectionError(f"bad closeSession reply xid={xid} err={err}")
        return session_id


# --------------------------------------------------------------------------
# Server handle
# --------------------------------------------------------------------------

_LIVE: "set[Server]" = set()
_LIVE_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop every server started by this process that is still running."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for srv in servers:
        try:
            srv.stop()
        except Exception:
            pass


atexit.register(stop_all)


class Server:
    """A running server child process with its own temp dir."""

    def __init__(self, kind: str, proc: subprocess.Popen, port: int,
                 tmpdir: Path, log_path: Path, cfg_path: Path, argv: List[str]):
        self.kind = kind
        self.proc = proc
        self.host = HOST
        self.port = port
        self.tmpdir = tmpdir
        self.log_path = log_path
        self.cfg_path = cfg_path
        self.argv = argv
        self._stopped = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def four_letter(self, cmd: str, timeout: float = 2.0) -> str:
        return four_letter(self.host, self.port, cmd, timeout)

    def log_tail(self, n: int = 60) -> str:
        """Last lines of the server log (plus the raw stdout/stderr capture)."""
        out = []
        paths = [self.log_path, self.tmpdir / f"{self.kind}.stdout.log"]
        for p in dict.fromkeys(paths):
            try:
                lines = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                out.append(f"== {p.name} ==")
                out.extend(_ANSI.sub("", l) for l in lines[-n:])
        return "\n".join(out) if out else "<no log>"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.proc.poll() is None:
                try:
                    self.proc.kill()  # only ever our own child, by pid
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        finally:
            for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            if os.environ.get("COMPAT_KEEP_TMP"):
                print(f"[compat] keeping {self.tmpdir}")
            else:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.kind} {self.host_port} pid={self.proc.pid}>"


def _wait_ready(srv: Server, timeout: float = READY_TIMEOUT) -> None:
    """Bounded wait until ruok->imok and a real session can be opened."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if not srv.alive():
            raise ServerStartError(
                f"{srv.kind} exited early with code {srv.proc.returncode}\n"
                f"argv: {' '.join(srv.argv)}\n--- log tail ({srv.log_path}) ---\n"
                f"{srv.log_tail()}")
        reply = srv.four_letter("ruok", timeout=1.0)
        if reply.strip() == "imok":
            try:
                probe_session(srv.host, srv.port)
                return
            except Exception as e:  # noqa: BLE001
                last = f"session probe failed: {e!r}"
        else:
            last = f"ruok answered {reply!r}"
        time.sleep(0.1)
    raise ServerStartError(
        f"{srv.kind} on {srv.host_port} not ready after {timeout}s ({last})\n"
        f"argv: {' '.join(srv.argv)}\n--- log tail ({srv.log_path}) ---\n{srv.log_tail()}")


def _write_cfg(path: Path, cfg: Dict[str, object]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))


def _port_in_use(srv: Server) -> bool:
    t = srv.log_tail(200)
    return "Address already in use" in t or "AddrInUse" in t or "address in use" in t.lower()


def _spawn(kind: str, build, retries: int = 3) -> Server:
    """build(tmpdir, port) -> (argv, cfg_path, log_path, env).  Retries on port clash."""
    last_err: Optional[Exception] = None
    for _ in range(retries):
        tmpdir = Path(tempfile.mkdtemp(prefix=f"compat-{kind}-"))
        port = free_port()
        argv, cfg_path, log_path, env = build(tmpdir, port)
        logf = open(tmpdir / f"{kind}.stdout.log", "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, cwd=tmpdir, env=env)
        finally:
            logf.close()
        srv = Server(kind, proc, port, tmpdir, log_path, cfg_path, argv)
        try:
            _wait_ready(srv)
            return srv
        except ServerStartError as e:
            clash = _port_in_use(srv)
            srv.stop()
            last_err = e
            if not clash:
                raise
    assert last_err is not None
    raise last_err


# --------------------------------------------------------------------------
# Apache ZooKeeper
# --------------------------------------------------------------------------


def zookeeper_argv(cfg_path: Path, log_path: Path, sysprops: Dict[str, object]) -> List[str]:
    argv = [JAVA, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    for k, v in sysprops.items():
        argv.append(f"-D{k}={v}")
    argv += [f"-Dorg.slf4j.simpleLogger.logFile={log_path}",
             "-Dorg.slf4j.simpleLogger.showDateTime=true",
             "-cp", ZK_CLASSPATH, ZK_MAIN, str(cfg_path)]
    return argv


def start_zookeeper(extra_cfg: Optional[Dict[str, object]] = None, *,
                    super_digest: Optional[str] = None) -> Server:
    """Start Apache ZooKeeper 3.8 standalone in the foreground.

    ``extra_cfg`` entries whose key starts with ``zookeeper.``/``znode.``/
    ``jute.`` become ``-D`` system properties, everything else goes to zoo.cfg.
    ``super_digest`` is ``"super:<base64 sha1>"`` (see :func:`super_digest`).
    """
    extra_cfg = dict(extra_cfg or {})

    def build(tmpdir: Path, port: int):
        data = tmpdir / "data"
        data.mkdir()
        cfg: Dict[str, object] = {
            "tickTime": 2000,
            "dataDir": data,
            "clientPort": port,
            "clientPortAddress": HOST,
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        sysprops: Dict[str, object] = {
            "zookeeper.extendedTypesEnabled": "true",
            "znode.container.checkIntervalMs": 1000,
        }
        if super_digest:
            sysprops["zookeeper.DigestAuthenticationProvider.superDigest"] = super_digest
        for k, v in extra_cfg.items():
            if k.startswith(_ZK_SYSPROP_PREFIXES):
                sysprops[k] = v
            else:
                cfg[k] = v
        cfg_path = tmpdir / "zoo.cfg"
        _write_cfg(cfg_path, cfg)
        log_path = tmpdir / "zookeeper.log"
        env = dict(os.environ)
        env.pop("JAVA_TOOL_OPTIONS", None)
        return zookeeper_argv(cfg_path, log_path, sysprops), cfg_path, log_path, env

    return _spawn("zookeeper", build)


# --------------------------------------------------------------------------
# Rookery
# --------------------------------------------------------------------------


def rookery_bin() -> Path:
    """$ROOKERY_BIN, default target/debug/rookery relative to the repo root.

    A relative $ROOKERY_BIN is taken relative to the current directory if it
    exists there, otherwise relative to the repo root.
    """
    raw = os.environ.get("ROOKERY_BIN") or "target/debug/rookery"
    p = Path(raw)
    if p.is_absolute():
        return p
    if "ROOKERY_BIN" in os.environ and (Path.cwd() / p).exists():
        return (Path.cwd() / p).resolve()
    return REPO_ROOT / p


def _rookery_cfg(data: Path, host: str, port: int, super_digest: Optional[str],
                 tick_ms: int = 2000) -> Dict[str, object]:
    """The zoo.cfg every Rookery the suite starts shares."""
    cfg: Dict[str, object] = {
        "tickTime": tick_ms,
        "dataDir": data,
        "clientPort": port,
        "clientPortAddress": host,
        "4lw.commands.whitelist": "*",
        "zookeeper.extendedTypesEnabled": "true",
        "znode.container.checkIntervalMs": 1000,
        # 1 MiB of preallocated log instead of 64 MiB: tests start many servers.
        "preAllocSize": 1024,
    }
    if super_digest:
        cfg["zookeeper.DigestAuthenticationProvider.superDigest"] = super_digest
    return cfg


def start_rookery(extra_cfg: Optional[Dict[str, object]] = None, *,
                  super_digest: Optional[str] = None) -> Server:
    """Start ``$ROOKERY_BIN server --config <cfg>`` on a free port."""
    binary = rookery_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RookeryBinaryMissing(
            f"Rookery binary not found or not executable: {binary}\n"
            f"Build it first (`cargo build -p rookery`) or set ROOKERY_BIN=/path/to/rookery.")
    extra_cfg = dict(extra_cfg or {})

    def build(tmpdir: Path, port: int):
        data = tmpdir / "data"
        data.mkdir()
        cfg = _rookery_cfg(data, HOST, port, super_digest)
        cfg.update(extra_cfg)
        cfg_path = tmpdir / "zoo.cfg"
        _write_cfg(cfg_path, cfg)
        log_path = tmpdir / "rookery.stdout.log"
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        argv = [str(binary), "server", "--config", str(cfg_path)]
        return argv, cfg_path, log_path, env

    return _spawn("rookery", build)


def _free_port_on(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def start_rookery_ensemble(size: int = 3, *, super_digest: Optional[str] = None,
                           tick_ms: int = 2000) -> List[Server]:
    """Start a ``size``-member Rookery ensemble, member i on 127.0.0.i with free ports, and
    wait until every member serves. The caller stops every returned Server."""
    binary = rookery_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RookeryBinaryMissing(f"Rookery binary not found or not executable: {binary}")
    members = []
    for i in range(1, size + 1):
        ip = f"127.0.0.{i}"
        members.append((i, ip, _free_port_on(ip), _free_port_on(ip), _free_port_on(ip)))
    server_lines = {f"server.{i}": f"{ip}:{q}:{e}" for i, ip, _, q, e in members}
    started: List[Server] = []
    try:
        for i, ip, port, _, _ in members:
            tmpdir = Path(tempfile.mkdtemp(prefix=f"compat-rookery-ens{i}-"))
            data = tmpdir / "data"
            data.mkdir()
            (data / "myid").write_text(f"{i}\n")
            cfg = _rookery_cfg(data, ip, port, super_digest, tick_ms)
            cfg.update({"initLimit": 10, "syncLimit": 5, **server_lines})
            cfg_path = tmpdir / "zoo.cfg"
            _write_cfg(cfg_path, cfg)
            log_path = tmpdir / "rookery.stdout.log"
            env = dict(os.environ, RUST_BACKTRACE="1", NO_COLOR="1")
            argv = [str(binary), "server", "--config", str(cfg_path)]
            with open(log_path, "wb") as logf:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, cwd=tmpdir, env=env)
            srv = Server("rookery", proc, port, tmpdir, log_path, cfg_path, argv)
            srv.host = ip
            started.append(srv)
        for srv in started:
            _wait_ready(srv)
        return started
    except BaseException:
        for srv in started:
            srv.stop()
        raise


def start(kind: str, extra_cfg: Optional[Dict[str, object]] = None, **kw) -> Server:
    if kind == "zookeeper":
        return start_zookeeper(extra_cfg, **kw)
    if kind == "rookery":
        return start_rookery(extra_cfg, **kw)
    raise ValueError(kind)


if __name__ == "__main__":  # manual use: python3 servers.py zookeeper|rookery
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "zookeeper"
    with start(which) as s:
        print(f"{s!r} ready; Ctrl-C to stop; log {s.log_path}")
        try:
            while s.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
