//! The `rookery` binary: configuration errors, start-up and clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rookery_testkit::*;

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
        ("ssl.ciphersuites", "TLS_AES_128_GCM_SHA256"),
        ("client.portUnification", "true"),
        ("admin.serverPort", "8080"),
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
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .expect("server did not stop after SIGTERM");
    assert!(exit.success(), "exit status {exit}: {}", server.log());
    assert!(server.log().contains("shutting down"));
}

/// Writes a three-member zoo.cfg (every member on 127.0.0.1, each with its own ports) into
/// `dir`, without a `myid` file; returns it and member 1's client address.
fn ensemble_config(dir: &Path) -> (PathBuf, SocketAddr) {
    let client_port = free_port();
    let mut text = format!(
        "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
         clientPortAddress=127.0.0.1\npreAllocSize=1024\nadmin.enableServer=false\n",
        dir.join("data").display()
    );
    for id in 1..=3 {
        text.push_str(&format!(
            "server.{id}=127.0.0.1:{}:{}\n",
            free_port(),
            free_port()
        ));
    }
    let cfg = dir.join("zoo.cfg");
    std::fs::write(&cfg, text).unwrap();
    (cfg, SocketAddr::from(([127, 0, 0, 1], client_port)))
}

#[test]
fn an_ensemble_member_named_by_myid_elects_until_a_quorum_exists_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, addr) = ensemble_config(dir.path());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // No myid file: `--myid` names the member. Members 2 and 3 never start, so it stays electing.
    let child = Command::new(rookery_bin())
        .args(["server", "--myid", "1", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("ROOKERY_MYID")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(child);
    let deadline = Instant::now() + WAIT;
    let srvr = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("exited during start-up ({status}):\n{}", read_log());
        }
        let answer = four_letter(addr, "srvr");
        if !answer.is_empty() {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "no answer to srvr:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        srvr.contains("not currently serving requests"),
        "{srvr}\n{}",
        read_log()
    );
    assert_eq!(four_letter(addr, "ruok"), "imok");
    assert!(read_log().contains("ensemble member"), "{}", read_log());
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "member did not stop after SIGTERM:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}: {}", read_log());
    assert!(read_log().contains("shutting down"));
}

#[test]
fn a_myid_that_names_no_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = ensemble_config(dir.path());
    for (args, env) in [
        (&["--myid", "7"][..], None),
        (&[][..], Some("9")),
        (&["--myid", "two"][..], None),
    ] {
        let mut cmd = Command::new(rookery_bin());
        cmd.args(["server", "--config"]).arg(&cfg).args(args);
        match env {
            Some(id) => cmd.env("ROOKERY_MYID", id),
            None => cmd.env_remove("ROOKERY_MYID"),
        };
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        assert!(stderr.contains("--myid"), "{args:?} {env:?}: {stderr}");
        if args != ["--myid", "two"] {
            assert!(
                stderr.contains("no server.N line has this id"),
                "{args:?} {env:?}: {stderr}"
            );
        }
    }
    // Without --myid, the myid file is required, as in ZooKeeper.
    let out = Command::new(rookery_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .env_remove("ROOKERY_MYID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("myid"));
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rookery probe`: the health check of FROM-scratch containers (no shell, no nc).
#[test]
fn probe_checks_ruok_and_http_and_fails_clearly() {
    let server = start_rookery(&[]);
    let probe = |target: &str| {
        Command::new(rookery_bin())
            .args(["probe", target, "--timeout", "2s"])
            .output()
            .unwrap()
    };
    let ok = probe(&server.addr.to_string());
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("imok"));

    let closed = format!("127.0.0.1:{}", free_port());
    let refused = probe(&closed);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("connecting"));

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = ["--listen".to_string(), addr.to_string()];
    let demo = start_program(&workspace_example("demo-service"), &args, &[], addr);
    assert!(probe(&format!("http://{addr}/health")).status.success());
    let failing = probe(&format!("http://{addr}/status/503"));
    assert_eq!(failing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failing.stderr).contains("503"));
    // A server that is not ZooKeeper: an HTTP server answers ruok with no imok.
    let not_zk = probe(&addr.to_string());
    assert_eq!(not_zk.status.code(), Some(1));
    drop(demo);
}

/// `--log-format json`: every line is one JSON object, and what a client connection logs
/// carries the connection's span with its peer and session.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_each_connections_span_with_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("server.log");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Killed(
        Command::new(rookery_bin())
            .args(["--log-format", "json", "server", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info,rookery_server::connection=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while four_letter(addr, "ruok") != "imok" {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = rookery_client::Client::connect(&addr.to_string())
        .await
        .unwrap();
    let session = format!("0x{:x}", client.session_id());
    client
        .create(
            "/json",
            b"",
            &rookery_client::CreateOptions::new(rookery_client::CreateMode::Persistent),
        )
        .await
        .unwrap();
    client.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let found = lines.into_iter().find(|l| {
            l["fields"]["message"] == "connection closed"
                && l["spans"][0]["session"].as_str() == Some(session.as_str())
        });
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no closed connection with {session}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(closed["level"], "DEBUG");
    assert_eq!(closed["spans"][0]["name"], "conn");
    assert!(closed["spans"][0]["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
}
