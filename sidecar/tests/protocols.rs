//! The sidecar's protocols and resilience with real processes: HTTP/2 (h2c) both ways,
//! websockets, TLS termination and upstream TLS, outlier ejection, retries and their budget,
//! bad input, and a service registered by the real Apache Curator.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
use rookery_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Registers `(id, port)` instances of `service` on 127.0.0.1 through a client kept open.
async fn register(
    zk: &str,
    service: &str,
    instances: &[(&str, u16)],
) -> (Client, ServiceDiscovery) {
    let c = Client::connect(zk).await.unwrap();
    let d = ServiceDiscovery::new(&c, "/services");
    for (id, port) in instances {
        let i = ServiceInstance::new(service)
            .with_id(id)
            .with_address("127.0.0.1", *port);
        d.register(&i).await.unwrap();
    }
    (c, d)
}

#[tokio::test]
async fn http2_both_ways_and_websockets() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let a = backend("a");
    let _reg = register(&zk_addr, "web", &[("a", a.addr.port())]).await;
    let client = sidecar(&zk_addr, &["--set", "services.web.protocol=\"h2c\""]);
    ready(&client).await;
    healthy(&client, "web", &["a"]).await;

    // An HTTP/2 (prior knowledge) caller, to an HTTP/2 upstream.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("http://web:{}/headers", client.outbound.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The URI's host names the service; the connection goes to the sidecar.
    let conn = TcpStream::connect(client.outbound).await.unwrap();
    let (mut send, driver) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(conn),
    )
    .await
    .unwrap();
    tokio::spawn(driver);
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("version: HTTP/2.0"),
        "the upstream got HTTP/2: {body}"
    );
    drop(h2);

    // A websocket through an HTTP/1.1 upstream.
    let ws_client = sidecar(&zk_addr, &[]);
    ready(&ws_client).await;
    healthy(&ws_client, "web", &["a"]).await;
    let stream = TcpStream::connect(ws_client.outbound).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://web/ws", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echo = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::text(format!("hello {i}")));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let _reg = register(
        &zk_addr,
        "web",
        &[("a", a.addr.port()), ("b", b.addr.port())],
    )
    .await;
    let client = sidecar(
        &zk_addr,
        &["--set", "upstream.outlier_consecutive_failures=3"],
    );
    ready(&client).await;
    healthy(&client, "web", &["a", "b"]).await;
    let http = Http::new();
    http.send("POST", b.addr, "b", "/mode/broken", b"")
        .await
        .unwrap();
    // Bounded: b answers 500 until it has failed three times in a row.
    let mut errors = 0;
    for _ in 0..60 {
        let (status, _) = http.get(client.outbound, "web", "/").await.unwrap();
        if status == 500 {
            errors += 1;
        }
        if ids_in(&client, "web", "ejected").await == ["b"] {
            break;
        }
    }
    assert_eq!(ids_in(&client, "web", "ejected").await, ["b"]);
    assert_eq!(errors, 3, "exactly the failures that eject");
    for _ in 0..30 {
        let (status, body) = http.get(client.outbound, "web", "/").await.unwrap();
        assert_eq!((status, body.trim()), (200, "a"));
    }
    let b_endpoint = format!("127.0.0.1:{}", b.addr.port());
    let ejections = metric(
        &client,
        "rookery_sidecar_ejections_total",
        &[("service", "web"), ("endpoint", &b_endpoint)],
    )
    .await;
    assert_eq!(ejections, Some(1.0));
    let doc = endpoints(&client).await;
    let why = doc["services"]["web"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "b")
        .map(|e| e["why"].to_string())
        .unwrap();
    assert!(why.contains("consecutive failures"), "{why}");
}

#[tokio::test]
async fn failed_connects_are_retried_within_the_budget() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let a = backend("a");
    // `dead` listens nowhere.
    let dead = free_port();
    let _reg = register(&zk_addr, "web", &[("a", a.addr.port()), ("dead", dead)]).await;
    let _reg2 = register(&zk_addr, "gone", &[("x", free_port()), ("y", free_port())]).await;
    let client = sidecar(
        &zk_addr,
        &[
            "--set",
            "upstream.outlier_consecutive_failures=1000",
            "--set",
            "upstream.retry_min_per_second=1",
            "--set",
            "upstream.retry_budget_ratio=0.1",
        ],
    );
    ready(&client).await;
    healthy(&client, "web", &["a", "dead"]).await;
    healthy(&client, "gone", &["x", "y"]).await;
    let http = Http::new();
    // A POST is not idempotent, but a failed connect means it was never sent: retried. Ten
    // requests at most need ten retries, which the budget's reserve (1 a second over its 10 s
    // window) always covers, whichever endpoint each first pick lands on; twenty failed now
    // and then, when more than twelve first picks were the dead endpoint.
    for _ in 0..10 {
        let (status, body, _) = http
            .send("POST", client.outbound, "web", "/echo", b"once")
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "once"));
    }
    // A service with no live endpoint: every request fails, and the budget stops the retries
    // from multiplying the load (without it: two retries per request).
    let before = metric(
        &client,
        "rookery_sidecar_retries_total",
        &[("service", "gone")],
    )
    .await
    .unwrap_or(0.0);
    for _ in 0..100 {
        let (status, _, error) = http
            .send("GET", client.outbound, "gone", "/", b"")
            .await
            .unwrap();
        assert_eq!((status, error.as_deref()), (503, Some("connect")));
    }
    let retries = metric(
        &client,
        "rookery_sidecar_retries_total",
        &[("service", "gone")],
    )
    .await
    .unwrap()
        - before;
    let refused = metric(
        &client,
        "rookery_sidecar_retries_refused_total",
        &[("service", "gone")],
    )
    .await
    .unwrap();
    eprintln!("100 failing requests: {retries} retries sent, {refused} refused by the budget");
    assert!(retries <= 40.0, "the budget let {retries} retries through");
    assert!(refused >= 50.0, "{refused}");
}

/// Sends raw bytes to `addr` and returns what comes back until the connection closes (at most
/// 5 s).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bad_input_gets_a_clear_status_and_never_a_stuck_connection() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let a = backend("a");
    // A backend that accepts and resets every connection.
    let resetter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_port = resetter.local_addr().unwrap().port();
    tokio::spawn(async move {
        // Bounded by the test's life: the task ends with the runtime.
        while let Ok((s, _)) = resetter.accept().await {
            drop(s);
        }
    });
    let _reg = register(&zk_addr, "web", &[("a", a.addr.port())]).await;
    let _reg2 = register(&zk_addr, "reset", &[("r", reset_port)]).await;
    let client = sidecar(&zk_addr, &["--set", "services.web.request_timeout_ms=500"]);
    ready(&client).await;
    healthy(&client, "web", &["a"]).await;
    healthy(&client, "reset", &["r"]).await;

    let garbage = raw(client.outbound, b"GARBAGE\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web\r\nX-Big: {}\r\n\r\n",
        "x".repeat(100 * 1024)
    );
    let answer = raw(client.outbound, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let http = Http::new();
    let started = std::time::Instant::now();
    let (status, _, error) = http
        .send("GET", client.outbound, "web", "/slow/60000", b"")
        .await
        .unwrap();
    assert_eq!((status, error.as_deref()), (504, Some("timeout")));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let (status, _, error) = http
        .send("POST", client.outbound, "reset", "/", b"x")
        .await
        .unwrap();
    assert!(status == 502 || status == 503, "{status} {error:?}");
    let (status, _, _) = http
        .send("GET", client.outbound, "reset", "/", b"")
        .await
        .unwrap();
    assert!(status == 502 || status == 503, "{status}");
    // And the sidecar is none the worse.
    let (status, body) = http.get(client.outbound, "web", "/").await.unwrap();
    assert_eq!((status, body.trim()), (200, "a"));
    assert!(client.proc.log().lines().all(|l| !l.contains("panicked")));
}

/// A CA, and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "rookery test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

#[tokio::test]
async fn tls_termination_and_upstream_tls() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let b = backend("b");
    let inbound = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let inbound_s = inbound.to_string();
    let cert_set = format!("inbound.tls.cert={cert:?}");
    let key_set = format!("inbound.tls.key={key:?}");
    let sb = registering(
        &zk_addr,
        &b,
        "secure",
        &[
            "--inbound",
            &inbound_s,
            "--set",
            &cert_set,
            "--set",
            &key_set,
        ],
    );
    ready(&sb).await;
    // The registration carries the TLS port.
    let c = Client::connect(&zk_addr).await.unwrap();
    let i = ServiceDiscovery::new(&c, "/services")
        .query_instance("secure", "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.ssl_port, Some(i32::from(inbound.port())));

    let ca_set = format!("upstream.ca_file={ca:?}");
    let client = sidecar(
        &zk_addr,
        &["--set", "services.secure.tls=true", "--set", &ca_set],
    );
    ready(&client).await;
    healthy(&client, "secure", &["b"]).await;
    let http = Http::new();
    for _ in 0..5 {
        let (status, body) = http.get(client.outbound, "secure", "/").await.unwrap();
        assert_eq!((status, body.trim()), (200, "b"));
    }

    // A caller that trusts another CA cannot connect: a clear 503, no hang.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = certificates(other.path());
    let other_set = format!("upstream.ca_file={other_ca:?}");
    let wrong = sidecar(
        &zk_addr,
        &["--set", "services.secure.tls=true", "--set", &other_set],
    );
    ready(&wrong).await;
    healthy(&wrong, "secure", &["b"]).await;
    let (status, _, error) = http
        .send("GET", wrong.outbound, "secure", "/", b"")
        .await
        .unwrap();
    assert_eq!((status, error.as_deref()), (503, Some("connect")));
    // A plain request on the TLS port gets a closed connection.
    let answer = raw(inbound, b"GET / HTTP/1.1\r\nHost: b\r\n\r\n").await;
    assert!(!answer.contains("200"), "{answer:?}");
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_curator_registered_java_service_is_routed_to_and_finds_ours() {
    if !curator::available() {
        eprintln!("skipping: javac, java or the Curator jars in /usr/share/java are missing");
        return;
    }
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let mut peer = curator::CuratorPeer::start(&zk_addr, 10_000).await;
    peer.ok("disc-start d /services").await;
    peer.ok(&format!(
        "disc-register d web java-1 127.0.0.1 {}",
        a.addr.port()
    ))
    .await;
    // And one registered by a sidecar, for Curator to find.
    let sb = registering(&zk_addr, &b, "web", &[]);
    let client = sidecar(&zk_addr, &[]);
    ready(&sb).await;
    ready(&client).await;
    healthy(&client, "web", &["b", "java-1"]).await;
    let http = Http::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = http.get(client.outbound, "web", "/").await.unwrap();
        assert_eq!(status, 200);
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    let ids = peer.ok("disc-ids d web").await;
    assert!(
        ids.contains("b") && ids.contains("java-1"),
        "Curator sees: {ids}"
    );
    let ours = peer.ok("disc-get d web b").await;
    assert!(ours.contains("\"address\":\"127.0.0.1\""), "{ours}");
    peer.quit().await;
}
