//! The sidecar end to end with real processes: a Rookery server, demo services, `rookery
//! sidecar` processes and an HTTP client. Registration, discovery, balancing, instance loss,
//! the lame-duck shutdown, health failures and the registry formats.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rookery_client::discovery::ServiceDiscovery;
use rookery_client::{Client, CreateMode, CreateOptions};

#[tokio::test]
async fn registers_discovers_and_balances() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let sa = registering(&zk_addr, &a, "web", &[]);
    let sb = registering(&zk_addr, &b, "web", &[]);
    let client = sidecar(&zk_addr, &["--route", "/api/=web"]);
    ready(&sa).await;
    ready(&sb).await;
    ready(&client).await;
    healthy(&client, "web", &["a", "b"]).await;

    let http = Http::new();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = http.get(client.outbound, "web", "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen, BTreeSet::from(["a".to_string(), "b".to_string()]));
    // A path-prefix route, whatever the host.
    let (status, _) = http
        .get(client.outbound, "elsewhere", "/api/x")
        .await
        .unwrap();
    assert_eq!(
        status, 404,
        "the demo service answers 404 for /api/x: the request got there"
    );
    // No route: 404 from the sidecar itself, with its reason.
    let (status, body, error) = http
        .send("GET", client.outbound, "nowhere", "/", b"")
        .await
        .unwrap();
    assert_eq!(
        (status, error.as_deref()),
        (404, Some("no-route")),
        "{body}"
    );

    // The registrations are Curator ServiceInstance JSON, readable by any Curator client.
    let c = Client::connect(&zk_addr).await.unwrap();
    let instances = ServiceDiscovery::new(&c, "/services")
        .query_instances("web")
        .await
        .unwrap();
    let got: Vec<(String, Option<String>, Option<i32>)> = instances
        .iter()
        .map(|i| (i.id.clone(), i.address.clone(), i.port))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "a".into(),
                Some("127.0.0.1".into()),
                Some(i32::from(a.addr.port()))
            ),
            (
                "b".into(),
                Some("127.0.0.1".into()),
                Some(i32::from(b.addr.port()))
            ),
        ]
    );
    let stat = c.exists("/services/web/a").await.unwrap().unwrap();
    assert_ne!(stat.ephemeral_owner, 0, "an instance is an ephemeral node");

    // Metrics: a real parser reads them, and they count what happened.
    let ok = metric(
        &client,
        "rookery_sidecar_requests_total",
        &[("service", "web"), ("class", "2xx")],
    )
    .await;
    assert_eq!(ok, Some(40.0));
    let n = metric(
        &client,
        "rookery_sidecar_endpoints",
        &[("service", "web"), ("state", "healthy")],
    )
    .await;
    assert_eq!(n, Some(2.0));
    assert_eq!(
        metric(&client, "rookery_sidecar_view_stale", &[]).await,
        Some(0.0)
    );
    assert!(
        metric(&client, "rookery_sidecar_view_zxid", &[])
            .await
            .unwrap()
            > 0.0
    );
    assert_eq!(
        metric(&sa, "rookery_sidecar_registered", &[]).await,
        Some(1.0)
    );
    c.close().await.unwrap();
}

/// Steady GETs through `client` to `service` until `stop`; (sent, failures).
fn steady_traffic(
    client: &Sidecar,
    service: &'static str,
    method: &'static str,
    path: &'static str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let addr = client.outbound;
    tokio::spawn(async move {
        let http = Http::new();
        let sent = AtomicUsize::new(0);
        let mut failures = Vec::new();
        // Bounded: at most 20,000 requests.
        for _ in 0..20_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            match http.send(method, addr, service, path, b"payload").await {
                Ok((200, _, _)) => {}
                Ok((status, body, _)) => failures.push(format!("{status}: {body}")),
                Err(e) => failures.push(e),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (sent.load(Ordering::Relaxed), failures)
    })
}

#[tokio::test]
async fn killing_an_instance_shifts_traffic_with_no_failed_get() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b, c) = (backend("a"), backend("b"), backend("c"));
    let sa = registering(&zk_addr, &a, "web", &[]);
    let sb = registering(&zk_addr, &b, "web", &[]);
    let sc = registering(&zk_addr, &c, "web", &[]);
    let client = sidecar(&zk_addr, &[]);
    for s in [&sa, &sb, &sc, &client] {
        ready(s).await;
    }
    healthy(&client, "web", &["a", "b", "c"]).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = steady_traffic(&client, "web", "GET", "/", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The instance and its sidecar die at once: the node stays until the session expires.
    b.proc.kill();
    sb.proc.kill();
    // Gone from the view once its session expires (4 s).
    eventually(WAIT, "b to leave the view", || async {
        !ids_in(&client, "web", "healthy")
            .await
            .contains(&"b".to_string())
            && !ids_in(&client, "web", "ejected")
                .await
                .contains(&"b".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    eprintln!(
        "sent {sent} GETs while an instance was killed; {} failed",
        failures.len()
    );
    assert!(sent > 100, "too little traffic to mean anything: {sent}");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    healthy(&client, "web", &["a", "c"]).await;
}

#[tokio::test]
async fn lame_duck_shutdown_fails_no_request() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let a = backend("a");
    let sa = registering(&zk_addr, &a, "web", &[]);
    // b runs under its sidecar (`rookery sidecar -- demo-service ...`), which stops it last.
    let (mut sb, b_addr) = supervising(
        &zk_addr,
        "b",
        "web",
        &["--set", "drain.propagation_ms=1500"],
    );
    let client = sidecar(&zk_addr, &[]);
    for s in [&sa, &sb, &client] {
        ready(s).await;
    }
    healthy(&client, "web", &["a", "b"]).await;

    // POSTs: not idempotent, so a request lost to the shutdown would not be retried.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = steady_traffic(&client, "web", "POST", "/echo", stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    sb.proc.terminate();
    // Not ready at once, and gone from the registry before it exits.
    eventually(WAIT, "b's sidecar to report not ready", || async {
        !matches!(
            Http::new().get(sb.admin, "admin", "/ready").await,
            Ok((200, _))
        )
    })
    .await;
    healthy(&client, "web", &["a"]).await;
    let status = sb
        .proc
        .wait_exit(WAIT)
        .expect("the sidecar exits after its drain");
    assert!(status.success(), "{status}: {}", sb.proc.log());
    // The service was stopped after the drain, by its sidecar.
    assert!(
        std::net::TcpStream::connect(b_addr).is_err(),
        "b still listens after its sidecar exited"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    eprintln!(
        "sent {sent} POSTs across a lame-duck shutdown; {} failed",
        failures.len()
    );
    assert!(sent > 100, "too little traffic: {sent}");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let log = sb.proc.log();
    assert!(
        log.contains("lame duck") && log.contains("unregistered"),
        "{log}"
    );
}

#[tokio::test]
async fn a_supervised_service_that_exits_is_unregistered_and_its_status_returned() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (mut sa, a_addr) = supervising(&zk_addr, "a", "web", &[]);
    let client = sidecar(&zk_addr, &[]);
    ready(&sa).await;
    healthy(&client, "web", &["a"]).await;
    // demo-service exits 0 on SIGTERM; sent to it alone, its sidecar sees it exit by itself.
    let pattern = format!(
        "^{} --listen {a_addr}",
        workspace_example("demo-service").display()
    );
    let out = std::process::Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("demo-service runs")
        .to_owned();
    std::process::Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .unwrap();
    let status = sa
        .proc
        .wait_exit(WAIT)
        .expect("the sidecar exits with its service");
    assert_eq!(status.code(), Some(0), "{}", sa.proc.log());
    assert!(
        sa.proc.log().contains("the service exited"),
        "{}",
        sa.proc.log()
    );
    // Deregistered on the way out, not left to a session expiry.
    let zkc = Client::connect(&zk_addr).await.unwrap();
    // (The service's node is a container: once empty, the server may remove it.)
    match zkc.get_children("/services/web").await {
        Ok(left) => assert!(left.is_empty(), "still registered: {left:?}"),
        Err(e) => assert_eq!(e, rookery_client::Error::NoNode),
    }
    // The client's sidecar lets it go (one instance of one is a mass removal, applied once
    // confirmed).
    eventually(WAIT, "the client's sidecar to drop a", || async {
        endpoints(&client).await["services"]["web"]["endpoints"]
            .as_array()
            .is_some_and(|e| e.is_empty())
    })
    .await;
}

#[tokio::test]
async fn a_failing_health_check_unregisters_and_a_passing_one_registers_again() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let sa = registering(&zk_addr, &a, "web", &[]);
    let sb = registering(&zk_addr, &b, "web", &[]);
    let client = sidecar(&zk_addr, &[]);
    for s in [&sa, &sb, &client] {
        ready(s).await;
    }
    healthy(&client, "web", &["a", "b"]).await;
    let http = Http::new();
    let (status, _) = http
        .send("POST", a.addr, "a", "/health/fail", b"")
        .await
        .map(|(s, b, _)| (s, b))
        .unwrap();
    assert_eq!(status, 200);
    healthy(&client, "web", &["b"]).await;
    let (status, body) = http.get(sa.admin, "admin", "/ready").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not registered"), "{body}");
    for _ in 0..20 {
        let (_, body) = http.get(client.outbound, "web", "/").await.unwrap();
        assert_eq!(body.trim(), "b");
    }
    http.send("POST", a.addr, "a", "/health/pass", b"")
        .await
        .unwrap();
    healthy(&client, "web", &["a", "b"]).await;
    ready(&sa).await;
}

#[tokio::test]
async fn routing_survives_the_ensemble_going_down_and_starts_from_disk() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let sa = registering(&zk_addr, &a, "web", &[]);
    let sb = registering(&zk_addr, &b, "web", &[]);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let client = sidecar(&zk_addr, &["--state-dir", &state_dir]);
    for s in [&sa, &sb, &client] {
        ready(s).await;
    }
    healthy(&client, "web", &["a", "b"]).await;
    eventually(WAIT, "the view to be kept on disk", || async {
        std::fs::read_to_string(state.path().join("view.json")).is_ok_and(|v| v.contains("\"b\""))
    })
    .await;

    // The whole ensemble goes away, for longer than the sessions last.
    zk.kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let http = Http::new();
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let (status, body) = http.get(client.outbound, "web", "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
        seen.insert(body.trim().to_string());
    }
    assert_eq!(seen.len(), 2, "both instances still used: {seen:?}");
    assert_eq!(
        metric(&client, "rookery_sidecar_view_stale", &[]).await,
        Some(1.0)
    );
    assert!(
        metric(&client, "rookery_sidecar_view_age_seconds", &[])
            .await
            .unwrap()
            >= 1.0
    );

    // A sidecar that starts now, with no ensemble, routes from the kept view.
    let cold = sidecar(&zk_addr, &["--state-dir", &state_dir]);
    ready(&cold).await;
    let doc = endpoints(&cold).await;
    assert_eq!(doc["view"]["from_disk"], true, "{doc}");
    assert_eq!(doc["view"]["stale"], true, "{doc}");
    let (status, _) = http.get(cold.outbound, "web", "/").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_mass_removal_is_held_until_the_registry_confirms_it() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b, c) = (backend("a"), backend("b"), backend("c"));
    // Registered directly, by a Rust service using the client library.
    let rc = Client::connect(&zk_addr).await.unwrap();
    let discovery = ServiceDiscovery::new(&rc, "/services");
    for be in [&a, &b, &c] {
        let i = rookery_client::discovery::ServiceInstance::new("web")
            .with_id(&be.name)
            .with_address("127.0.0.1", be.addr.port());
        discovery.register(&i).await.unwrap();
    }
    let client = sidecar(&zk_addr, &["--set", "stability.confirm_ms=3000"]);
    ready(&client).await;
    healthy(&client, "web", &["a", "b", "c"]).await;
    // One of three: applied at once.
    discovery.unregister("web", "c").await.unwrap();
    healthy(&client, "web", &["a", "b"]).await;
    // All the rest at once (one multi): held, and routed to meanwhile.
    rc.multi()
        .delete("/services/web/a", None)
        .delete("/services/web/b", None)
        .commit()
        .await
        .unwrap();
    eventually(WAIT, "the removal to be held", || async {
        ids_in(&client, "web", "kept").await == ["a", "b"]
    })
    .await;
    let http = Http::new();
    let (status, _) = http.get(client.outbound, "web", "/").await.unwrap();
    assert_eq!(
        status, 200,
        "routing to all last-known endpoints while unconfirmed"
    );
    // Confirmed after the window: applied.
    eventually(WAIT, "the removal to be applied", || async {
        ids_in(&client, "web", "kept").await.is_empty()
    })
    .await;
    let (status, _, error) = http
        .send("GET", client.outbound, "web", "/", b"")
        .await
        .unwrap();
    assert_eq!((status, error.as_deref()), (503, Some("no-endpoints")));
    rc.close().await.unwrap();
}

#[tokio::test]
async fn reads_nerve_and_serverset_layouts() {
    let zk = start_rookery(&[]);
    let zk_addr = zk.addr.to_string();
    let (a, b) = (backend("a"), backend("b"));
    let rc = Client::connect(&zk_addr).await.unwrap();
    let persistent = CreateOptions::new(CreateMode::Persistent);
    let ephemeral = CreateOptions::new(CreateMode::Ephemeral);
    for p in ["/nerve", "/nerve/users", "/aurora", "/aurora/jobs"] {
        rc.create(p, b"", &persistent).await.unwrap();
    }
    let nerve = format!(
        r#"{{"host":"127.0.0.1","port":{},"name":"i-1","weight":2,"labels":{{"az":"x"}}}}"#,
        a.addr.port()
    );
    rc.create("/nerve/users/i-1_host", nerve.as_bytes(), &ephemeral)
        .await
        .unwrap();
    let serverset = format!(
        r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":{}}},"additionalEndpoints":{{}},"status":"ALIVE","shard":0}}"#,
        b.addr.port()
    );
    rc.create(
        "/aurora/jobs/member_0000000001",
        serverset.as_bytes(),
        &ephemeral,
    )
    .await
    .unwrap();
    rc.create("/aurora/jobs/member_0000000002", b"not json", &ephemeral)
        .await
        .unwrap();
    let client = sidecar(
        &zk_addr,
        &[
            "--set",
            r#"sources=[{path="/nerve/users", format="nerve", service="users"}, {path="/aurora/jobs", format="serverset", service="jobs"}]"#,
        ],
    );
    ready(&client).await;
    healthy(&client, "users", &["i-1_host"]).await;
    healthy(&client, "jobs", &["member_0000000001"]).await;
    assert_eq!(
        ids_in(&client, "jobs", "filtered").await,
        ["member_0000000002"]
    );
    let http = Http::new();
    assert_eq!(
        http.get(client.outbound, "users", "/")
            .await
            .unwrap()
            .1
            .trim(),
        "a"
    );
    assert_eq!(
        http.get(client.outbound, "jobs", "/")
            .await
            .unwrap()
            .1
            .trim(),
        "b"
    );
    rc.close().await.unwrap();
}

#[tokio::test]
async fn a_bad_configuration_is_refused_naming_the_key() {
    for (args, key) in [
        (vec!["--set", "health.rise=0"], "health.rise"),
        (vec!["--set", "upstream.balancer=fastest"], "fastest"),
        (vec!["--outbound", "nowhere"], "listen"),
        (vec!["--route", "bad"], "route"),
        (vec!["--set", "upstream.tls=true"], "upstream.ca_file"),
    ] {
        let out = std::process::Command::new(rookery_bin())
            .arg("sidecar")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(key), "{args:?}: {err}");
    }
}
