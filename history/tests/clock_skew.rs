//! C1's means: a `rookery` member started under libfaketime (`Options::member_env`, as the
//! history harness's `--clock-skew` does) really runs on the faked clocks. Its wall clock is
//! ahead (a node's ctime, stamped by the leader), and its timers run on the faked monotonic
//! clock: at twice the speed, a session of 4 s expires about 2 s after its last request, which
//! no true clock allows.
//!
//! Skipped (with a note) when libfaketime is not installed (`apt-get install faketime`; the
//! CI script installs it). Needs the `rookery` binary: `cargo build -p rookery` first.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rookery_client::{Client, CreateMode, CreateOptions};
use rookery_testkit::ensemble::{Ensemble, Options};
use rookery_testkit::faketime;
use rookery_testkit::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_under_libfaketime_run_on_the_faked_wall_and_monotonic_clocks() {
    let Some(lib) = faketime::library() else {
        eprintln!("libfaketime is not installed (apt-get install faketime): skipped");
        return;
    };
    let bin = rookery_testkit::rookery_bin();
    assert!(
        faketime::dynamically_linked(&bin).unwrap(),
        "{} is not dynamically linked: LD_PRELOAD cannot reach it",
        bin.display()
    );
    let mut opts = Options::new(3);
    // Every member an hour ahead and twice as fast, so whichever leads expires sessions.
    let env = faketime::env(&lib, "+1h x2");
    opts.member_env = Some(Arc::new(move |_| env.clone()));
    let ens = Ensemble::start(opts).await;
    for m in &ens.members {
        let pid = m.child.as_ref().expect("running").id();
        assert!(
            faketime::loaded_in(pid),
            "member {} without libfaketime",
            m.id
        );
    }

    // A session through a proxy of its own, so that it can be cut off without a close.
    let proxy = Proxy::start(ens.members[0].client).await;
    let c = Client::builder(&proxy.addr.to_string())
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("a session");
    assert_eq!(c.session_timeout(), Some(Duration::from_secs(4)));
    c.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .expect("an ephemeral");
    // The session's last request: the server has heard from it no earlier than this.
    let last_request = Instant::now();
    let (_, stat) = c.get_data("/e").await.expect("read back");
    proxy.blackhole();
    drop(c);

    let real_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ahead = Duration::from_millis(stat.ctime.abs_diff(real_ms));
    assert!(
        ahead > Duration::from_secs(3500) && ahead < Duration::from_secs(3700),
        "ctime {} is {ahead:?} away from the real clock, not an hour ahead",
        stat.ctime
    );

    let observer = Client::builder(&ens.connect_string(&[0, 1, 2]))
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("an observer");
    let mut gone = None;
    for _ in 0..400 {
        if observer.exists("/e").await.expect("exists").is_none() {
            gone = Some(last_request.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let gone = gone.expect("the cut-off session expired within 10 s");
    assert!(
        gone < Duration::from_millis(3_500),
        "a 4 s session expired {gone:?} after its last request: the faked clock did not drive \
         the server's timers"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), observer.close()).await;
}
