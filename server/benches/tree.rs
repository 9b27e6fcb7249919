//! Data tree micro-benchmarks: applying committed creates and setData transactions, and reads
//! (`get` plus the stat a reply carries), on a tree that already holds 100,000 nodes.
//!
//! Run with `cargo bench -p rookery-server --bench tree`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rookery_proto::Acl;
use rookery_server::tree::DataTree;
use rookery_server::txn::{Txn, TxnHeader};

/// Nodes in the tree before measuring: 100 parents of 1,000 children, 100-byte values.
const PARENTS: u64 = 100;
const CHILDREN: u64 = 1000;

struct Bench {
    tree: DataTree,
    zxid: i64,
}

impl Bench {
    fn new() -> Self {
        let mut b = Bench {
            tree: DataTree::new(),
            zxid: 0,
        };
        b.apply(&create("/bench"));
        b.apply(&create("/bench/new"));
        for p in 0..PARENTS {
            b.apply(&create(&format!("/bench/p{p}")));
            for c in 0..CHILDREN {
                b.apply(&create(&format!("/bench/p{p}/n{c}")));
            }
        }
        b
    }

    fn header(&mut self) -> TxnHeader {
        self.zxid += 1;
        TxnHeader {
            session_id: 1,
            cxid: 1,
            zxid: self.zxid,
            time_ms: 1_764_000_000_000,
        }
    }

    fn apply(&mut self, txn: &Txn) {
        let hdr = self.header();
        let mut events = Vec::new();
        let applied = self.tree.apply(&hdr, txn, &mut events);
        assert_eq!(applied.err, 0, "{txn:?}");
    }
}

fn create(path: &str) -> Txn {
    Txn::Create {
        path: path.to_owned(),
        data: Some(vec![b'x'; 100]),
        acl: Acl::open_unsafe(),
        ephemeral_owner: 0,
        parent_cversion: 1,
    }
}

/// Spreads `i` over the existing nodes (a fixed stride, so every parent is hit).
fn existing(i: u64) -> String {
    let k = i.wrapping_mul(7919) % (PARENTS * CHILDREN);
    format!("/bench/p{}/n{}", k / CHILDREN, k % CHILDREN)
}

fn tree(c: &mut Criterion) {
    let mut b = Bench::new();
    let mut g = c.benchmark_group("tree");

    // Creates of new children of one parent. The transactions are built before the clock
    // starts, and the nodes are deleted after it stops, so the tree stays at its size.
    g.bench_function("apply/create", |bench| {
        bench.iter_custom(|iters| {
            let txns: Vec<(TxnHeader, Txn)> = (0..iters)
                .map(|i| (b.header(), create(&format!("/bench/new/n{i}"))))
                .collect();
            let mut events = Vec::new();
            let start = Instant::now();
            for (hdr, txn) in &txns {
                black_box(b.tree.apply(hdr, txn, &mut events));
            }
            let took = start.elapsed();
            for i in 0..iters {
                b.apply(&Txn::Delete {
                    path: format!("/bench/new/n{i}"),
                });
            }
            took
        })
    });

    g.bench_function("apply/setData", |bench| {
        bench.iter_custom(|iters| {
            let txns: Vec<(TxnHeader, Txn)> = (0..iters)
                .map(|i| {
                    (
                        b.header(),
                        Txn::SetData {
                            path: existing(i),
                            data: Some(vec![b'y'; 100]),
                            version: i as i32 + 1,
                        },
                    )
                })
                .collect();
            let mut events = Vec::new();
            let start = Instant::now();
            for (hdr, txn) in &txns {
                black_box(b.tree.apply(hdr, txn, &mut events));
            }
            start.elapsed()
        })
    });

    let paths: Vec<String> = (0..4096).map(existing).collect();
    g.bench_function("get+stat", |bench| {
        let mut i = 0;
        bench.iter(|| {
            i = (i + 1) % paths.len();
            let node = b.tree.get(black_box(&paths[i])).expect("the node exists");
            (node.stat(), node.data.as_ref().map_or(0, Vec::len))
        })
    });

    g.bench_function("image", |bench| bench.iter(|| black_box(b.tree.image())));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = tree
}
criterion_main!(benches);
