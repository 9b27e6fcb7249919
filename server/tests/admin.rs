//! The admin HTTP server and the Prometheus endpoint, against real `rookery` processes: every
//! AdminServer command answers with ZooKeeper's field names (compared with Apache ZooKeeper's
//! own AdminServer), its numbers agree with the four-letter words, and `/metrics` parses as
//! the Prometheus text format with the metrics dashboards use.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use rookery_proto::ErrorCode;
use serde_json::Value;

fn admin_json(addr: SocketAddr, command: &str) -> Value {
    let (status, body) = http_get(addr, &format!("/commands/{command}"));
    assert_eq!(status, 200, "/commands/{command}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/commands/{command}: {e}: {body}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A standalone server with the admin server and the Prometheus provider on free ports.
fn start_with_http() -> (Proc, SocketAddr, SocketAddr) {
    let (admin_port, metrics_port) = (free_port(), free_port());
    let server = start_rookery(&[
        ("admin.enableServer", "true"),
        ("admin.serverPort", &admin_port.to_string()),
        (
            "metricsProvider.className",
            "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
        ),
        ("metricsProvider.httpPort", &metrics_port.to_string()),
    ]);
    (
        server,
        SocketAddr::from(([127, 0, 0, 1], admin_port)),
        SocketAddr::from(([127, 0, 0, 1], metrics_port)),
    )
}

/// A scrape of `/metrics`, parsed.
fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

/// The value of a gauge or counter.
fn gauge(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no {name} in the scrape"));
    match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name} is neither a gauge nor a counter: {other:?}"),
    }
}

fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str) -> u64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no {name} in the scrape"));
    match &s.value {
        prometheus_parse::Value::Histogram(buckets) => {
            // The +Inf bucket holds every observation.
            buckets.last().map_or(0, |b| b.count as u64)
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn admin_commands_answer_what_the_four_letter_words_say() {
    let (server, admin, _) = start_with_http();
    let mut a = Client::connect(server.addr).await;
    assert_eq!(
        a.call(create("/app", b"hello", 0)).await.err(),
        0,
        "create /app"
    );
    assert_eq!(a.call(create("/app/e", b"", 1)).await.err(), 0);
    assert_eq!(a.call(get_data("/app", true)).await.err(), 0);
    assert_eq!(
        a.call(exists("/missing", true)).await.err(),
        ErrorCode::NoNode.code()
    );
    let sid = a.session_id;

    // The index links every command.
    let (status, index) = http_get(admin, "/commands");
    assert_eq!(status, 200);
    for name in ["monitor", "stats", "connections", "watches", "voting_view"] {
        assert!(index.contains(&format!("/commands/{name}\"")), "{index}");
    }

    let ruok = admin_json(admin, "ruok");
    assert_eq!(ruok["command"], "ruok");
    assert!(ruok["error"].is_null());

    // mntr and its aliases agree with the four-letter word.
    let mntr_text = four_letter(server.addr, "mntr");
    let four = |key: &str| -> String {
        mntr_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("zk_{key}\t")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no zk_{key} in {mntr_text}"))
    };
    for alias in ["mntr", "monitor"] {
        let m = admin_json(admin, alias);
        assert_eq!(m["command"], "monitor");
        assert_eq!(m["server_state"], "standalone");
        for key in [
            "znode_count",
            "watch_count",
            "ephemerals_count",
            "global_sessions",
        ] {
            assert_eq!(m[key].to_string(), four(key), "{key}");
        }
        assert_eq!(m["ephemerals_count"], 1);
        assert_eq!(m["watch_count"], 2);
    }

    let srvr = admin_json(admin, "srvr");
    assert_eq!(srvr["command"], "server_stats");
    assert_eq!(srvr["server_stats"]["server_state"], "standalone");
    assert_eq!(srvr["server_stats"]["num_alive_client_connections"], 1);
    assert_eq!(srvr["node_count"].to_string(), four("znode_count"));
    let stat = admin_json(admin, "stat");
    assert_eq!(stat["command"], "stats");
    assert_eq!(stat["connections"].as_array().map(Vec::len), Some(1));

    let cons = admin_json(admin, "cons");
    assert_eq!(cons["command"], "connections");
    let conn = &cons["connections"][0];
    assert_eq!(conn["session_id"], sid);
    assert_eq!(conn["last_operation"], "EXIS");

    let wchs = admin_json(admin, "wchs");
    assert_eq!(wchs["command"], "watch_summary");
    assert_eq!(wchs["num_total_watches"], 2);
    let wchc = admin_json(admin, "wchc");
    let paths = &wchc["session_id_to_watched_paths"][sid.to_string()];
    assert_eq!(paths, &serde_json::json!(["/app", "/missing"]));
    let wchp = admin_json(admin, "wchp");
    assert_eq!(
        wchp["path_to_session_ids"]["/app"],
        serde_json::json!([sid])
    );

    let dump = admin_json(admin, "dump");
    assert_eq!(
        dump["session_id_to_ephemeral_paths"][sid.to_string()],
        serde_json::json!(["/app/e"])
    );
    let expiries = dump["expiry_time_to_session_ids"].as_object().unwrap();
    assert!(expiries
        .values()
        .any(|ids| ids == &serde_json::json!([sid])));

    let conf = admin_json(admin, "conf");
    assert_eq!(conf["command"], "configuration");
    assert_eq!(conf["client_port"], server.addr.port());
    assert_eq!(admin_json(admin, "envi")["command"], "environment");
    assert_eq!(admin_json(admin, "isro")["read_only"], false);
    assert_eq!(
        admin_json(admin, "leader")["error"],
        "server is not initialized"
    );
    assert_eq!(
        admin_json(admin, "voting_view")["current_config"],
        serde_json::json!({})
    );
    assert!(admin_json(admin, "dirs")["datadir_size"].as_u64().unwrap() > 0);

    // crst and srst reset what cons and srvr count.
    admin_json(admin, "srst");
    let srvr = admin_json(admin, "server_stats");
    assert!(srvr["server_stats"]["packets_received"].as_u64().unwrap() <= 1);

    // What is not a command: ZooKeeper's answers.
    let bogus = admin_json(admin, "bogus");
    assert_eq!(bogus["error"], "Unknown command: bogus");
    assert_eq!(http_get(admin, "/nothing").0, 404);
    assert_eq!(http_request(admin, "POST", "/commands/ruok").0, 405);
    // A client that sends half a request is dropped, and the server still answers.
    let half = std::net::TcpStream::connect(admin).unwrap();
    std::io::Write::write_all(&mut &half, b"GET /comm").unwrap();
    assert_eq!(admin_json(admin, "ruok")["error"], Value::Null);
    drop(half);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_zookeepers_names() {
    let (server, admin, metrics) = start_with_http();
    let before = gauge(&scrape(admin), "znode_count");
    let mut a = Client::connect(server.addr).await;
    for i in 0..20 {
        assert_eq!(a.call(create(&format!("/n{i}"), b"x", 0)).await.err(), 0);
    }
    for i in 0..30 {
        assert_eq!(
            a.call(get_data(&format!("/n{}", i % 20), true)).await.err(),
            0
        );
    }
    for addr in [admin, metrics] {
        let s = scrape(addr);
        assert_eq!(gauge(&s, "znode_count"), before + 20.0);
        assert_eq!(gauge(&s, "watch_count"), 20.0);
        assert_eq!(gauge(&s, "num_alive_connections"), 1.0);
        assert_eq!(gauge(&s, "global_sessions"), 1.0);
        assert_eq!(gauge(&s, "outstanding_requests"), 0.0);
        assert!(histogram_count(&s, "updatelatency") >= 20);
        assert!(histogram_count(&s, "readlatency") >= 30);
        assert!(histogram_count(&s, "fsynctime") >= 1);
        assert!(s
            .samples
            .iter()
            .any(|x| x.metric == "rookery_slow_requests_total"));
    }
    // The Prometheus port serves metrics only.
    assert_eq!(http_get(metrics, "/commands/ruok").0, 404);
}

#[tokio::test]
async fn a_slow_request_is_logged_with_its_session_and_path() {
    let admin_port = free_port();
    let server = start_rookery(&[
        ("admin.enableServer", "true"),
        ("admin.serverPort", &admin_port.to_string()),
        ("slowRequestThresholdMs", "1"),
    ]);
    let client = rookery_client::Client::connect(&server.addr.to_string())
        .await
        .unwrap();
    // Pipelined writes wait behind each other's group commits: some take over a millisecond.
    let opts = rookery_client::CreateOptions::new(rookery_client::CreateMode::Persistent);
    let writes: Vec<_> = (0..500)
        .map(|i| client.create(&format!("/slow-{i}"), b"x", &opts))
        .collect();
    for w in futures::future::join_all(writes).await {
        w.unwrap();
    }
    let session = format!("0x{:x}", client.session_id());
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("slow request"))
        .unwrap_or_else(|| panic!("no slow request logged:\n{log}"));
    assert!(line.contains(&session), "{line}");
    assert!(line.contains("path=\"/slow-"), "{line}");
    assert!(
        line.contains("op=\"CREA\"") || line.contains("op=CREA"),
        "{line}"
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let slow = gauge(&scrape(admin), "rookery_slow_requests_total");
    assert!(slow >= 1.0, "{slow}");
}

#[tokio::test]
async fn an_admin_port_in_use_is_a_warning_and_clients_are_still_served() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let server = start_rookery(&[("admin.enableServer", "true"), ("admin.serverPort", &port)]);
    let mut a = Client::connect(server.addr).await;
    assert_eq!(a.call(create("/ok", b"", 0)).await.err(), 0);
    assert!(
        server.log().contains("cannot serve the admin server"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn an_ensemble_reports_its_leader_voting_view_and_learner_lag() {
    let mut opts = ensemble::Options::new(3);
    // One port number: each member binds it on its own loopback address (127.0.0.N), the
    // admin server's address defaulting to the client port's.
    let port = free_port();
    opts.extra = vec![
        ("admin.enableServer".into(), "true".into()),
        ("admin.serverPort".into(), port.to_string()),
    ];
    let ens = ensemble::Ensemble::start(opts).await;
    let leader = ens.leader().expect("a leader");
    let admin_of = |i: usize| SocketAddr::new(ens.members[i].client.ip(), port);
    let mut a = Client::connect(ens.members[leader].client).await;
    for i in 0..10 {
        assert_eq!(a.call(create(&format!("/l{i}"), b"", 0)).await.err(), 0);
    }
    for i in 0..3 {
        let lead = admin_json(admin_of(i), "leader");
        assert_eq!(lead["is_leader"], i == leader, "member {i}: {lead}");
        assert_eq!(lead["leader_id"], ens.members[leader].id);
        assert_eq!(
            lead["leader_ip"],
            ens.members[leader].client.ip().to_string()
        );
        let view = admin_json(admin_of(i), "voting_view");
        let cfg = view["current_config"].as_object().unwrap();
        assert_eq!(cfg.len(), 3, "{view}");
        assert!(
            cfg["1"].as_str().unwrap().contains(":participant;"),
            "{view}"
        );
    }
    // The leader knows how far behind each follower is; with no load, nobody is.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(admin_of(leader));
        let lags: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| x.metric == "rookery_learner_lag_txns")
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(lags.len(), 2, "one per follower");
        assert!(histogram_count(&s, "proposal_latency") >= 10);
        assert!(histogram_count(&s, "election_time") >= 1);
        assert!(histogram_count(&s, "commit_propagation_latency") >= 10);
        assert_eq!(gauge(&s, "synced_followers"), 2.0);
        if lags.iter().all(|&l| l == 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "followers stay behind: {lags:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Apache ZooKeeper's AdminServer and Rookery's answer each command with the same fields, so
/// dashboards and scripts written for one read the other.
#[tokio::test]
async fn admin_fields_match_apache_zookeepers() {
    let zk_admin = free_port();
    let zk = start_zookeeper(ZkOptions {
        cfg: vec![
            ("admin.enableServer".into(), "true".into()),
            ("admin.serverAddress".into(), "127.0.0.1".into()),
            ("admin.serverPort".into(), zk_admin.to_string()),
        ],
        ..Default::default()
    });
    let zk_admin = SocketAddr::from(([127, 0, 0, 1], zk_admin));
    let (rk, rk_admin, _) = start_with_http();
    let mut clients = Vec::new();
    for addr in [zk.addr, rk.addr] {
        let mut c = Client::connect(addr).await;
        assert_eq!(c.call(create("/d", b"", 1)).await.err(), 0);
        assert_eq!(c.call(get_data("/d", true)).await.err(), 0);
        clients.push(c);
    }
    // ZooKeeper's AdminServer starts after its client port; wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(zk_admin, "/commands/ruok").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ZooKeeper's admin server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for command in [
        "ruok",
        "srvr",
        "stat",
        "conf",
        "cons",
        "wchs",
        "wchc",
        "wchp",
        "dump",
        "isro",
        "leader",
        "voting_view",
        "dirs",
        "crst",
        "srst",
        "gtmk",
    ] {
        let (z, r) = (admin_json(zk_admin, command), admin_json(rk_admin, command));
        assert_eq!(keys(&z), keys(&r), "{command}: ZooKeeper {z}\nRookery {r}");
        assert_eq!(z["command"], r["command"], "{command}");
        for nested in ["server_stats", "client_response"] {
            assert_eq!(
                keys(&z[nested]),
                keys(&r[nested]),
                "{command}.{nested}: ZooKeeper {z}\nRookery {r}"
            );
        }
        for list in ["connections"] {
            if let (Some(z0), Some(r0)) = (z[list].get(0), r[list].get(0)) {
                assert_eq!(keys(z0), keys(r0), "{command}.{list}[0]");
            }
        }
    }
    // monitor: every Rookery key is one of ZooKeeper's (but a few of Rookery's own), and the
    // keys dashboards chart are all there.
    let (z, r) = (admin_json(zk_admin, "mntr"), admin_json(rk_admin, "mntr"));
    let own: BTreeSet<String> = ["last_zxid", "now_ms"].map(String::from).into();
    let invented: Vec<_> = keys(&r)
        .difference(&keys(&z))
        .filter(|k| !own.contains(*k))
        .cloned()
        .collect();
    assert!(invented.is_empty(), "not ZooKeeper's: {invented:?}");
    for key in [
        "znode_count",
        "watch_count",
        "ephemerals_count",
        "num_alive_connections",
        "outstanding_requests",
        "avg_latency",
        "max_latency",
        "packets_received",
        "global_sessions",
        "approximate_data_size",
        "open_file_descriptor_count",
        "uptime",
        "server_state",
    ] {
        assert!(r.get(key).is_some(), "monitor lacks {key}");
        assert_eq!(
            z[key].is_number(),
            r[key].is_number(),
            "{key}: {} vs {}",
            z[key],
            r[key]
        );
    }
    drop(clients);
}
