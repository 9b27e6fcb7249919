//! `demo-client`: the client of the compose demo (`examples/compose/`). It does three things at
//! once and prints what it does:
//!
//! - **traffic**: a steady stream of `GET /` to the demo service through its own sidecar's
//!   outbound listener (the `Host` header names the service), counting the answers by instance
//!   and every failure with its reason;
//! - **an election**: it joins a leader election (Curator's LeaderLatch layout) and prints each
//!   change of leader;
//! - **a fenced lock**: it takes a lock (Curator's InterProcessMutex layout) again and again; each
//!   holder checks its fencing token against the largest one the protected resource (a znode)
//!   has seen, and writes its token there with a write fenced on its lock node. A token that does
//!   not grow is counted as a regression (it must stay 0).
//!
//! Requests are counted from the first answer on (before it, the sidecars are still registering
//! and discovering). Every `--report` interval it prints one line `stats {json}` with the totals (the compose
//! test reads them from the container's log).
//!
//! Settings (flags or environment): `--zookeeper` (`DEMO_ZOOKEEPER`, default 127.0.0.1:2181),
//! `--proxy` (`DEMO_PROXY`, default 127.0.0.1:15001), `--service` (`DEMO_SERVICE`, the Host
//! header, default `demo`), `--rate` (`DEMO_RATE`, requests per second, default 50), `--id`
//! (`DEMO_ID`, default the host name), `--report` (`DEMO_REPORT_MS`, default 2000).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rookery_client::recipes::{LeaderLatch, Lock};
use rookery_client::{Client, CreateOptions, Error};

/// How long one request through the sidecar may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the lock is held, and how long the client waits before taking it again.
const HOLD: Duration = Duration::from_millis(500);
/// The znode the lock protects: it holds the largest fencing token written so far.
const RESOURCE: &str = "/demo/resource";
const LOCK: &str = "/demo/lock";
const ELECTION: &str = "/demo/election";

struct Settings {
    zookeeper: String,
    proxy: String,
    service: String,
    rate: u32,
    id: String,
    report: Duration,
}

impl Settings {
    fn parse() -> anyhow::Result<Settings> {
        let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
        let host = env("HOSTNAME", "demo-client");
        let mut s = Settings {
            zookeeper: env("DEMO_ZOOKEEPER", "127.0.0.1:2181"),
            proxy: env("DEMO_PROXY", "127.0.0.1:15001"),
            service: env("DEMO_SERVICE", "demo"),
            rate: env("DEMO_RATE", "50").parse()?,
            id: env("DEMO_ID", &host),
            report: Duration::from_millis(env("DEMO_REPORT_MS", "2000").parse()?),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--zookeeper" => s.zookeeper = value()?,
                "--proxy" => s.proxy = value()?,
                "--service" => s.service = value()?,
                "--rate" => s.rate = value()?.parse()?,
                "--id" => s.id = value()?,
                "--report" => s.report = Duration::from_millis(value()?.parse()?),
                other => anyhow::bail!(
                    "unknown argument {other}; usage: demo-client [--zookeeper HOSTS] \
                     [--proxy IP:PORT] [--service HOST] [--rate N] [--id ID] [--report MS]"
                ),
            }
        }
        anyhow::ensure!(s.rate > 0, "--rate must be at least 1");
        Ok(s)
    }
}

/// The totals printed in each `stats` line.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Answers per instance (the `x-instance` header), and failures per reason.
    by_instance: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    lock_acquisitions: AtomicU64,
    last_token: AtomicI64,
    token_regressions: AtomicU64,
    lock_errors: AtomicU64,
    leader: Mutex<String>,
}

impl Stats {
    fn fail(&self, reason: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        eprintln!("request failed: {reason}");
        *self
            .failures
            .lock()
            .expect("not poisoned")
            .entry(reason)
            .or_default() += 1;
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent.load(Ordering::Relaxed),
            "ok": self.ok.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "by_instance": *self.by_instance.lock().expect("not poisoned"),
            "failures": *self.failures.lock().expect("not poisoned"),
            "lock_acquisitions": self.lock_acquisitions.load(Ordering::Relaxed),
            "last_token": self.last_token.load(Ordering::Relaxed),
            "token_regressions": self.token_regressions.load(Ordering::Relaxed),
            "lock_errors": self.lock_errors.load(Ordering::Relaxed),
            "leader": *self.leader.lock().expect("not poisoned"),
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    rookery_examples::init_logging();
    let settings = Settings::parse()?;
    let stats = Arc::new(Stats::default());
    println!(
        "demo-client {}: {} requests/s to {} through {}, ensemble {}",
        settings.id, settings.rate, settings.service, settings.proxy, settings.zookeeper
    );
    tokio::spawn(traffic(
        settings.proxy.clone(),
        settings.service.clone(),
        settings.rate,
        stats.clone(),
    ));
    tokio::spawn(coordinate(
        settings.zookeeper.clone(),
        settings.id.clone(),
        stats.clone(),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut report = tokio::time::interval(settings.report);
    loop {
        tokio::select! {
            _ = report.tick() => println!("stats {}", stats.json()),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("stats {}", stats.json());
    Ok(())
}

/// `rate` requests per second, each on its own task, for as long as the program runs.
async fn traffic(proxy: String, service: String, rate: u32, stats: Arc<Stats>) {
    let http: HttpClient<_, Empty<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = match format!("http://{proxy}/").parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("--proxy {proxy} is not an address: {e}");
            std::process::exit(2);
        }
    };
    // Counting starts once the service answers: until the sidecars have registered and found
    // an instance, the proxy answers 503 no-endpoints, which is not a failure of the system.
    println!("waiting for {service} to answer through {proxy}");
    loop {
        let request = get(&uri, &service);
        match tokio::time::timeout(REQUEST_TIMEOUT, http.request(request)).await {
            Ok(Ok(r)) if r.status().is_success() => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    println!("{service} answers: sending {rate} requests/s");
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let request = get(&uri, &service);
        let (http, stats) = (http.clone(), stats.clone());
        stats.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let response = http.request(request).await?;
                let status = response.status();
                let instance = response
                    .headers()
                    .get("x-instance")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned();
                let reason = response
                    .headers()
                    .get("x-rookery-error")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // The body too: a request has succeeded only once its answer is complete.
                response.into_body().collect().await?;
                Ok::<_, anyhow::Error>((status, instance, reason))
            })
            .await;
            match answer {
                Ok(Ok((status, instance, _))) if status.is_success() => {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    *stats
                        .by_instance
                        .lock()
                        .expect("not poisoned")
                        .entry(instance)
                        .or_default() += 1;
                }
                Ok(Ok((status, _, reason))) => {
                    stats.fail(format!("{status} {}", reason.unwrap_or_default()))
                }
                Ok(Err(e)) => stats.fail(format!("{e:#}")),
                Err(_) => stats.fail(format!("no answer within {REQUEST_TIMEOUT:?}")),
            }
        });
    }
}

/// `GET /` of the service named by the Host header.
fn get(uri: &hyper::Uri, service: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(uri.clone())
        .header(hyper::header::HOST, service)
        .body(Empty::new())
        .expect("a valid request")
}

/// The election and the fenced lock, on one session (a new one if it is lost).
async fn coordinate(zookeeper: String, id: String, stats: Arc<Stats>) {
    loop {
        let client = match Client::builder(&zookeeper)
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot connect to {zookeeper}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        println!(
            "connected to the ensemble (session {:#x})",
            client.session_id()
        );
        let latch = LeaderLatch::start(&client, ELECTION, &id);
        tokio::select! {
            e = lock_loop(&client, &stats) => eprintln!("the lock loop ended: {e}"),
            () = watch_leader(&latch, &stats) => {}
        }
        let _ = latch.close().await;
        let _ = client.close().await;
    }
}

/// Prints each change of leader (polled: a demo need not be prompt).
async fn watch_leader(latch: &LeaderLatch, stats: &Stats) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let leader = match latch.leader().await {
            Ok(Some(p)) => p.id,
            Ok(None) => "(none)".to_owned(),
            Err(_) => continue, // a failover: asked again at the next tick
        };
        let mut known = stats.leader.lock().expect("not poisoned");
        if *known != leader {
            println!("election: the leader is now {leader}");
            *known = leader;
        }
    }
}

/// Takes the lock again and again; returns when the session is gone for good.
async fn lock_loop(client: &Client, stats: &Stats) -> Error {
    for path in ["/demo", RESOURCE] {
        match client
            .create(path, b"0", &CreateOptions::persistent())
            .await
        {
            Ok(_) | Err(Error::NodeExists) => {}
            Err(e) => return e,
        }
    }
    let lock = Lock::new(client, LOCK);
    loop {
        match hold_once(client, &lock, stats).await {
            Ok(()) => {}
            Err(e @ (Error::SessionExpired | Error::ClientClosed)) => return e,
            Err(e) => {
                stats.lock_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("lock: {e}; trying again");
            }
        }
        tokio::time::sleep(HOLD).await;
    }
}

/// One turn with the lock: check the token against the resource's, write it there (fenced on
/// the lock node), hold a while, release.
async fn hold_once(client: &Client, lock: &Lock, stats: &Stats) -> Result<(), Error> {
    let mut guard = lock.acquire().await?;
    let token = guard.fencing_token();
    stats.lock_acquisitions.fetch_add(1, Ordering::Relaxed);
    let (data, _) = client.get_data(RESOURCE).await?;
    let seen: i64 = String::from_utf8_lossy(&data).parse().unwrap_or(0);
    if token <= seen {
        stats.token_regressions.fetch_add(1, Ordering::Relaxed);
        println!("lock: REGRESSION: token {token:#x} is not above {seen:#x}");
    } else {
        guard
            .multi()
            .set_data(RESOURCE, token.to_string().as_bytes(), None)
            .commit()
            .await?;
        stats.last_token.store(token, Ordering::Relaxed);
        println!("lock: held with fencing token {token:#x} (the resource had {seen:#x})");
    }
    tokio::select! {
        loss = guard.lost() => {
            println!("lock: lost while held ({loss:?})");
            return Ok(());
        }
        () = tokio::time::sleep(HOLD) => {}
    }
    guard.release().await
}
