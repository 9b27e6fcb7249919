//! S1: a session the ensemble has closed is never resumed, not even by a member that has not
//! heard of the close yet. Found by the history checker (`ephemeral/resurrected`, seed 2027 of
//! a 120 s run): the ensemble refused to resume a closed session, then a member that could not
//! hear the leader (a one-way cut) accepted it a few milliseconds later and served its stale
//! state, the session's ephemeral node included.
//!
//! The member accepted a session it found in its own session table at once and asked the leader
//! only about sessions it did not know. Now, as ZooKeeper's learner does
//! (`LearnerZooKeeperServer.revalidateSession`), it catches up with its leader before it looks
//! at every resumed session. Needs the `rookery` binary: `cargo build -p rookery` first.

use std::time::Duration;

use rookery_client::{Client, CreateMode, CreateOptions, Error};
use rookery_testkit::ensemble::{Ensemble, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_close_of_a_session_does_not_resume_it() {
    let mut opts = Options::new(3);
    // syncLimit (5 ticks) of 5 s: the cut-off member keeps its role well past the test.
    opts.tick_ms = 1_000;
    opts.proxied = true;
    let ens = Ensemble::start(opts).await;
    let leader = ens.leader().expect("a leader");
    let deaf = (0..3).find(|&i| i != leader).expect("a follower");
    let others: Vec<usize> = (0..3).filter(|&i| i != deaf).collect();

    let c = Client::builder(&ens.connect_string(&others))
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
        .expect("a session on the others");
    c.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .expect("an ephemeral");
    let (id, password) = (c.session_id(), c.session_password());
    // Every member knows the session and its node...
    ens.wait_converged(Duration::from_secs(10)).await;
    // ... then the follower hears nothing from the others; what it sends still arrives.
    for &j in &others {
        for p in ens.links(j, deaf) {
            p.hold_requests();
        }
        for p in ens.links(deaf, j) {
            p.hold_replies();
        }
    }
    c.close().await.expect("closed");

    // The ensemble has closed it: the others refuse to resume it.
    let refused = Client::builder(&ens.connect_string(&others))
        .session_timeout(Duration::from_secs(4))
        .client_expiry_factor(100.0)
        .resume_session(id, password.clone())
        .connect()
        .await;
    assert!(
        matches!(refused, Err(Error::SessionExpired)),
        "{:?}",
        refused.map(|c| c.session_id())
    );

    // The member behind the close must not resume it either (refuse, or fail to answer).
    let stale = Client::builder(&ens.connect_string(&[deaf]))
        .session_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(2))
        .client_expiry_factor(100.0)
        .resume_session(id, password)
        .connect()
        .await;
    if let Ok(s) = stale {
        let node = s.exists("/e").await;
        panic!(
            "member {} resumed the closed session {id:#x}; /e there: {node:?}",
            deaf + 1
        );
    }
    ens.heal();
}
