//! The `rookery` binary: configuration errors, start-up and clean shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn an_invalid_value_stops_start_up_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (line, key) in [
        ("clientPort=abc", "clientPort"),
        ("tickTime=-5", "tickTime"),
        ("maxClientCnxns=lots", "maxClientCnxns"),
        (
            "4lw.commands.whitelist=ruok,bogus",
            "4lw.commands.whitelist",
        ),
    ] {
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(&cfg, format!("dataDir={}\n{line}\n", dir.path().display())).unwrap();
        let out = Command::new(rookery_bin())
            .args(["server", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{line} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{line}: {stderr}");
    }
    let out = Command::new(rookery_bin())
        .args(["server", "--config", "/nonexistent/zoo.cfg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/zoo.cfg"));
}

#[test]
fn unused_zookeeper_keys_only_warn() {
    let server = start_rookery(&[
        (
            "serverCnxnFactory",
            "org.apache.zookeeper.server.NettyServerCnxnFactory",
        ),
        (
            "authProvider.1",
            "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        ),
        ("ssl.keyStore.location", "/tmp/none"),
        ("admin.serverPort", "8080"),
        ("secureClientPort", "2281"),
        ("initLimit", "5"),
    ]);
    assert_eq!(four_letter(server.addr, "ruok"), "imok");
    let log = server.log();
    assert!(
        log.contains("serverCnxnFactory") && log.contains("WARN"),
        "{log}"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut server = start_rookery(&[]);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}: {}", server.log());
    assert!(server.log().contains("shutting down"));
}

#[test]
fn an_ensemble_configuration_is_refused_until_replication_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("myid"), "1").unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort={}\nserver.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\nserver.3=127.0.0.3:2888:3888\n",
            dir.path().display(),
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(rookery_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ensemble"));
}
