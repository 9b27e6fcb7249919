//! N3, one fault at a time, with the nemesis's own cuts ([`nemesis::stall`],
//! [`nemesis::blackhole`]): a leader whose incoming bytes nobody
//! reads any more (`stall-leader`: the proxies stop reading what is sent to it, the senders'
//! TCP windows close; nothing is lost or closed) and a leader in a blackhole
//! (`blackhole-leader`: everything to and from it swallowed, closes and resets included) are
//! each replaced by the other two members, which go on acknowledging writes; after the heal
//! the whole ensemble serves again and the old leader has the write made without it.
//!
//! N1 on five members, with the nemesis's [`nemesis::majorities_ring`] and
//! [`nemesis::cut_off`]: writes go on under a majorities ring, and a minority cut off refuses
//! writes while the majority elects and acknowledges them.
//!
//! N4 with [`nemesis::chaos`]: damaged and repeated bytes on every peer link never reach a
//! replica.
//!
//! Needs the `rookery` binary: `cargo build -p rookery` first.

use std::time::{Duration, Instant};

use rookery_client::{Client, CreateMode, CreateOptions};
use rookery_history::nemesis;
use rookery_testkit::ensemble::{Ensemble, Options};

/// Heals every link and waits until the whole ensemble serves again.
async fn heal_and_serve(ens: &Ensemble) {
    ens.heal();
    assert!(
        nemesis::wait_serving(ens, Duration::from_secs(30))
            .await
            .is_some(),
        "the ensemble did not serve again after the heal\n{}",
        ens.logs()
    );
}

/// A session on the members `which`, with a 4 s timeout.
async fn session_on(ens: &Ensemble, which: &[usize]) -> rookery_client::Result<Client> {
    Client::builder(&ens.connect_string(which))
        .session_timeout(Duration::from_secs(4))
        .connect()
        .await
}

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
    let c = session_on(&ens, &[new])
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

    heal_and_serve(&ens).await;
    let o = session_on(&ens, &[old])
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

/// Creates `path` through the first member of `which` that acknowledges it, trying them in turn
/// for up to 30 s: the members that still form a quorum take it.
async fn create_through(ens: &Ensemble, which: &[usize], path: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for &i in which {
            let attempt = async {
                let c = session_on(ens, &[i]).await?;
                let made = c
                    .create(path, b"n1", &CreateOptions::new(CreateMode::Persistent))
                    .await;
                Ok::<_, rookery_client::Error>((c, made))
            };
            if let Ok(Ok((c, made))) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
                // Exists: an earlier attempt's write went through, its reply lost.
                if matches!(made, Ok(_) | Err(rookery_client::Error::NodeExists)) {
                    return i;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no member of {which:?} acknowledged {path}\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Heals, then: every member serves again, converges, and holds `path`.
async fn every_member_has(ens: &Ensemble, path: &str) {
    heal_and_serve(ens).await;
    ens.wait_converged(Duration::from_secs(30)).await;
    for i in 0..ens.members.len() {
        let c = session_on(ens, &[i])
            .await
            .unwrap_or_else(|e| panic!("a session on member {}: {e}", i + 1));
        let (data, _) = tokio::time::timeout(Duration::from_secs(10), c.get_data(path))
            .await
            .expect("the read is answered")
            .unwrap_or_else(|e| panic!("member {} lacks {path}: {e}", i + 1));
        assert_eq!(data, b"n1");
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
}

/// N1 `majorities-ring` on five members: each member keeps only its two ring neighbours, so
/// each sees a majority but no two the same one. The ensemble goes on acknowledging writes
/// (the leader and its two neighbours are a quorum), and after the heal every member has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_on_a_majorities_ring_still_acknowledge_writes() {
    let mut opts = Options::new(5);
    opts.proxied = true;
    let ens = Ensemble::start(opts).await;
    let ring: Vec<usize> = (0..5).collect();
    nemesis::majorities_ring(&ens, &ring);
    // Held past syncLimit (1 s), so members that lost the leader have looked for another.
    tokio::time::sleep(Duration::from_secs(2)).await;
    create_through(&ens, &ring, "/ring").await;
    every_member_has(&ens, "/ring").await;
}

/// N1 `partition-minority` on five members, the minority the leader and one follower: the
/// three others elect and acknowledge writes; the minority refuses them (its leader cannot
/// reach a quorum); after the heal every member has the majority's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_refuses_writes_while_the_majority_elects_and_acknowledges() {
    let mut opts = Options::new(5);
    opts.proxied = true;
    let ens = Ensemble::start(opts).await;
    let leader = ens.leader().expect("a leader");
    let other = (leader + 1) % 5;
    let minority = [leader, other];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    nemesis::cut_off(&ens, &minority);

    for &i in &minority {
        let attempt = async {
            let c = session_on(&ens, &[i]).await?;
            c.create(
                &format!("/minority-{i}"),
                b"x",
                &CreateOptions::new(CreateMode::Persistent),
            )
            .await
        };
        let outcome = tokio::time::timeout(Duration::from_secs(6), attempt).await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "member {} of the minority acknowledged a write\n{}",
            i + 1,
            ens.logs()
        );
    }
    create_through(&ens, &majority, "/majority").await;
    every_member_has(&ens, "/majority").await;
}

/// The data of node `i` of the N4 test: 2 KiB that tell which node they belong to, so a
/// damaged byte anywhere in them shows.
fn chaos_data(i: usize) -> Vec<u8> {
    (0..2048).map(|k| ((i * 131 + k * 7) % 251) as u8).collect()
}

/// N4, packet chaos on every peer link (a flipped byte in every 24th chunk each way, every
/// 40th chunk written twice): frames carry 2 KiB values, so most damage lands in data. The
/// peer protocol's CRC32C must refuse every damaged frame (closing its connection), so that
/// after the heal every member holds exactly the bytes each acknowledged create wrote, and
/// nothing else under the parent. Without the checksum a follower applied damaged proposals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_peer_bytes_never_reach_a_replica() {
    let mut opts = Options::new(3);
    opts.proxied = true;
    let ens = Ensemble::start(opts).await;
    for i in 0..3 {
        nemesis::chaos(&ens, i, 24, 40, Duration::ZERO);
    }
    let all = [0, 1, 2];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut acked = 0;
    let mut i = 0;
    let mut client: Option<Client> = None;
    // Bounded by the node count and the deadline; sessions come and go with the chaos.
    while i < 120 && Instant::now() < deadline {
        let c = match client.take() {
            Some(c) => c,
            None => match tokio::time::timeout(
                Duration::from_secs(5),
                Client::builder(&ens.connect_string(&all))
                    .session_timeout(Duration::from_secs(6))
                    .connect(),
            )
            .await
            {
                Ok(Ok(c)) => c,
                _ => continue,
            },
        };
        if i == 0 {
            let _ = c
                .create("/n4", b"", &CreateOptions::new(CreateMode::Persistent))
                .await;
        }
        let made = tokio::time::timeout(
            Duration::from_secs(5),
            c.create(
                &format!("/n4/{i:04}"),
                &chaos_data(i),
                &CreateOptions::new(CreateMode::Persistent),
            ),
        )
        .await;
        match made {
            Ok(Ok(_)) => {
                acked += 1;
                client = Some(c);
            }
            Ok(Err(rookery_client::Error::NodeExists)) => client = Some(c),
            // Lost with its connection, or refused: the node may or may not exist; its data,
            // if it does, is still known.
            _ => {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
            }
        }
        i += 1;
    }
    if let Some(c) = client {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
    // Progress under chaos depends on the machine's load (13 creates of 120 on a loaded CI
    // machine, over 60 on a quiet one); what matters is that damage met the proposals, which
    // the 2 KiB values make likely (with the checksum check disabled, each of two runs failed).
    assert!(
        acked >= 8,
        "only {acked} creates acknowledged under chaos\n{}",
        ens.logs()
    );
    heal_and_serve(&ens).await;
    ens.wait_converged(Duration::from_secs(30)).await;
    for m in 0..3 {
        let c = session_on(&ens, &[m])
            .await
            .unwrap_or_else(|e| panic!("a session on member {}: {e}", m + 1));
        let kids = tokio::time::timeout(Duration::from_secs(10), c.get_children("/n4"))
            .await
            .expect("the listing is answered")
            .expect("/n4 exists");
        assert!(
            kids.len() >= acked,
            "member {}: {} children",
            m + 1,
            kids.len()
        );
        for k in &kids {
            let n: usize = k
                .parse()
                .unwrap_or_else(|_| panic!("member {}: a child named {k:?}", m + 1));
            let (data, _) =
                tokio::time::timeout(Duration::from_secs(10), c.get_data(&format!("/n4/{k}")))
                    .await
                    .expect("the read is answered")
                    .expect("a listed child exists");
            assert!(
                data == chaos_data(n),
                "member {} holds damaged data in /n4/{k}\n{}",
                m + 1,
                ens.logs()
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
}
