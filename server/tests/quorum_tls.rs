//! Mutual TLS between ensemble members (`sslQuorum=true`), and the processes it keeps out
//! (reliability-anchors SEC-1, SEC-2, SEC-8): a rogue that speaks the peer protocol in the
//! clear, a rogue with a certificate from the members' own CA that is not valid for the member
//! it claims to be, and a rogue with a certificate from another CA. Each is refused before
//! anything it sends is read; the ensemble keeps its leader and its data.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ensemble::{Ensemble, Options};
use rookery_client::CreateOptions;
use rookery_testkit::pki::{Ca, Leaf, Usage};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_secs(30);

use common::ensemble_client as client;

/// Ensemble options with `sslQuorum`, each member holding a certificate from the CA `ca_of`
/// picks for it, valid for the member's own address only, and trusting that CA.
fn tls_options(ca_of: impl Fn(u64) -> Arc<Ca> + Send + Sync + 'static) -> Options {
    let mut opts = Options::new(3);
    opts.extra = vec![("sslQuorum".into(), "true".into())];
    opts.member_extra = Some(Arc::new(move |m| {
        let ca = ca_of(m.id);
        let ip = m.ip.to_string();
        let leaf = ca.leaf(&format!("server.{}", m.id), &[&ip], Usage::Server);
        let key_store = leaf.write_key_store(&m.dir.join("quorum.pem"));
        let trust_store = ca.write_trust_store(&m.dir.join("ca.pem"));
        let path = |p: std::path::PathBuf| p.display().to_string();
        vec![
            ("ssl.quorum.keyStore.location".into(), path(key_store)),
            ("ssl.quorum.trustStore.location".into(), path(trust_store)),
        ]
    }));
    opts
}

/// A 3-member ensemble over mutual TLS, settled.
async fn tls_ensemble(ca: Arc<Ca>) -> Ensemble {
    let ens = Ensemble::start(tls_options(move |_| ca.clone())).await;
    ens.wait_all_serving(SETTLE).await;
    ens
}

/// The peer hello: `"RKQP" version:u8 sender:u64`, then a frame of junk.
fn hello(claimed_id: u64) -> Vec<u8> {
    let mut out = b"RKQP\x02".to_vec();
    out.extend_from_slice(&claimed_id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0]);
    out
}

/// Whether the other side closes the connection within a few seconds (the refusal).
async fn closed_soon<S: AsyncReadExt + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn tls_connector(ca_pem: &str, leaf: &Leaf) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(rookery_testkit::pki::client_config(ca_pem, leaf)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_over_mutual_tls_and_refuse_rogues() {
    let ca = Arc::new(Ca::new("quorum CA"));
    let ens = tls_ensemble(ca.clone()).await;
    let leader = ens.leader().expect("a leader");
    let target = (leader + 1) % 3;
    let m = &ens.members[target];

    // Replication works over TLS: a write through one member is read on another.
    let a = client(&ens.connect_string(&[leader])).await;
    a.create("/over-tls", b"v1", &CreateOptions::default())
        .await
        .unwrap();
    let b = client(&ens.connect_string(&[target])).await;
    b.sync("/over-tls").await.unwrap();
    assert_eq!(b.get_data("/over-tls").await.unwrap().0, b"v1");
    let zxid_before = ens.members[leader].zxid().unwrap();

    // 1. The peer protocol in the clear, claiming to be the leader, on both peer ports.
    for port in [m.quorum, m.election] {
        let mut s = TcpStream::connect(port).await.unwrap();
        let _ = s.write_all(&hello(ens.members[leader].id)).await;
        assert!(closed_soon(&mut s).await, "a plain peer on {port} was kept");
    }

    // 2. A certificate from the members' own CA, valid for an address no member has, claiming
    //    the leader's id.
    let rogue = ca.leaf("rogue", &["127.0.0.99"], Usage::Server);
    let connector = tls_connector(&ca.pem, &rogue);
    let name = ServerName::try_from(m.ip.to_string()).unwrap();
    let tcp = TcpStream::connect(m.quorum).await.unwrap();
    let mut s = connector.connect(name.clone(), tcp).await.unwrap();
    let _ = s.write_all(&hello(ens.members[leader].id)).await;
    let _ = s.flush().await;
    assert!(closed_soon(&mut s).await, "a member impostor was kept");

    // 3. A certificate from another CA: the handshake itself fails.
    let other = Ca::new("another CA");
    let stranger = other.leaf("stranger", &[&m.ip.to_string()], Usage::Server);
    let connector = tls_connector(&ca.pem, &stranger);
    let tcp = TcpStream::connect(m.election).await.unwrap();
    match connector.connect(name, tcp).await {
        Err(_) => {}
        Ok(mut s) => {
            // TLS 1.3 reports a refused client certificate only on the first read.
            let _ = s.write_all(&hello(ens.members[leader].id)).await;
            assert!(
                closed_soon(&mut s).await,
                "a stranger's certificate was accepted"
            );
        }
    }

    let log = m.log();
    assert!(
        log.contains("is not valid for its host"),
        "no log line for the impostor:\n{log}"
    );
    assert!(
        log.contains("TLS handshake failed"),
        "no log line for the plain peer or the stranger:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    // Nothing changed: the same leader, and the ensemble still commits.
    assert_eq!(ens.leader(), Some(leader), "the rogues changed the leader");
    a.set_data("/over-tls", b"v2", None).await.unwrap();
    b.sync("/over-tls").await.unwrap();
    assert_eq!(b.get_data("/over-tls").await.unwrap().0, b"v2");
    let zxid_after = ens.members[leader].zxid().unwrap();
    assert_eq!(
        zxid_after >> 32,
        zxid_before >> 32,
        "the epoch changed: an election happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_quorum_certificate_cannot_join() {
    // Member 3 trusts and presents certificates of another CA: members 1 and 2 form the quorum
    // without it, and it never serves.
    let ca = Arc::new(Ca::new("quorum CA"));
    let other = Arc::new(Ca::new("another CA"));
    let opts = tls_options(move |id| if id == 3 { other.clone() } else { ca.clone() });
    let ens = Ensemble::start_unsettled(opts).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let modes: Vec<_> = ens.members.iter().map(|m| m.mode()).collect();
        let leaders = modes
            .iter()
            .filter(|m| m.as_deref() == Some("leader"))
            .count();
        let followers = modes
            .iter()
            .filter(|m| m.as_deref() == Some("follower"))
            .count();
        if leaders == 1 && followers == 1 {
            assert_eq!(modes[2], None, "the outsider serves: {modes:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members 1 and 2 did not form a quorum: {modes:?}\n{}",
            ens.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the outsider a few election rounds: it must stay out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ens.members[2].mode(), None, "{}", ens.logs());
}
