//! `rookery cli` run non-interactively against a real `rookery server`: zkCli's output
//! formats, errors and exit status, `--json`, and commands from `-c`, stdin and files.
//!
//! Needs the binary: `cargo build -p rookery` first (as `scripts/test.sh` does).

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{cli, cli_ok, rookery};
use rookery_testkit::{free_port, start_rookery, Proc};
use serde_json::Value;

/// One server for the whole file; each test works under paths of its own.
fn server() -> SocketAddr {
    static SERVER: OnceLock<Proc> = OnceLock::new();
    SERVER.get_or_init(|| start_rookery(&[])).addr
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn create_get_set_and_stat_print_as_zkcli_does() {
    let s = server();
    let out = cli_ok(
        s,
        &[
            "-c",
            "create /crud hello; get /crud; set /crud 'hello world'; get -s /crud",
        ],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("Created /crud"));
    assert_eq!(lines.next(), Some("hello"));
    assert_eq!(lines.next(), Some("hello world"));
    let block: Vec<&str> = lines.collect();
    let keys: Vec<&str> = block
        .iter()
        .map(|l| l.split(" = ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "cZxid",
            "ctime",
            "mZxid",
            "mtime",
            "pZxid",
            "cversion",
            "dataVersion",
            "aclVersion",
            "ephemeralOwner",
            "dataLength",
            "numChildren"
        ]
    );
    assert!(block[0].starts_with("cZxid = 0x"), "{out}");
    assert!(block.contains(&"dataVersion = 1"), "{out}");
    assert!(block.contains(&"dataLength = 11"), "{out}");
    assert!(block.contains(&"ephemeralOwner = 0x0"), "{out}");

    let stat = cli_ok(s, &["-c", "stat /crud"]);
    assert_eq!(stat.lines().count(), 11, "{stat}");
    assert!(stat.contains("\ndataVersion = 1\n"), "{stat}");
    let set = cli_ok(s, &["-c", "set -s -v 1 /crud again"]);
    assert!(set.contains("\ndataVersion = 2\n"), "{set}");

    let out = cli(s, &["-c", "set -v 7 /crud x"], None);
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr,
        "BadVersion: /crud is not at the version given\n"
    );
}

#[test]
fn ls_lists_children_and_ls_r_walks_breadth_first() {
    let s = server();
    cli_ok(
        s,
        &[
            "-c",
            "create /lsr; create /lsr/b; create /lsr/a; create /lsr/a/x; create /lsr/b/y data",
        ],
    );
    assert_eq!(cli_ok(s, &["-c", "ls /lsr"]), "[a, b]\n");
    assert_eq!(
        cli_ok(s, &["-c", "ls -R /lsr"]),
        "/lsr\n/lsr/a\n/lsr/b\n/lsr/a/x\n/lsr/b/y\n"
    );
    let with_stat = cli_ok(s, &["-c", "ls -s /lsr"]);
    assert!(with_stat.starts_with("[a, b]\ncZxid = 0x"), "{with_stat}");
    assert!(with_stat.contains("\nnumChildren = 2\n"), "{with_stat}");

    assert_eq!(
        cli_ok(s, &["-c", "tree /lsr"]),
        "/lsr (0 B)\n├── a (0 B)\n│   └── x (0 B)\n└── b (0 B)\n    └── y (4 B)\n"
    );
    assert_eq!(
        cli_ok(s, &["-c", "tree -d 1 -n 2 /lsr"]),
        "/lsr (0 B)\n├── a (0 B)\n│   └── … 1 child below the depth limit (-d)\n\
         └── … 1 more not shown (-n)\n"
    );
    assert_eq!(cli_ok(s, &["-c", "getAllChildrenNumber /lsr"]), "4\n");
}

#[test]
fn delete_refuses_a_parent_and_deleteall_removes_the_subtree() {
    let s = server();
    cli_ok(
        s,
        &[
            "-c",
            "create /del; create /del/a; create /del/a/b; create /del/c; create /del/c/d",
        ],
    );
    let out = cli(s, &["-c", "delete /del"], None);
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr,
        "NotEmpty: /del has children (deleteall deletes a subtree)\n"
    );
    // Batches of two: the subtree goes in three multi operations, children first.
    cli_ok(s, &["-c", "deleteall /del -b 2"]);
    let out = cli(s, &["-c", "ls /del"], None);
    assert_eq!(out.status, 1);
    assert_eq!(out.stderr, "NoNode: /del does not exist\n");

    cli_ok(s, &["-c", "create /dv; delete -v 0 /dv"]);
    let out = cli(s, &["-c", "deleteall /dv"], None);
    assert_eq!(out.stderr, "NoNode: /dv does not exist\n");
}

#[test]
fn acls_and_digest_authentication() {
    let s = server();
    let out = cli_ok(
        s,
        &[
            "-c",
            "create /acl secret; addauth digest bob:secret; \
             setAcl /acl auth:bob:secret:cdrwa; getAcl /acl",
        ],
    );
    // The digest ZooKeeper 3.8 computes for bob:secret.
    assert_eq!(
        out,
        "Created /acl\n'digest,'bob:fyVmFCwVbTJYrznoSu1koqYEYF0=\n: cdrwa\n"
    );
    let out = cli(s, &["-c", "get /acl"], None);
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr,
        "NoAuth: the ACL of /acl does not allow this (addauth adds credentials)\n"
    );
    assert_eq!(
        cli_ok(s, &["-c", "addauth digest bob:secret; get /acl"]),
        "secret\n"
    );
    let who = cli_ok(s, &["-c", "addauth digest bob:secret; whoami"]);
    assert!(who.starts_with("Auth scheme: User\n"), "{who}");
    assert!(who.contains("\ndigest: bob\n"), "{who}");

    let out = cli(s, &["-c", "setAcl /acl bad:acl"], None);
    assert_eq!(
        out.stderr,
        "InvalidACL: bad:acl does not have the form scheme:id:perm\n"
    );
    assert_eq!(
        cli_ok(
            s,
            &[
                "-c",
                "create /aclr; create /aclr/a; setAcl -R /aclr world:anyone:cdr; getAcl -s /aclr/a",
            ],
        )
        .lines()
        .take(4)
        .collect::<Vec<_>>(),
        [
            "Created /aclr",
            "Created /aclr/a",
            "'world,'anyone",
            ": cdr"
        ]
    );
}

#[test]
fn json_mode_prints_one_object_per_command() {
    let s = server();
    let out = cli(
        s,
        &[
            "--json",
            "-c",
            "create /js 'a b'; get /js; ls /js; getAcl /js; get /js-missing; ls; tree /js",
        ],
        None,
    );
    assert_eq!(out.status, 1, "{out:?}");
    assert_eq!(out.stderr, "");
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 7, "{}", out.stdout);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["command"], "create");
    assert_eq!(lines[0]["created"], "/js");
    assert_eq!(lines[1]["data"], "a b");
    assert_eq!(lines[1]["stat"]["dataLength"], 3);
    assert_eq!(lines[1]["stat"]["version"], 0);
    assert_eq!(lines[2]["children"], serde_json::json!([]));
    assert_eq!(lines[3]["acl"][0]["perms"], "cdrwa");
    assert_eq!(lines[3]["acl"][0]["scheme"], "world");
    assert_eq!(lines[4]["ok"], false);
    assert_eq!(lines[4]["error"], "NoNode");
    assert_eq!(lines[4]["code"], -101);
    assert_eq!(lines[4]["message"], "/js-missing does not exist");
    assert_eq!(lines[5]["error"], "Usage");
    assert_eq!(lines[6]["tree"]["path"], "/js");
    assert_eq!(lines[6]["tree"]["dataLength"], 3);
}

#[test]
fn errors_are_one_named_line_and_fail_the_run() {
    let s = server();
    let out = cli(
        s,
        &[
            "-c",
            "get /nothing-here; ls; bogus /; create /no/parent; create /errs; create /errs",
        ],
        None,
    );
    assert_eq!(out.status, 1);
    // Every command runs, the failed ones included.
    assert_eq!(out.stdout, "Created /errs\n");
    assert_eq!(
        out.stderr,
        "NoNode: /nothing-here does not exist\n\
         Usage: ls [-s] [-w] [-R] path (missing <path>)\n\
         UnknownCommand: bogus (help lists the commands)\n\
         NoNode: the parent of /no/parent does not exist\n\
         NodeExists: /errs already exists\n"
    );
    let out = cli(s, &["-c", "get -x /errs"], None);
    assert_eq!(
        out.stderr,
        "Usage: get [-s] [-w] path (unexpected argument '-x' found)\n"
    );
}

#[test]
fn commands_come_from_stdin_and_from_a_file() {
    let s = server();
    let out = cli(
        s,
        &[],
        Some("create /in first\n# a comment\n\nget /in\nset /in 'second one'\nget /in\n"),
    );
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "Created /in\nfirst\nsecond one\n");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("commands.zk");
    std::fs::write(&file, "create /file x\n  get /file\nquit\nget /never-run\n").unwrap();
    let out = cli(s, &["-f", file.to_str().unwrap()], None);
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "Created /file\nx\n");

    let out = cli(s, &["-f", "/nonexistent/commands.zk"], None);
    assert_eq!(out.status, 1);
    assert!(out
        .stderr
        .starts_with("IOError: reading /nonexistent/commands.zk"));
}

#[test]
fn zkcli_command_line_forms_work() {
    let s = server().to_string();
    let out = rookery(
        &strings(&[
            "cli",
            "-server",
            &s,
            "-timeout",
            "5000",
            "create",
            "/zkform",
            "two words",
        ]),
        None,
    );
    assert_eq!(out.stdout, "Created /zkform\n", "{out:?}");
    let out = rookery(&strings(&["cli", "-server", &s, "get", "/zkform"]), None);
    assert_eq!(out.stdout, "two words\n", "{out:?}");
    assert_eq!(out.status, 0);
}

#[test]
fn a_chroot_in_the_connect_string_is_the_root() {
    let s = server();
    cli_ok(s, &["-c", "create /chroot"]);
    let chrooted = format!("{s}/chroot");
    let out = rookery(
        &strings(&["cli", "--server", &chrooted, "-c", "create /inside x; ls /"]),
        None,
    );
    assert_eq!(out.stdout, "Created /inside\n[inside]\n", "{out:?}");
    assert_eq!(cli_ok(s, &["-c", "get /chroot/inside"]), "x\n");
}

#[test]
fn sequential_ephemeral_container_and_ttl_nodes() {
    let s = server();
    let out = cli_ok(
        s,
        &[
            "-c",
            "create /modes; create -s /modes/n- a; create -s /modes/n- b; create -e /modes/eph; \
             getEphemerals /modes; create -t 60000 /modes/ttl; create -c /modes/cont",
        ],
    );
    assert_eq!(
        out,
        "Created /modes\nCreated /modes/n-0000000000\nCreated /modes/n-0000000001\n\
         Created /modes/eph\n[/modes/eph]\nCreated /modes/ttl\nCreated /modes/cont\n"
    );
    // The ephemeral node went with the session that made it.
    let out = cli(s, &["-c", "stat /modes/eph"], None);
    assert_eq!(out.stderr, "NoNode: /modes/eph does not exist\n");
    let out = cli(s, &["-c", "create -e -t 5 /modes/bad"], None);
    assert_eq!(
        out.stderr,
        "BadArguments: TTLs cannot be used with ephemeral nodes (-e)\n"
    );
}

#[test]
fn an_unreachable_server_fails_fast_and_help_needs_none() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let start = Instant::now();
    let out = cli(
        addr,
        &["--connect-timeout", "500", "-c", "ls /; get /a"],
        None,
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status, 1);
    let mut lines = out.stderr.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("ConnectionLoss: cannot connect to {addr}: ")),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines.next(),
        Some("ConnectionLoss: not connected (connect host:port opens a session)")
    );

    let help = cli(addr, &["-c", "help"], None);
    assert_eq!(help.status, 0);
    for usage in [
        "ls [-s] [-w] [-R] path",
        "create [-s] [-e] [-c] [-t ttl] path [data] [acl]",
        "setAcl [-s] [-v version] [-R] path acl",
        "addWatch [-m mode] path",
    ] {
        assert!(
            help.stdout.contains(usage),
            "{usage} missing:\n{}",
            help.stdout
        );
    }
}
