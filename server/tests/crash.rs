//! Crash safety with real processes: concurrent writers record every acknowledged write, the
//! server is killed with SIGKILL at a random moment and restarted, and every acknowledged write
//! must still be there, with no sequence number handed out twice. Ephemerals of sessions that
//! died with the server go once their timeout passes.
//!
//! `ROOKERY_CRASH_ROUNDS` sets the number of rounds (default 8); `ROOKERY_CRASH_SEED` the seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery_proto::*;

#[derive(Default)]
struct Acked {
    /// Persistent nodes whose create was acknowledged, with their data.
    created: BTreeMap<String, Vec<u8>>,
    /// Per writer: the last acknowledged counter value, and the highest attempted.
    counters: BTreeMap<String, (u64, u64)>,
    /// Every acknowledged sequential name, across all rounds.
    sequential: BTreeSet<String>,
    duplicates: Vec<String>,
    /// Ephemerals acknowledged, by round.
    ephemerals: BTreeSet<String>,
}

fn short_session() -> ConnectRequest {
    ConnectRequest {
        timeout_ms: 1500,
        passwd: vec![0; 16],
        read_only: Some(false),
        ..Default::default()
    }
}

async fn writer(addr: std::net::SocketAddr, round: usize, id: usize, acked: Arc<Mutex<Acked>>) {
    let Some(mut c) = Client::connect_with(addr, short_session()).await else {
        return;
    };
    let counter = format!("/crash/counter-{id}");
    for n in 0u64.. {
        let path = format!("/crash/r{round}-w{id}-{n}");
        let data = format!("{round}:{id}:{n}").into_bytes();
        match c.try_call(create(&path, &data, 0)).await {
            Some(r) if r.err() == 0 => {
                acked.lock().unwrap().created.insert(path, data);
            }
            Some(r) => panic!("create {path}: {}", r.err()),
            None => return,
        }
        acked
            .lock()
            .unwrap()
            .counters
            .entry(counter.clone())
            .or_default()
            .1 = n;
        match c
            .try_call(set_data(&counter, n.to_string().as_bytes(), -1))
            .await
        {
            Some(r) if r.err() == 0 => {
                acked.lock().unwrap().counters.get_mut(&counter).unwrap().0 = n
            }
            Some(r) => panic!("setData {counter}: {}", r.err()),
            None => return,
        }
        match c.try_call(create("/crash/seq/s-", b"", 2)).await {
            Some(r) if r.err() == 0 => {
                let Some(Response::Create(cr)) = r.body else {
                    panic!("create reply")
                };
                let mut a = acked.lock().unwrap();
                if !a.sequential.insert(cr.path.clone()) {
                    a.duplicates.push(cr.path);
                }
            }
            Some(r) => panic!("sequential create: {}", r.err()),
            None => return,
        }
        let eph = format!("/crash/eph-r{round}-w{id}-{n}");
        match c.try_call(create(&eph, b"", 1)).await {
            Some(r) if r.err() == 0 => {
                acked.lock().unwrap().ephemerals.insert(eph);
            }
            Some(r) => panic!("ephemeral create: {}", r.err()),
            None => return,
        }
    }
}

async fn verify(addr: std::net::SocketAddr, acked: &Acked) {
    let mut c = Client::connect(addr).await;
    assert!(
        acked.duplicates.is_empty(),
        "sequence numbers handed out twice: {:?}",
        acked.duplicates
    );
    for (path, data) in &acked.created {
        let r = c.call(get_data(path, false)).await;
        assert_eq!(r.err(), 0, "acknowledged create of {path} was lost");
        let Some(Response::GetData(g)) = r.body else {
            panic!()
        };
        assert_eq!(g.data.as_deref(), Some(&data[..]), "{path}");
    }
    for (path, (last_acked, last_tried)) in &acked.counters {
        let r = c.call(get_data(path, false)).await;
        let Some(Response::GetData(g)) = r.body else {
            panic!("{path}: {}", r.err())
        };
        let v: u64 = String::from_utf8(g.data.unwrap()).unwrap().parse().unwrap();
        assert!(
            v >= *last_acked && v <= *last_tried,
            "{path}: value {v}, acked {last_acked}, tried {last_tried}"
        );
    }
    for path in &acked.sequential {
        assert_eq!(
            c.call(exists(path, false)).await.err(),
            0,
            "acknowledged sequential {path} was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let rounds: usize = std::env::var("ROOKERY_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("ROOKERY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("ROOKERY_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // Small segments and frequent snapshots, so crashes also land around rolls and snapshots.
    let mut server = start_rookery(&[
        ("tickTime", "500"),
        ("minSessionTimeout", "1500"),
        ("snapCount", "300"),
        ("preAllocSize", "64"),
    ]);
    let mut setup = Client::connect(server.addr).await;
    setup.call(create("/crash", b"", 0)).await;
    setup.call(create("/crash/seq", b"", 0)).await;
    for id in 0..4 {
        setup
            .call(create(&format!("/crash/counter-{id}"), b"0", 0))
            .await;
    }
    drop(setup);
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..rounds {
        let writers: Vec<_> = (0..4)
            .map(|id| tokio::spawn(writer(server.addr, round, id, acked.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..700))).await;
        server.crash_and_restart();
        for w in writers {
            tokio::time::timeout(WAIT, w)
                .await
                .expect("writer did not stop")
                .expect("writer panicked");
        }
        let seen = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            !seen.created.is_empty(),
            "round {round}: nothing was written before the crash"
        );
        verify(server.addr, &seen).await;
        *acked.lock().unwrap() = seen;
    }
    // Every session died with the server; their ephemerals go once the 1.5 s timeout passes.
    let ephemerals = acked.lock().unwrap().ephemerals.clone();
    assert!(!ephemerals.is_empty());
    let mut c = Client::connect(server.addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let Some(Response::GetChildren(kids)) = c.call(get_children("/crash", false)).await.body
        else {
            panic!()
        };
        let left: Vec<_> = kids
            .children
            .iter()
            .filter(|k| k.starts_with("eph-"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ephemerals of dead sessions remain: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!server.log().contains("panicked"));
}
