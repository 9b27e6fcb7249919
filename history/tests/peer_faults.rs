//! N3, one fault at a time, with the nemesis's own cuts ([`nemesis::stall`],
//! [`nemesis::blackhole`]): a leader whose incoming bytes nobody
//! reads any more (`stall-leader`: the proxies stop reading what is sent to it, the senders'
//! TCP windows close; nothing is lost or closed) and a leader in a blackhole
//! (`blackhole-leader`: everything to and from it swallowed, closes and resets included) are
//! each replaced by the other two members, which go on acknowledging writes; after the heal
//! the whole ensemble serves again and the old leader has the write made without it.
//!
//! Needs the `rookery` binary: `cargo build -p rookery` first.

use std::time::{Duration, Instant};

use rookery_client::{Client, CreateMode, CreateOptions};
use rookery_history::nemesis;
use rookery_testkit::ensemble::{Ensemble, Options};

/// Cuts the leader with `cut`, waits for one of the others to lead and write, heals, and
/// checks that the old leader catches up.
async fn a_cut_leader_is_replaced(cut: fn(&Ensemble, usize)) {
    let mut opts = Options::new(3);
    opts.proxied = true;
    // tickTime 200 ms, syncLimit 5 ticks: a leader that hears no quorum gives up after 1 s.
    let ens = Ensemble::start(opts).await;
    let old = ens.leader().expect("a leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    cut(&ens, old);

    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        let leading = others
            .iter()
            .copied()
            .find(|&i| ens.members[i].mode().as_deref() == Some("leader"));
        if let Some(l) = leading {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the others elected no leader while member {} was cut off\n{}",
            old + 1,
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = Client::builder(&ens.connect_string(&[new]))
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("a session on the new leader");
    tokio::time::timeout(
        Duration::from_secs(10),
        c.create("/during", b"x", &CreateOptions::new(CreateMode::Persistent)),
    )
    .await
    .expect("the write is answered")
    .expect("the write is acknowledged without the old leader");
    let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;

    ens.heal();
    assert!(
        nemesis::wait_serving(&ens, Duration::from_secs(30))
            .await
            .is_some(),
        "the ensemble did not serve again after the heal\n{}",
        ens.logs()
    );
    let o = Client::builder(&ens.connect_string(&[old]))
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("a session on the old leader");
    let (data, _) = tokio::time::timeout(
        Duration::from_secs(10),
        o.linearizable("/during", |c| c.get_data("/during")),
    )
    .await
    .expect("the read is answered")
    .expect("the old leader has the write");
    assert_eq!(data, b"x");
    let _ = tokio::time::timeout(Duration::from_secs(2), o.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_reads_nothing_is_replaced_and_catches_up() {
    a_cut_leader_is_replaced(nemesis::stall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_leader_is_replaced_and_catches_up() {
    a_cut_leader_is_replaced(nemesis::blackhole).await;
}
