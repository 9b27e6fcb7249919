//! Four-letter words: `ruok`, `srvr`, `stat`, `conf`, `cons`, `crst`, `dump`, `envi`, `mntr`,
//! `wchs`, `wchc`, `wchp`, `dirs`, `isro`, `gtmk` and `srst`, in ZooKeeper's output formats.

use std::fmt::Write as _;

use super::{
    avg_latency, dir_sizes, environment_rows, mode, monitor_rows, serving, session_of,
    zk_node_count, VERSION,
};
use crate::server::{ConnStats, Core};

/// The text a four-letter word answers with, honouring the whitelist.
pub fn four_letter(core: &mut Core, cmd: &str) -> String {
    if !core.cfg.four_letter_allowed(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    let mut out = String::new();
    match cmd {
        "ruok" => out.push_str("imok"),
        "srvr" | "stat" | "mntr" if !serving(core) => {
            // ZooKeeper's answer while it elects.
            out.push_str("This ZooKeeper instance is not currently serving requests\n");
        }
        "srvr" => srvr(core, &mut out),
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}, built on unknown");
            out.push_str("Clients:\n");
            cons_lines(core, &mut out, false);
            out.push('\n');
            srvr_body(core, &mut out);
        }
        "conf" => conf(core, &mut out),
        "cons" => {
            cons_lines(core, &mut out, true);
            out.push('\n');
        }
        "crst" => {
            core.reset_connection_stats();
            out.push_str("Connection stats reset.\n");
        }
        "srst" => {
            core.reset_server_stats();
            out.push_str("Server stats reset.\n");
        }
        "dump" => dump(core, &mut out),
        "envi" => envi(core, &mut out),
        "mntr" => mntr(core, &mut out),
        "wchs" => {
            let w = &core.tree.watches;
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                w.conn_count(),
                w.path_count()
            );
            let _ = writeln!(out, "Total watches:{}", w.watch_count());
        }
        "wchc" => {
            for (conn, paths) in core.tree.watches.by_connection() {
                let _ = writeln!(out, "0x{:x}", session_of(core, conn));
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
        }
        "wchp" => {
            for (path, conns) in core.tree.watches.by_path() {
                let _ = writeln!(out, "{path}");
                for conn in conns {
                    let _ = writeln!(out, "\t0x{:x}", session_of(core, conn));
                }
            }
        }
        "dirs" => {
            let (data, log) = dir_sizes(core);
            let _ = writeln!(out, "datadir_size: {data}");
            let _ = writeln!(out, "logdir_size: {log}");
        }
        "isro" => out.push_str("rw"),
        "gtmk" => out.push_str("306\n"),
        _ => {}
    }
    out
}

fn srvr(core: &Core, out: &mut String) {
    let _ = writeln!(out, "Zookeeper version: {VERSION}, built on unknown");
    srvr_body(core, out);
}

fn srvr_body(core: &Core, out: &mut String) {
    let l = &core.stats.latency;
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{:.4}/{}",
        l.min(),
        avg_latency(core),
        l.max_ms
    );
    let _ = writeln!(out, "Received: {}", core.stats.received);
    let _ = writeln!(out, "Sent: {}", core.stats.sent);
    let _ = writeln!(out, "Connections: {}", core.conns.len());
    let _ = writeln!(out, "Outstanding: 0");
    let _ = writeln!(out, "Zxid: 0x{:x}", core.last_zxid);
    let _ = writeln!(out, "Mode: {}", mode(core));
    let _ = writeln!(out, "Node count: {}", zk_node_count(core));
}

fn conf(core: &Core, out: &mut String) {
    let c = &core.cfg;
    let (data_size, log_size) = dir_sizes(core);
    let _ = writeln!(out, "clientPort={}", c.client_port);
    let _ = writeln!(out, "secureClientPort=-1");
    let _ = writeln!(out, "dataDir={}", c.data_dir.display());
    let _ = writeln!(out, "dataDirSize={data_size}");
    let _ = writeln!(out, "dataLogDir={}", c.data_log_dir.display());
    let _ = writeln!(out, "dataLogSize={log_size}");
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(out, "clientPortListenBacklog=-1");
    let _ = writeln!(out, "serverId={}", c.server_id);
    if core.ensemble.is_some() {
        // As ZooKeeper prints a quorum member's configuration.
        let _ = writeln!(out, "initLimit={}", c.init_limit_ticks);
        let _ = writeln!(out, "syncLimit={}", c.sync_limit_ticks);
        let _ = writeln!(out, "electionAlg=3");
        let _ = writeln!(
            out,
            "peerType={}",
            u8::from(
                c.ensemble
                    .iter()
                    .any(|p| p.id == u64::from(c.server_id) && p.observer)
            )
        );
        for p in &c.ensemble {
            let role = if p.observer {
                "observer"
            } else {
                "participant"
            };
            let _ = writeln!(
                out,
                "server.{}={}:{}:{}:{role}",
                p.id, p.host, p.quorum_port, p.election_port
            );
        }
    }
}

fn cons_lines(core: &Core, out: &mut String, full: bool) {
    let mut conns: Vec<_> = core.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    for (_, c) in conns {
        let s: &ConnStats = &c.stats;
        let _ = write!(
            out,
            " /{}[1](queued=0,recved={},sent={}",
            c.addr, s.received, s.sent
        );
        if full {
            let _ = write!(
                out,
                ",sid=0x{:x},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},llat={},minlat={},avglat={:.4},maxlat={}",
                c.session_id,
                s.last_op,
                s.established_wall_ms,
                c.timeout_ms,
                s.last_cxid,
                s.last_zxid,
                s.last_response_wall_ms,
                s.last_latency_ms,
                s.latency.min(),
                s.latency.avg(),
                s.latency.max_ms
            );
        }
        out.push_str(")\n");
    }
}

fn dump(core: &Core, out: &mut String) {
    out.push_str("SessionTracker dump:\n");
    let _ = writeln!(
        out,
        "Session Sets ({})/({}):",
        core.sessions.len(),
        core.sessions.len()
    );
    for s in core.sessions.by_deadline() {
        let _ = writeln!(
            out,
            "\t0x{:x} (expires in bucket {} ms)",
            s.id, s.expires_at_ms
        );
    }
    out.push_str("ephemeral nodes dump:\n");
    let eph = core.tree.all_ephemerals();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", eph.len());
    let mut sids: Vec<_> = eph.keys().collect();
    sids.sort();
    for sid in sids {
        let _ = writeln!(out, "0x{sid:x}:");
        for p in &eph[sid] {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push_str("Connections dump:\n");
    let _ = writeln!(out, "Connections Sets ({}):", core.conns.len());
}

fn envi(core: &Core, out: &mut String) {
    out.push_str("Environment:\n");
    for (k, v) in environment_rows(core) {
        let _ = writeln!(out, "{k}={v}");
    }
}

fn mntr(core: &Core, out: &mut String) {
    for (k, v) in monitor_rows(core) {
        let _ = match v {
            serde_json::Value::String(text) => writeln!(out, "zk_{k}\t{text}"),
            serde_json::Value::Number(n) if n.is_f64() => {
                writeln!(out, "zk_{k}\t{:.4}", n.as_f64().unwrap_or(0.0))
            }
            other => writeln!(out, "zk_{k}\t{other}"),
        };
    }
}
