//! TLS on the secure client port, against the real `rookery` binary: x509 identities and the
//! ACLs they open, the refusals an operator must be able to read in the log (expired,
//! self-signed and foreign certificates, a missing one, the wrong protocol on either port, a
//! server certificate for another name), certificates reloaded from disk, PKCS12 stores made
//! by `scripts/make-certs.sh`, a secure-only configuration, and no secret in a trace log
//! (SEC-10).
//!
//! Certificates come from `rookery_testkit::pki` (rcgen), except the PKCS12 ones, which
//! `scripts/make-certs.sh` makes with openssl. Each test starts its own servers on free ports
//! with their own directories, so the tests run in parallel; every wait has a deadline.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client as RawClient, Reply};
use md5::{Digest as _, Md5};
use rcgen::DnType;
use rookery_client::{self as zk, perms, CreateOptions, TlsOptions};
use rookery_proto::frame::write_frame;
use rookery_proto::{AuthPacket, ConnectRequest, Jute, Request, Response, SaslToken};
use rookery_testkit::pki::{self_signed, Ca, Leaf, Usage};
use rookery_testkit::{free_port, rookery_bin, start_program, start_rookery, Proc, WAIT};
use rustls::pki_types::ServerName;

/// How long a connection that must fail may try (the client retries until then).
const REFUSE: Duration = Duration::from_secs(2);
/// How long a connection that must succeed may take.
const CONNECT: Duration = Duration::from_secs(10);
/// How long a log line may take to appear, and a reload to take effect (files are checked every
/// `tls::RELOAD_CHECK_MS`).
const SETTLE: Duration = Duration::from_secs(10);

const X509_PROVIDER: &str = "org.apache.zookeeper.server.auth.X509AuthenticationProvider";

// === certificates and servers ===

/// A CA with a server certificate (for localhost and 127.0.0.1) and a client certificate.
struct Pki {
    ca: Ca,
    server: Leaf,
    client: Leaf,
}

fn pki(name: &str) -> Pki {
    let ca = Ca::new(&format!("{name} CA"));
    let server = ca.leaf("rookery-server", &["localhost", "127.0.0.1"], Usage::Server);
    let client = ca.leaf(&format!("{name}-client"), &[], Usage::Client);
    Pki { ca, server, client }
}

/// A Rookery serving TLS on `secure` (and plain clients on `proc.addr`).
struct TlsServer {
    proc: Proc,
    secure: SocketAddr,
    key_store: PathBuf,
    trust_store: PathBuf,
    _certs: tempfile::TempDir,
}

/// Starts Rookery with `server` as its PEM key store and `trust_pem` as its trust store, plus
/// `extra` zoo.cfg keys.
fn start_tls(server: &Leaf, trust_pem: &str, extra: &[(&str, &str)]) -> TlsServer {
    let certs = tempfile::tempdir().unwrap();
    let key_store = server.write_key_store(&certs.path().join("server.pem"));
    let trust_store = certs.path().join("trust.pem");
    std::fs::write(&trust_store, trust_pem).unwrap();
    let port = free_port();
    let (port_s, ks, ts) = (
        port.to_string(),
        key_store.display().to_string(),
        trust_store.display().to_string(),
    );
    let mut cfg = vec![
        ("secureClientPort", port_s.as_str()),
        ("ssl.keyStore.location", ks.as_str()),
        ("ssl.trustStore.location", ts.as_str()),
    ];
    cfg.extend_from_slice(extra);
    // The secure port is bound before the plain port serves its first session, so it is
    // listening once start_rookery returns.
    let proc = start_rookery(&cfg);
    TlsServer {
        proc,
        secure: SocketAddr::from(([127, 0, 0, 1], port)),
        key_store,
        trust_store,
        _certs: certs,
    }
}

// === clients ===

fn trusting(ca_pem: &str) -> TlsOptions {
    TlsOptions::new().with_ca_pem(ca_pem.as_bytes()).unwrap()
}

fn presenting(tls: TlsOptions, leaf: &Leaf) -> TlsOptions {
    tls.with_client_cert_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap()
}

/// Bounds any client call.
async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("a client call took longer than WAIT")
}

/// A session over TLS, or the client's error once `within` has passed.
async fn connect_tls(
    addr: SocketAddr,
    tls: TlsOptions,
    within: Duration,
) -> zk::Result<zk::Client> {
    let connect = zk::Client::builder(&addr.to_string())
        .tls(tls)
        .connect_timeout(within)
        .connect();
    tokio::time::timeout(within + Duration::from_secs(5), connect)
        .await
        .unwrap_or_else(|_| panic!("connecting to {addr} hung past its {within:?} timeout"))
}

async fn must_connect(addr: SocketAddr, tls: TlsOptions, proc: &Proc) -> zk::Client {
    match connect_tls(addr, tls, CONNECT).await {
        Ok(c) => c,
        Err(e) => panic!("no TLS session on {addr}: {e}\nserver log:\n{}", proc.log()),
    }
}

async fn must_refuse(addr: SocketAddr, tls: TlsOptions, what: &str) {
    if let Ok(c) = connect_tls(addr, tls, REFUSE).await {
        let ids = bounded(c.who_am_i()).await;
        panic!("{what}: the server gave a session (identities {ids:?})");
    }
}

async fn connect_plain(addr: SocketAddr) -> zk::Client {
    bounded(
        zk::Client::builder(&addr.to_string())
            .connect_timeout(CONNECT)
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("no plain session on {addr}: {e}"))
}

fn has_id(ids: &[zk::ClientInfo], scheme: &str, user: &str) -> bool {
    ids.iter()
        .any(|i| i.auth_scheme == scheme && i.user == user)
}

// === the server log ===

/// The whole log (`Proc::log` keeps only its end).
fn log_text(p: &Proc) -> String {
    std::fs::read_to_string(p.dir.join("server.log")).unwrap_or_default()
}

fn log_len(p: &Proc) -> usize {
    log_text(p).len()
}

/// Waits (bounded) for a line written after byte `from` that contains every one of `words`
/// (ignoring case), and returns it.
async fn wait_log_line(p: &Proc, from: usize, words: &[&str]) -> String {
    let words: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let log = log_text(p);
        let new = log.get(from..).unwrap_or("");
        if let Some(line) = new.lines().find(|l| {
            let l = l.to_lowercase();
            words.iter().all(|w| l.contains(w))
        }) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {words:?} within {SETTLE:?}; log since then:\n{new}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_no_panic(p: &Proc) {
    let log = log_text(p);
    assert!(
        !log.contains("panicked") && !log.contains("RUST_BACKTRACE"),
        "the server panicked:\n{log}"
    );
}

/// The server is still up and serving both ports: a good TLS client and a plain one each get a
/// session and an answer.
async fn assert_still_serving(ts: &mut TlsServer, good: TlsOptions) {
    assert!(
        ts.proc.is_running(),
        "the server exited:\n{}",
        ts.proc.log()
    );
    assert_no_panic(&ts.proc);
    let c = must_connect(ts.secure, good, &ts.proc).await;
    bounded(c.exists("/")).await.unwrap();
    bounded(c.close()).await.unwrap();
    let p = connect_plain(ts.proc.addr).await;
    bounded(p.exists("/")).await.unwrap();
    bounded(p.close()).await.unwrap();
}

/// A refused TLS client leaves one `connection refused` line naming why (`reason`, in any
/// case), no panic, and a server that still serves.
async fn refusal_is_logged_and_harmless(
    ts: &mut TlsServer,
    from: usize,
    reason: &str,
    good: TlsOptions,
) -> String {
    let line = wait_log_line(&ts.proc, from, &["connection refused", reason]).await;
    assert!(line.contains("INFO") || line.contains("WARN"), "{line}");
    eprintln!("refusal logged: {line}");
    assert_still_serving(ts, good).await;
    line
}

// === raw sockets ===

/// Reads until the peer closes, at most `max`: the bytes read and whether it closed.
fn read_until_closed(s: &mut StdTcpStream, max: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + max;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too.
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// A ZooKeeper ConnectRequest frame, as a plain client sends first.
fn connect_request_frame() -> Vec<u8> {
    let req = ConnectRequest {
        timeout_ms: 10_000,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    };
    let mut out = Vec::new();
    write_frame(&mut out, |o| req.encode(o));
    out
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The first flight of a TLS client: a ClientHello record.
fn client_hello() -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16, "a TLS handshake record");
    out
}

/// A rustls client trusting `ca_pem` and presenting `leaf`, for errors the rookery client
/// only reports as a timeout.
fn rustls_client(ca_pem: &str, leaf: &Leaf) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(rookery_testkit::pki::client_config(ca_pem, leaf)))
}

// === processes started by hand ===

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, max: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + max;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `scripts/make-certs.sh` into a fresh directory (at most a minute).
fn make_certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
    let err_path = dir.path().join("make-certs.err");
    let child = Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("bash runs scripts/make-certs.sh");
    let mut child = Reaped(child);
    let status =
        wait_exit(&mut child.0, Duration::from_secs(60)).expect("make-certs.sh took over a minute");
    assert!(
        status.success(),
        "make-certs.sh failed ({status}; is openssl installed?):\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    for f in [
        "ca.pem",
        "server.p12",
        "server.p12.password",
        "client-cert.pem",
    ] {
        assert!(dir.path().join(f).exists(), "make-certs.sh made no {f}");
    }
    dir
}

/// Writes a zoo.cfg into `dir` (data in `dir/data`) with `lines`.
fn write_cfg(dir: &Path, lines: &[String]) -> PathBuf {
    let mut cfg = format!(
        "tickTime=2000\ndataDir={}\nadmin.enableServer=false\nmaxClientCnxns=0\n",
        dir.join("data").display()
    );
    for l in lines {
        cfg.push_str(l);
        cfg.push('\n');
    }
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn server_args(cfg: &Path) -> Vec<String> {
    vec![
        "server".into(),
        "--config".into(),
        cfg.display().to_string(),
    ]
}

/// The TCP ports `pid` listens on (its socket inodes matched against /proc/net/tcp{,6}).
fn listening_ports(pid: u32) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.display().to_string();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

// === 1. x509 identities ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_subject_is_an_acl_identity_and_the_configured_subject_is_super() {
    const APP: &str = "CN=app-1,O=Rookery";
    const ADMIN: &str = "CN=zk-admin,OU=ops,O=Rookery";
    let p = pki("x509");
    // The DN as DER lists it (most general first); RFC 2253 writes it the other way round.
    let app = p.ca.leaf_with_subject(
        &[
            (DnType::OrganizationName, "Rookery"),
            (DnType::CommonName, "app-1"),
        ],
        &[],
        Usage::Client,
    );
    let admin = p.ca.leaf_with_subject(
        &[
            (DnType::OrganizationName, "Rookery"),
            (DnType::OrganizationalUnitName, "ops"),
            (DnType::CommonName, "zk-admin"),
        ],
        &[],
        Usage::Client,
    );
    let app2 = p.ca.leaf_with_subject(
        &[
            (DnType::OrganizationName, "Rookery"),
            (DnType::CommonName, "app-2"),
        ],
        &[],
        Usage::Client,
    );
    let ts = start_tls(
        &p.server,
        &p.ca.pem,
        &[
            ("authProvider.x509", X509_PROVIDER),
            ("X509AuthenticationProvider.superUser", ADMIN),
        ],
    );

    let c = must_connect(ts.secure, presenting(trusting(&p.ca.pem), &app), &ts.proc).await;
    let ids = bounded(c.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", APP), "{ids:?}");
    assert!(has_id(&ids, "ip", "127.0.0.1"), "{ids:?}");
    assert!(!ids.iter().any(|i| i.auth_scheme == "super"), "{ids:?}");

    let acl = vec![zk::Acl::new(perms::ALL, "x509", APP)];
    bounded(c.create(
        "/x509-only",
        b"for app-1",
        &CreateOptions::persistent().with_acl(acl.clone()),
    ))
    .await
    .unwrap();
    let (data, _) = bounded(c.get_data("/x509-only")).await.unwrap();
    assert_eq!(data, b"for app-1");
    bounded(c.set_data("/x509-only", b"by app-1", None))
        .await
        .unwrap();

    // A plain client has no certificate, so no x509 id: NOAUTH, for the ACL too (getACL needs
    // READ or ADMIN since CVE-2019-0201).
    let plain = connect_plain(ts.proc.addr).await;
    let ids = bounded(plain.who_am_i()).await.unwrap();
    assert!(!ids.iter().any(|i| i.auth_scheme == "x509"), "{ids:?}");
    let err = bounded(plain.get_data("/x509-only")).await.unwrap_err();
    assert!(matches!(err, zk::Error::NoAuth), "{err:?}");
    let err = bounded(plain.get_acl("/x509-only")).await.unwrap_err();
    assert!(matches!(err, zk::Error::NoAuth), "{err:?}");

    // Another certificate of the same CA is another identity.
    let other = must_connect(ts.secure, presenting(trusting(&p.ca.pem), &app2), &ts.proc).await;
    let ids = bounded(other.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", "CN=app-2,O=Rookery"), "{ids:?}");
    let err = bounded(other.get_data("/x509-only")).await.unwrap_err();
    assert!(matches!(err, zk::Error::NoAuth), "{err:?}");

    // X509AuthenticationProvider.superUser's subject is a super user: every ACL lets it in.
    let root = must_connect(ts.secure, presenting(trusting(&p.ca.pem), &admin), &ts.proc).await;
    let ids = bounded(root.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", ADMIN), "{ids:?}");
    assert!(ids.iter().any(|i| i.auth_scheme == "super"), "{ids:?}");
    let (data, _) = bounded(root.get_data("/x509-only")).await.unwrap();
    assert_eq!(data, b"by app-1");
    let (read_acl, _) = bounded(root.get_acl("/x509-only")).await.unwrap();
    assert_eq!(read_acl, acl);
    bounded(root.delete("/x509-only", None)).await.unwrap();

    for c in [c, plain, other, root] {
        bounded(c.close()).await.unwrap();
    }
    assert_no_panic(&ts.proc);
}

/// ZooKeeper's `X509AuthenticationProvider` gives the superUser's certificate the id
/// `super:<subject>` (`new Id("super", clientId)`, checked in the 3.8.0 jar), which whoAmI
/// reports; Rookery's ACL check needs only the scheme, so the subject can be kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_super_user_id_carries_the_subject_as_in_zookeeper() {
    const ADMIN: &str = "CN=zk-admin,O=Rookery";
    let p = pki("x509-super");
    let admin = p.ca.leaf_with_subject(
        &[
            (DnType::OrganizationName, "Rookery"),
            (DnType::CommonName, "zk-admin"),
        ],
        &[],
        Usage::Client,
    );
    let ts = start_tls(
        &p.server,
        &p.ca.pem,
        &[
            ("authProvider.x509", X509_PROVIDER),
            ("X509AuthenticationProvider.superUser", ADMIN),
        ],
    );
    let root = must_connect(ts.secure, presenting(trusting(&p.ca.pem), &admin), &ts.proc).await;
    let ids = bounded(root.who_am_i()).await.unwrap();
    bounded(root.close()).await.unwrap();
    // ZooKeeper 3.8: [ip:127.0.0.1, super:CN=zk-admin,O=Rookery, x509:CN=zk-admin,O=Rookery].
    assert!(has_id(&ids, "super", ADMIN), "{ids:?}");
    assert!(has_id(&ids, "x509", ADMIN), "{ids:?}");
}

// === 2. refusals ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificate_is_refused_and_logged() {
    let p = pki("expired");
    let mut ts = start_tls(&p.server, &p.ca.pem, &[]);
    let expired = p.ca.expired_leaf("old-client", &[], Usage::Client);
    let from = log_len(&ts.proc);
    must_refuse(
        ts.secure,
        presenting(trusting(&p.ca.pem), &expired),
        "expired client certificate",
    )
    .await;
    let good = presenting(trusting(&p.ca.pem), &p.client);
    refusal_is_logged_and_harmless(&mut ts, from, "expired", good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_client_certificate_is_refused_and_logged() {
    let p = pki("self-signed");
    let mut ts = start_tls(&p.server, &p.ca.pem, &[]);
    let lone = self_signed("lone-client", &[]);
    let from = log_len(&ts.proc);
    must_refuse(
        ts.secure,
        presenting(trusting(&p.ca.pem), &lone),
        "self-signed client certificate",
    )
    .await;
    let good = presenting(trusting(&p.ca.pem), &p.client);
    refusal_is_logged_and_harmless(&mut ts, from, "UnknownIssuer", good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca_is_refused_and_logged() {
    let p = pki("trusted");
    let stranger = pki("stranger");
    let mut ts = start_tls(&p.server, &p.ca.pem, &[]);
    let from = log_len(&ts.proc);
    // The client trusts the server; the server does not trust the client's CA.
    must_refuse(
        ts.secure,
        presenting(trusting(&p.ca.pem), &stranger.client),
        "client certificate from another CA",
    )
    .await;
    let good = presenting(trusting(&p.ca.pem), &p.client);
    refusal_is_logged_and_harmless(&mut ts, from, "UnknownIssuer", good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_is_refused_by_default_and_served_with_want() {
    let p = pki("no-cert");
    // No ssl.clientAuth (ZooKeeper's default, need), and need spelled out.
    let explicit: &[(&str, &str)] = &[("ssl.clientAuth", "need")];
    for extra in [&[][..], explicit] {
        let mut need = start_tls(&p.server, &p.ca.pem, extra);
        let from = log_len(&need.proc);
        must_refuse(
            need.secure,
            trusting(&p.ca.pem),
            &format!("no client certificate ({extra:?})"),
        )
        .await;
        let good = presenting(trusting(&p.ca.pem), &p.client);
        refusal_is_logged_and_harmless(&mut need, from, "no certificates", good).await;
    }

    let want = start_tls(
        &p.server,
        &p.ca.pem,
        &[
            ("ssl.clientAuth", "want"),
            ("authProvider.x509", X509_PROVIDER),
        ],
    );
    let anon = must_connect(want.secure, trusting(&p.ca.pem), &want.proc).await;
    let ids = bounded(anon.who_am_i()).await.unwrap();
    assert!(!ids.iter().any(|i| i.auth_scheme == "x509"), "{ids:?}");
    assert!(has_id(&ids, "ip", "127.0.0.1"), "{ids:?}");
    bounded(anon.create("/want", b"", &CreateOptions::persistent()))
        .await
        .unwrap();
    // With want, a client that does present a certificate still gets its identity.
    let named = must_connect(
        want.secure,
        presenting(trusting(&p.ca.pem), &p.client),
        &want.proc,
    )
    .await;
    let ids = bounded(named.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", "CN=no-cert-client"), "{ids:?}");
    // And an untrusted one is still refused: want is not "anything goes".
    let from = log_len(&want.proc);
    must_refuse(
        want.secure,
        presenting(trusting(&p.ca.pem), &self_signed("lone", &[])),
        "self-signed client certificate (clientAuth want)",
    )
    .await;
    wait_log_line(&want.proc, from, &["connection refused", "UnknownIssuer"]).await;
    bounded(anon.close()).await.unwrap();
    bounded(named.close()).await.unwrap();
    assert_no_panic(&want.proc);

    // With none, no certificate is asked for: none is needed, and one offered names nobody.
    let none = start_tls(
        &p.server,
        &p.ca.pem,
        &[
            ("ssl.clientAuth", "none"),
            ("authProvider.x509", X509_PROVIDER),
        ],
    );
    let anon = must_connect(none.secure, trusting(&p.ca.pem), &none.proc).await;
    bounded(anon.exists("/")).await.unwrap();
    let offered = must_connect(
        none.secure,
        presenting(trusting(&p.ca.pem), &p.client),
        &none.proc,
    )
    .await;
    let ids = bounded(offered.who_am_i()).await.unwrap();
    assert!(!ids.iter().any(|i| i.auth_scheme == "x509"), "{ids:?}");
    bounded(anon.close()).await.unwrap();
    bounded(offered.close()).await.unwrap();
    assert_no_panic(&none.proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_handshake_on_the_tls_port_is_refused_and_logged() {
    let p = pki("plain-on-tls");
    let mut ts = start_tls(&p.server, &p.ca.pem, &[]);
    let from = log_len(&ts.proc);
    let secure = ts.secure;
    let (got, closed) = tokio::task::spawn_blocking(move || {
        let mut s = StdTcpStream::connect_timeout(&secure, Duration::from_secs(2)).unwrap();
        s.write_all(&connect_request_frame()).unwrap();
        read_until_closed(&mut s, SETTLE)
    })
    .await
    .unwrap();
    assert!(closed, "the TLS port kept a plain connection open");
    // At most a TLS alert record, never a ConnectResponse.
    assert!(got.is_empty() || got[0] == 0x15, "answered {got:02x?}");
    // The rookery client without TLS gets no session either.
    let plain = tokio::time::timeout(
        REFUSE + Duration::from_secs(5),
        zk::Client::builder(&secure.to_string())
            .connect_timeout(REFUSE)
            .connect(),
    )
    .await
    .expect("a plain connect to the TLS port hung");
    assert!(
        plain.is_err(),
        "a plain client got a session on the TLS port"
    );
    let good = presenting(trusting(&p.ca.pem), &p.client);
    let line = refusal_is_logged_and_harmless(&mut ts, from, "TLS handshake failed", good).await;
    eprintln!("plain handshake on the TLS port: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_hello_on_the_plain_port_is_closed_without_hanging() {
    let p = pki("tls-on-plain");
    let mut ts = start_tls(&p.server, &p.ca.pem, &[]);
    let plain = ts.proc.addr;
    let from = log_len(&ts.proc);
    let started = Instant::now();
    let (got, closed) = tokio::task::spawn_blocking(move || {
        let mut s = StdTcpStream::connect_timeout(&plain, Duration::from_secs(2)).unwrap();
        s.write_all(&client_hello()).unwrap();
        read_until_closed(&mut s, SETTLE)
    })
    .await
    .unwrap();
    assert!(
        closed,
        "the plain port kept a TLS client waiting for {SETTLE:?}"
    );
    assert!(
        got.is_empty(),
        "the plain port answered a ClientHello: {got:02x?}"
    );
    // The record's first bytes read as a 369 MB frame length: refused at once, not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    // The same through a real TLS client: it fails promptly.
    let tls = tokio::time::timeout(SETTLE, async {
        let tcp = tokio::net::TcpStream::connect(plain).await.unwrap();
        rustls_client(&p.ca.pem, &p.client)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
    })
    .await
    .expect("a TLS handshake against the plain port hung");
    assert!(tls.is_err(), "a TLS handshake succeeded on the plain port");
    // An operator sees why such a client never gets a session (ZooKeeper 3.8 logs a WARN,
    // `Len error`, too).
    let line = wait_log_line(&ts.proc, from, &["TLS", "plain port"]).await;
    assert!(line.contains("INFO") || line.contains("WARN"), "{line}");
    let good = presenting(trusting(&p.ca.pem), &p.client);
    assert_still_serving(&mut ts, good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_server_certificate_for_another_name() {
    let p = pki("wrong-name");
    // Signed by the CA the client trusts, but for db.other.example only.
    let elsewhere = p.ca.leaf("db", &["db.other.example"], Usage::Server);
    let mut ts = start_tls(&elsewhere, &p.ca.pem, &[]);
    // The rookery client checks the host of its connect string, 127.0.0.1.
    must_refuse(
        ts.secure,
        presenting(trusting(&p.ca.pem), &p.client),
        "server certificate for another name",
    )
    .await;
    // It is the name and nothing else: rustls says so, ...
    let err = tokio::time::timeout(SETTLE, async {
        let tcp = tokio::net::TcpStream::connect(ts.secure).await.unwrap();
        rustls_client(&p.ca.pem, &p.client)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
    })
    .await
    .expect("the TLS handshake hung")
    .expect_err("the certificate is not valid for 127.0.0.1");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            inner,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
    // ... and the same certificate is accepted for the name it carries.
    let c = must_connect(
        ts.secure,
        presenting(trusting(&p.ca.pem), &p.client).with_server_name("db.other.example"),
        &ts.proc,
    )
    .await;
    bounded(c.exists("/")).await.unwrap();
    bounded(c.close()).await.unwrap();
    assert!(ts.proc.is_running());
    assert_no_panic(&ts.proc);
}

// === 3. reloading certificates ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_when_their_files_change_and_a_broken_file_is_ignored() {
    let one = pki("reload-one");
    let two = pki("reload-two");
    // The server checks clients of either CA; it presents CA one's certificate first.
    let both = format!("{}{}", one.ca.pem, two.ca.pem);
    let mut ts = start_tls(&one.server, &both, &[]);
    let via_one = || presenting(trusting(&one.ca.pem), &one.client);
    let via_two = || presenting(trusting(&two.ca.pem), &one.client);

    let first = must_connect(ts.secure, via_one(), &ts.proc).await;
    bounded(first.create("/reload", b"before", &CreateOptions::persistent()))
        .await
        .unwrap();
    must_refuse(ts.secure, via_two(), "CA two before the reload").await;

    // Renewal: the key store is overwritten in place with CA two's certificate.
    let from = log_len(&ts.proc);
    two.server.write_key_store(&ts.key_store);
    let deadline = Instant::now() + SETTLE;
    let second = loop {
        match connect_tls(ts.secure, via_two(), Duration::from_secs(1)).await {
            Ok(c) => break c,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the new certificate was not served within {SETTLE:?} ({e}); log:\n{}",
                ts.proc.log()
            ),
        }
    };
    wait_log_line(&ts.proc, from, &["TLS certificates reloaded"]).await;
    must_refuse(ts.secure, via_one(), "CA one after the reload").await;
    // Sessions opened before the reload carry on.
    let (data, _) = bounded(first.get_data("/reload")).await.unwrap();
    assert_eq!(data, b"before");

    // A broken renewal keeps the last good certificate, with a warning naming the file.
    let from = log_len(&ts.proc);
    std::fs::write(&ts.key_store, "-----BEGIN NONSENSE-----\nnot a key store\n").unwrap();
    let line = wait_log_line(
        &ts.proc,
        from,
        &["cannot be loaded", "keeping the previous"],
    )
    .await;
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("server.pem"),
        "the warning names no file: {line}"
    );
    let third = must_connect(ts.secure, via_two(), &ts.proc).await;
    bounded(third.exists("/reload")).await.unwrap();
    must_refuse(ts.secure, via_one(), "CA one after a broken renewal").await;

    // The trust store is reloaded too: with CA two's certificate only, CA one's clients are
    // refused, CA two's accepted. (A good key store first, so the two files build together.)
    two.server.write_key_store(&ts.key_store);
    std::fs::write(&ts.trust_store, &two.ca.pem).unwrap();
    let deadline = Instant::now() + SETTLE;
    while connect_tls(ts.secure, via_two(), Duration::from_secs(1))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "CA one's client certificate is still accepted {SETTLE:?} after the trust store \
             dropped CA one; log:\n{}",
            ts.proc.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client_two = presenting(trusting(&two.ca.pem), &two.client);
    let fourth = must_connect(ts.secure, client_two.clone(), &ts.proc).await;
    let ids = bounded(fourth.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", "CN=reload-two-client"), "{ids:?}");

    for c in [first, second, third, fourth] {
        bounded(c.close()).await.unwrap();
    }
    assert_still_serving(&mut ts, client_two).await;
}

// === 4. PKCS12 stores ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs12_key_store_from_make_certs_serves_tls() {
    let certs = make_certs();
    let d = certs.path();
    let password = std::fs::read_to_string(d.join("server.p12.password")).unwrap();
    let (p12, ca) = (
        d.join("server.p12").display().to_string(),
        d.join("ca.pem").display().to_string(),
    );
    let ca_pem = std::fs::read_to_string(d.join("ca.pem")).unwrap();
    let client_tls = || {
        TlsOptions::new()
            .with_ca_pem(ca_pem.as_bytes())
            .unwrap()
            .with_client_cert_pem(
                &std::fs::read(d.join("client-cert.pem")).unwrap(),
                &std::fs::read(d.join("client-key.pem")).unwrap(),
            )
            .unwrap()
    };
    let password_path = d.join("server.p12.password").display().to_string();
    // The password in zoo.cfg, then from a file (ssl.keyStore.passwordPath).
    for (key, value) in [
        ("ssl.keyStore.password", password.as_str()),
        ("ssl.keyStore.passwordPath", password_path.as_str()),
    ] {
        let port = free_port();
        let port_s = port.to_string();
        let proc = start_rookery(&[
            ("secureClientPort", port_s.as_str()),
            ("ssl.keyStore.location", p12.as_str()),
            ("ssl.keyStore.type", "PKCS12"),
            (key, value),
            ("ssl.trustStore.location", ca.as_str()),
            ("authProvider.x509", X509_PROVIDER),
        ]);
        let secure = SocketAddr::from(([127, 0, 0, 1], port));
        let c = must_connect(secure, client_tls(), &proc).await;
        let ids = bounded(c.who_am_i()).await.unwrap();
        assert!(
            has_id(&ids, "x509", "CN=client,O=Rookery"),
            "{key}: {ids:?}"
        );
        bounded(c.create("/p12", b"", &CreateOptions::ephemeral()))
            .await
            .unwrap();
        bounded(c.close()).await.unwrap();
        assert!(
            !log_text(&proc).contains(&password),
            "{key}: the password is in the log"
        );
        assert_no_panic(&proc);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs12_wrong_password_stops_start_up_naming_the_store_not_the_password() {
    const WRONG: &str = "Wrong-P12-Passw0rd-4d1f";
    let certs = make_certs();
    let d = certs.path();
    let right = std::fs::read_to_string(d.join("server.p12.password")).unwrap();
    let p12 = d.join("server.p12");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_cfg(
        dir.path(),
        &[
            format!("clientPort={}", free_port()),
            "clientPortAddress=127.0.0.1".into(),
            format!("secureClientPort={}", free_port()),
            format!("ssl.keyStore.location={}", p12.display()),
            format!("ssl.keyStore.password={WRONG}"),
            format!("ssl.trustStore.location={}", d.join("ca.pem").display()),
        ],
    );
    let err_path = dir.path().join("stderr.log");
    let child = Command::new(rookery_bin())
        .args(server_args(&cfg))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let status = wait_exit(&mut child.0, WAIT).unwrap_or_else(|| {
        panic!(
            "the server kept running with a wrong key store password:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    });
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "exit status {status}:\n{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no `Error:` line:\n{stderr}"));
    assert!(
        error.contains("server.p12") && error.contains("key store"),
        "the error does not name the store:\n{stderr}"
    );
    assert!(
        error.to_lowercase().contains("password"),
        "the error does not hint at the password:\n{stderr}"
    );
    assert!(
        !stderr.contains(WRONG),
        "the wrong password is printed:\n{stderr}"
    );
    assert!(
        !stderr.contains(&right),
        "the right password is printed:\n{stderr}"
    );
    eprintln!("start-up error: {error}");
}

// === 5. a secure port only ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_only_configuration_serves_tls_and_no_plain_port() {
    let p = pki("secure-only");
    let dir = tempfile::tempdir().unwrap();
    let key_store = p.server.write_key_store(&dir.path().join("server.pem"));
    let trust_store = p.ca.write_trust_store(&dir.path().join("ca.pem"));
    let port = free_port();
    // No clientPort: as in ZooKeeper, nothing plain is served (not even on 2181).
    let cfg = write_cfg(
        dir.path(),
        &[
            "clientPortAddress=127.0.0.1".into(),
            format!("secureClientPort={port}"),
            format!("ssl.keyStore.location={}", key_store.display()),
            format!("ssl.trustStore.location={}", trust_store.display()),
        ],
    );
    let secure = SocketAddr::from(([127, 0, 0, 1], port));
    let mut proc = tokio::task::spawn_blocking(move || {
        start_program(
            &rookery_bin(),
            &server_args(&cfg),
            &[("RUST_LOG", "info")],
            secure,
        )
    })
    .await
    .unwrap();
    let c = must_connect(secure, presenting(trusting(&p.ca.pem), &p.client), &proc).await;
    bounded(c.create("/secure-only", b"tls", &CreateOptions::persistent()))
        .await
        .unwrap();
    let (data, _) = bounded(c.get_data("/secure-only")).await.unwrap();
    assert_eq!(data, b"tls");
    let ports = listening_ports(proc.pid());
    assert_eq!(
        ports,
        HashSet::from([port]),
        "the server listens on more than its secure port:\n{}",
        proc.log()
    );
    let log = log_text(&proc);
    assert!(log.contains("serving TLS clients"), "{log}");
    assert!(!log.contains("rookery server listening"), "{log}");
    bounded(c.close()).await.unwrap();
    assert!(proc.is_running());
    assert_no_panic(&proc);
}

// === 6. SEC-10: no secrets in logs ===

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

/// The client side of DIGEST-MD5 as ZooKeeper's clients run it (RFC 2831, qop auth,
/// digest-uri zookeeper/zk-sasl-md5): the response to `challenge`, the response value in it,
/// and the rspauth the server must answer with.
fn digest_md5_response(challenge: &[u8], user: &str, password: &str) -> (Vec<u8>, String, String) {
    const REALM: &str = "zk-sasl-md5";
    const URI: &str = "zookeeper/zk-sasl-md5";
    let text = String::from_utf8(challenge.to_vec()).unwrap();
    let nonce = text
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no nonce in the challenge {text:?}"));
    assert!(text.contains(&format!("realm=\"{REALM}\"")), "{text}");
    let cnonce = hex(&rand::random::<[u8; 16]>());
    let secret = Md5::new()
        .chain_update(format!("{user}:{REALM}:{password}"))
        .finalize();
    let ha1 = md5_hex(&[
        secret.as_slice(),
        b":",
        nonce.as_bytes(),
        b":",
        cnonce.as_bytes(),
    ]);
    let value = |a2: &str| {
        let ha2 = md5_hex(&[a2.as_bytes()]);
        md5_hex(&[
            ha1.as_bytes(),
            format!(":{nonce}:00000001:{cnonce}:auth:").as_bytes(),
            ha2.as_bytes(),
        ])
    };
    let response = value(&format!("AUTHENTICATE:{URI}"));
    let rspauth = value(&format!(":{URI}"));
    let token = format!(
        "charset=utf-8,username=\"{user}\",realm=\"{REALM}\",nonce=\"{nonce}\",nc=00000001,\
         cnonce=\"{cnonce}\",digest-uri=\"{URI}\",maxbuf=65536,response={response},qop=auth"
    );
    (token.into_bytes(), response, format!("rspauth={rspauth}"))
}

fn sasl(token: &[u8]) -> Request {
    Request::Sasl(SaslToken {
        token: token.to_vec(),
    })
}

fn sasl_token(r: &Reply) -> Vec<u8> {
    match &r.body {
        Some(Response::Sasl(t)) => t.token.clone(),
        other => panic!("not a SASL reply: err {} {other:?}", r.err()),
    }
}

/// One DIGEST-MD5 exchange over a fresh plain connection: the final reply, and the response
/// value the client sent (a hash of the password: a secret too). A successful reply must
/// carry the rspauth that proves the server knows the password.
async fn sasl_exchange(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> (RawClient, Option<Reply>, String) {
    let mut c = RawClient::connect(addr).await;
    let challenge = sasl_token(&c.call(sasl(b"")).await);
    let (token, response, rspauth) = digest_md5_response(&challenge, user, password);
    let reply = c.try_call(sasl(&token)).await;
    if let Some(r) = reply.as_ref().filter(|r| r.err() == 0) {
        assert_eq!(String::from_utf8_lossy(&sasl_token(r)), rspauth);
    }
    (c, reply, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec10_no_password_reaches_a_trace_log() {
    const TRUST_PW: &str = "TrustStorePw-7f3a19";
    const SASL_SUPER_PW: &str = "SaslSuperPw-91c2e0";
    const SASL_ALICE_PW: &str = "SaslAlicePw-5d0e44";
    const SASL_WRONG_PW: &str = "SaslWrongGuess-e62b7c";
    const DIGEST_SUPER_PW: &str = "DigestSuperPw-3b8f21";
    const DIGEST_BOB_PW: &str = "DigestBobPw-a41c05";
    const DIGEST_CAROL_PW: &str = "DigestCarolPw-77aa90";
    const UNKNOWN_SCHEME_PW: &str = "UnknownSchemePw-0c9d3e";

    let certs = make_certs();
    let d = certs.path();
    let p12_pw = std::fs::read_to_string(d.join("server.p12.password")).unwrap();
    let ca_pem = std::fs::read_to_string(d.join("ca.pem")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jaas = dir.path().join("jaas.conf");
    std::fs::write(
        &jaas,
        format!(
            "Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
             user_super=\"{SASL_SUPER_PW}\"\n  user_alice=\"{SASL_ALICE_PW}\";\n}};\n"
        ),
    )
    .unwrap();
    let super_digest = common::digest_id(&format!("super:{DIGEST_SUPER_PW}"));
    let (plain_port, secure_port) = (free_port(), free_port());
    let cfg = write_cfg(
        dir.path(),
        &[
            format!("clientPort={plain_port}"),
            "clientPortAddress=127.0.0.1".into(),
            format!("secureClientPort={secure_port}"),
            format!("ssl.keyStore.location={}", d.join("server.p12").display()),
            format!("ssl.keyStore.password={p12_pw}"),
            format!("ssl.trustStore.location={}", d.join("ca.pem").display()),
            format!("ssl.trustStore.password={TRUST_PW}"),
            format!("authProvider.x509={X509_PROVIDER}"),
            "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into(),
            format!("java.security.auth.login.config={}", jaas.display()),
            "superUser=super".into(),
            format!("DigestAuthenticationProvider.superDigest={super_digest}"),
        ],
    );
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
    let secure = SocketAddr::from(([127, 0, 0, 1], secure_port));
    let proc = tokio::task::spawn_blocking(move || {
        start_program(
            &rookery_bin(),
            &server_args(&cfg),
            &[("RUST_LOG", "trace")],
            plain,
        )
    })
    .await
    .unwrap();

    // TLS with a client certificate, and digest credentials sent at connect time.
    let client_tls = TlsOptions::new()
        .with_ca_pem(ca_pem.as_bytes())
        .unwrap()
        .with_client_cert_pem(
            &std::fs::read(d.join("client-cert.pem")).unwrap(),
            &std::fs::read(d.join("client-key.pem")).unwrap(),
        )
        .unwrap();
    let c = bounded(
        zk::Client::builder(&secure.to_string())
            .tls(client_tls)
            .digest_auth("carol", DIGEST_CAROL_PW)
            .connect_timeout(CONNECT)
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("no TLS session: {e}\n{}", proc.log()));
    let ids = bounded(c.who_am_i()).await.unwrap();
    assert!(has_id(&ids, "x509", "CN=client,O=Rookery"), "{ids:?}");
    assert!(ids.iter().any(|i| i.auth_scheme == "digest"), "{ids:?}");
    bounded(c.create("/sec10", b"", &CreateOptions::persistent()))
        .await
        .unwrap();

    // SASL DIGEST-MD5: a good exchange (which authenticates the server too), then a bad one.
    let (mut alice, reply, good_response) = sasl_exchange(plain, "alice", SASL_ALICE_PW).await;
    let reply = reply.expect("the server closed a good SASL exchange");
    assert_eq!(reply.err(), 0, "SASL as alice failed:\n{}", proc.log());
    let rspauth = sasl_token(&reply);
    assert!(
        rspauth.starts_with(b"rspauth="),
        "{:?}",
        String::from_utf8_lossy(&rspauth)
    );
    match alice.call(Request::WhoAmI).await.body {
        Some(Response::WhoAmI(w)) => {
            assert!(has_id(&w.client_info, "sasl", "alice"), "{w:?}")
        }
        other => panic!("whoAmI: {other:?}"),
    }
    let (_guess, reply, bad_response) = sasl_exchange(plain, "alice", SASL_WRONG_PW).await;
    if let Some(r) = &reply {
        assert_ne!(r.err(), 0, "a wrong SASL password was accepted");
    }
    let (_root, reply, super_response) = sasl_exchange(plain, "super", SASL_SUPER_PW).await;
    assert_eq!(reply.map(|r| r.err()), Some(0), "SASL as super failed");

    // Digest: the super digest's password, another user's, and a scheme nobody serves.
    let mut raw = RawClient::connect(plain).await;
    let session_passwd = raw.passwd.clone();
    assert_eq!(
        raw.call(common::digest_auth(&format!("super:{DIGEST_SUPER_PW}")))
            .await
            .err(),
        0
    );
    assert_eq!(
        raw.call(common::digest_auth(&format!("bob:{DIGEST_BOB_PW}")))
            .await
            .err(),
        0
    );
    let refused = raw
        .try_call(Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "nosuchscheme".into(),
            auth: UNKNOWN_SCHEME_PW.as_bytes().to_vec(),
        }))
        .await;
    assert_ne!(
        refused.map(|r| r.err()),
        Some(0),
        "an unknown scheme was accepted"
    );
    bounded(c.close()).await.unwrap();

    // Let the last lines land, then read everything the server wrote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = log_text(&proc);
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is not at trace level:\n{log}"
    );
    // The search works: user names may be logged, and are.
    assert!(log.contains("SASL authentication succeeded"), "{log}");
    assert!(log.contains("alice"), "{log}");
    let mut secrets: Vec<(&str, String)> = vec![
        ("the PKCS12 key store password", p12_pw.clone()),
        ("the trust store password", TRUST_PW.into()),
        ("a JAAS password", SASL_SUPER_PW.into()),
        ("a JAAS password", SASL_ALICE_PW.into()),
        ("a wrong SASL password", SASL_WRONG_PW.into()),
        ("the super digest's password", DIGEST_SUPER_PW.into()),
        ("a digest password", DIGEST_BOB_PW.into()),
        ("a digest password", DIGEST_CAROL_PW.into()),
        ("an unknown scheme's credentials", UNKNOWN_SCHEME_PW.into()),
        ("a DIGEST-MD5 response value", good_response),
        ("a DIGEST-MD5 response value", bad_response),
        ("a DIGEST-MD5 response value", super_response),
        ("the session password (hex)", hex(&session_passwd)),
        (
            "the session password (base64)",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &session_passwd),
        ),
        (
            "the session password (Debug)",
            format!("{session_passwd:?}"),
        ),
    ];
    // Digest credentials on the wire are `user:password`; a password split across escaped
    // bytes would be a leak too, so also look for the JAAS passwords' byte lists.
    secrets.push((
        "a JAAS password (bytes)",
        format!("{:?}", SASL_ALICE_PW.as_bytes()),
    ));
    secrets.push((
        "a digest password (bytes)",
        format!("{:?}", format!("bob:{DIGEST_BOB_PW}").as_bytes()),
    ));
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| log.contains(s.as_str()))
        .map(|(what, s)| {
            let line = log.lines().find(|l| l.contains(s.as_str())).unwrap_or("");
            format!("{what} ({s}) in: {line}")
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the trace log ({} bytes):\n{}",
        log.len(),
        leaks.join("\n")
    );
    assert_no_panic(&proc);
    drop(certs);
}
