//! TLS against Apache ZooKeeper's `secureClientPort` (Rookery does not serve TLS yet).
//!
//! The test makes a CA, a server certificate and a client certificate with rcgen, hands them to
//! ZooKeeper as PEM key and trust stores (`ssl.keyStore.type=PEM`, supported since 3.6; the
//! Netty connection factory serves the secure port), and requires client certificates
//! (`ssl.clientAuth=need`, ZooKeeper's default).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rookery_client::{Client, CreateOptions, Error, EventType, SessionState, TlsOptions};

#[derive(Clone)]
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
    client_pem: String,
    client_key_pem: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rookery test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) = leaf("zookeeper", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_pem, client_key_pem) = leaf("rookery-client", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca_pem: ca_cert.pem(),
        server_pem,
        server_key_pem,
        client_pem,
        client_key_pem,
    }
}

fn start_tls_zookeeper(pki: &Pki, dir: &Path) -> (Proc, u16) {
    // ZooKeeper's PEM key store: the private key (PKCS#8) and the certificate in one file.
    let keystore = dir.join("server.pem");
    std::fs::write(
        &keystore,
        format!("{}{}", pki.server_key_pem, pki.server_pem),
    )
    .unwrap();
    let truststore = dir.join("ca.pem");
    std::fs::write(&truststore, &pki.ca_pem).unwrap();
    let secure_port = free_port();
    let prop = |k: &str, v: &str| (k.to_string(), v.to_string());
    let proc = start_zookeeper(ZkOptions {
        dir: Some(dir),
        cfg: vec![prop("secureClientPort", &secure_port.to_string())],
        sysprops: vec![
            prop(
                "zookeeper.serverCnxnFactory",
                "org.apache.zookeeper.server.NettyServerCnxnFactory",
            ),
            prop(
                "zookeeper.ssl.keyStore.location",
                &keystore.display().to_string(),
            ),
            prop("zookeeper.ssl.keyStore.type", "PEM"),
            prop(
                "zookeeper.ssl.trustStore.location",
                &truststore.display().to_string(),
            ),
            prop("zookeeper.ssl.trustStore.type", "PEM"),
            prop("zookeeper.ssl.clientAuth", "need"),
            prop(
                "zookeeper.authProvider.x509",
                "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
            ),
        ],
        ..Default::default()
    });
    (proc, secure_port)
}

#[tokio::test]
async fn tls_to_zookeeper_secure_port() {
    if !selected().contains(&Kind::ZooKeeper) {
        eprintln!("skipped: TLS is tested against Apache ZooKeeper only");
        return;
    }
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (zk, secure_port) = {
        let pki = pki.clone();
        tokio::task::spawn_blocking(move || start_tls_zookeeper(&pki, &d))
            .await
            .unwrap()
    };
    let secure = format!("127.0.0.1:{secure_port}");
    let tls = TlsOptions::new()
        .with_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .with_client_cert_pem(pki.client_pem.as_bytes(), pki.client_key_pem.as_bytes())
        .unwrap();

    // The secure port may open a little after the plain one.
    let mut client = None;
    for _ in 0..20 {
        match Client::builder(&secure)
            .tls(tls.clone())
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) => {
                eprintln!("TLS connect: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let c = client.unwrap_or_else(|| panic!("no TLS session; ZooKeeper log:\n{}", zk.log()));
    assert_eq!(c.state(), SessionState::Connected);
    c.create("/tls", b"secret", &CreateOptions::persistent())
        .await
        .unwrap();
    let (data, _, watch) = c.get_data_watched("/tls").await.unwrap();
    assert_eq!(data, b"secret");
    let plain = connect(zk.addr).await;
    plain.set_data("/tls", b"changed", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    // The x509 identity shows up on the TLS connection.
    let ids = c.who_am_i().await.unwrap();
    assert!(ids.iter().any(|i| i.auth_scheme == "x509"), "{ids:?}");
    c.close().await.unwrap();
    plain.close().await.unwrap();

    // Without a client certificate, or trusting another CA, there is no session.
    let no_cert = Client::builder(&secure)
        .tls(
            TlsOptions::new()
                .with_ca_pem(pki.ca_pem.as_bytes())
                .unwrap(),
        )
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(matches!(no_cert, Err(Error::Timeout(_))), "{no_cert:?}");
    let other_ca = make_pki();
    let wrong_ca = Client::builder(&secure)
        .tls(
            TlsOptions::new()
                .with_ca_pem(other_ca.ca_pem.as_bytes())
                .unwrap()
                .with_client_cert_pem(pki.client_pem.as_bytes(), pki.client_key_pem.as_bytes())
                .unwrap(),
        )
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(matches!(wrong_ca, Err(Error::Timeout(_))), "{wrong_ca:?}");
    // Nor does plain TCP to the secure port give one.
    let plaintext = Client::builder(&secure)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(plaintext.is_err());
    drop(zk);
}
