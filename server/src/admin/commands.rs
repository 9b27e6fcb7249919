//! The AdminServer's commands: `/commands/<name>` answers a JSON object with ZooKeeper's field
//! names, plus `command` (the canonical name) and `error` (null, or why it failed). Each command
//! also answers to its four-letter alias (`/commands/mntr` is `monitor`), as in ZooKeeper.
//!
//! Unlike ZooKeeper's AdminServer, which serves every command to anyone who reaches its port,
//! a command runs only if `4lw.commands.whitelist` allows the four-letter word that reveals the
//! same thing ([`four_letter_word`]): with the default whitelist (`srvr, ruok`) only `ruok` and
//! `server_stats` answer, and the rest are refused with 403 (docs/security.md, SEC-6).

use serde_json::{json, Map, Value};

use super::{
    avg_latency, dir_sizes, environment_rows, mode, monitor_rows, serving, session_of,
    zk_node_count, VERSION,
};
use crate::server::{ConnStats, Core};

/// Every command: its canonical name and its aliases, as `/commands` lists them.
pub const COMMANDS: &[(&str, &[&str])] = &[
    ("configuration", &["conf", "config"]),
    ("connection_stat_reset", &["crst"]),
    ("connections", &["cons"]),
    ("dirs", &[]),
    ("dump", &[]),
    ("environment", &["envi", "envinfo"]),
    ("get_trace_mask", &["gtmk"]),
    ("is_read_only", &["isro"]),
    ("leader", &["lead"]),
    ("monitor", &["mntr"]),
    ("ruok", &[]),
    ("server_stats", &["srvr"]),
    ("stat_reset", &["srst"]),
    ("stats", &["stat"]),
    ("voting_view", &[]),
    ("watch_summary", &["wchs"]),
    ("watches", &["wchc"]),
    ("watches_by_path", &["wchp"]),
];

/// The canonical name of a command or alias.
pub fn canonical(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(n, aliases)| *n == name || aliases.contains(&name))
        .map(|(n, _)| *n)
}

/// The four-letter word whose whitelisting allows a command: the command's alias, or for the
/// ensemble views that have none (`leader`, `voting_view`), `conf`, which prints the same member
/// list.
pub fn four_letter_word(command: &str) -> &'static str {
    match command {
        "configuration" | "leader" | "voting_view" => "conf",
        "connection_stat_reset" => "crst",
        "connections" => "cons",
        "dirs" => "dirs",
        "dump" => "dump",
        "environment" => "envi",
        "get_trace_mask" => "gtmk",
        "is_read_only" => "isro",
        "monitor" => "mntr",
        "server_stats" => "srvr",
        "stat_reset" => "srst",
        "stats" => "stat",
        "watch_summary" => "wchs",
        "watches" => "wchc",
        "watches_by_path" => "wchp",
        "ruok" => "ruok",
        // A command added without a word here answers only to `4lw.commands.whitelist=*`.
        _ => "*",
    }
}

/// A command's answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// 200, or 403 for a command the whitelist does not allow.
    pub status: u16,
    /// The JSON object.
    pub body: Value,
}

/// Runs one command. An unknown name is an answer too (ZooKeeper's `Unknown command: x`); a
/// command whose four-letter word is not whitelisted is refused (403) without running.
pub fn run(core: &mut Core, name: &str) -> Answer {
    let Some(command) = canonical(name) else {
        let body = json!({ "command": name, "error": format!("Unknown command: {name}") });
        return Answer { status: 200, body };
    };
    let word = four_letter_word(command);
    if !core.cfg.four_letter_allowed(word) {
        let body = json!({
            "command": command,
            "error": format!(
                "{command} is not executed because {word} is not in 4lw.commands.whitelist."
            ),
        });
        return Answer { status: 403, body };
    }
    Answer {
        status: 200,
        body: run_allowed(core, command),
    }
}

fn run_allowed(core: &mut Core, command: &'static str) -> Value {
    let needs_serving = matches!(command, "server_stats" | "stats" | "monitor");
    let body = if needs_serving && !serving(core) {
        Err("This ZooKeeper instance is not currently serving requests")
    } else {
        answer(core, command)
    };
    let mut out = match body {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(why) => {
            let mut m = Map::new();
            m.insert("error".into(), json!(why));
            m
        }
    };
    out.insert("command".into(), json!(command));
    out.entry("error").or_insert(Value::Null);
    Value::Object(out)
}

fn answer(core: &mut Core, command: &str) -> Result<Value, &'static str> {
    Ok(match command {
        "ruok" => json!({}),
        "server_stats" => server_stats(core),
        "stats" => {
            let mut v = server_stats(core);
            v["connections"] = Value::Array(connections(core, false));
            v["secure_connections"] = json!([]);
            v
        }
        "monitor" => Value::Object(
            monitor_rows(core)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
        "configuration" => configuration(core),
        "connections" => json!({
            "connections": connections(core, true),
            "secure_connections": [],
        }),
        "connection_stat_reset" => {
            core.reset_connection_stats();
            json!({})
        }
        "stat_reset" => {
            core.reset_server_stats();
            json!({})
        }
        "watch_summary" => {
            let w = &core.tree.watches;
            json!({
                "num_connections": w.conn_count(),
                "num_paths": w.path_count(),
                "num_total_watches": w.watch_count(),
            })
        }
        "watches" => {
            let by_session: Map<String, Value> = core
                .tree
                .watches
                .by_connection()
                .into_iter()
                .map(|(conn, paths)| (session_of(core, conn).to_string(), json!(paths)))
                .collect();
            json!({ "session_id_to_watched_paths": by_session })
        }
        "watches_by_path" => {
            let by_path: Map<String, Value> = core
                .tree
                .watches
                .by_path()
                .into_iter()
                .map(|(path, conns)| {
                    let sids: Vec<i64> = conns.into_iter().map(|c| session_of(core, c)).collect();
                    (path, json!(sids))
                })
                .collect();
            json!({ "path_to_session_ids": by_path })
        }
        "dump" => dump(core),
        "environment" => environment(core),
        "is_read_only" => json!({ "read_only": false }),
        "leader" => leader(core)?,
        "voting_view" => voting_view(core),
        "dirs" => {
            let (data, log) = dir_sizes(core);
            json!({ "datadir_size": data, "logdir_size": log })
        }
        "get_trace_mask" => json!({ "tracemask": 306 }),
        other => unreachable!("{other} is listed in COMMANDS but not answered"),
    })
}

fn server_stats(core: &Core) -> Value {
    let l = &core.stats.latency;
    let (data_dir_size, log_dir_size) = dir_sizes(core);
    let response_sizes = json!({
        "last_buffer_size": -1,
        "min_buffer_size": -1,
        "max_buffer_size": -1,
    });
    json!({
        "version": format!("{VERSION}, built on unknown"),
        "read_only": false,
        "server_stats": {
            "packets_sent": core.stats.sent,
            "packets_received": core.stats.received,
            "fsync_threshold_exceed_count": 0,
            "client_response_stats": response_sizes,
            "data_dir_size": data_dir_size,
            "log_dir_size": log_dir_size,
            "provider_null": false,
            "server_state": mode(core),
            "last_processed_zxid": core.last_zxid,
            "outstanding_requests": core.outstanding_requests(),
            "avg_latency": avg_latency(core),
            "max_latency": l.max_ms,
            "min_latency": l.min(),
            "num_alive_client_connections": core.conns.len(),
            "auth_failed_count": core.stats.auth_failed,
            "non_mtlsremote_conn_count": 0,
            "non_mtlslocal_conn_count": 0,
            "uptime": core.env.now_ms(),
        },
        "client_response": response_sizes,
        "node_count": zk_node_count(core),
    })
}

fn connections(core: &Core, full: bool) -> Vec<Value> {
    let mut conns: Vec<_> = core.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    conns
        .into_iter()
        .map(|(_, c)| {
            let s: &ConnStats = &c.stats;
            let mut v = json!({
                "remote_socket_address": c.addr.to_string(),
                "interest_ops": 1,
                "outstanding_requests": 0,
                "packets_received": s.received,
                "packets_sent": s.sent,
            });
            if full {
                let more = json!({
                    "session_id": c.session_id,
                    "last_operation": s.last_op,
                    "established": s.established_wall_ms,
                    "session_timeout": c.timeout_ms,
                    "last_cxid": s.last_cxid,
                    "last_zxid": s.last_zxid,
                    "last_response_time": s.last_response_wall_ms,
                    "last_latency": s.last_latency_ms,
                    "min_latency": s.latency.min(),
                    "avg_latency": s.latency.avg() as u64,
                    "max_latency": s.latency.max_ms,
                });
                if let (Value::Object(v), Value::Object(more)) = (&mut v, more) {
                    v.extend(more);
                }
            }
            v
        })
        .collect()
}

fn configuration(core: &Core) -> Value {
    let c = &core.cfg;
    json!({
        "client_port": c.client_port,
        "data_dir": c.data_dir.display().to_string(),
        "data_log_dir": c.data_log_dir.display().to_string(),
        "tick_time": c.tick_time_ms,
        "max_client_cnxns": c.max_client_cnxns,
        "min_session_timeout": c.min_session_timeout_ms,
        "max_session_timeout": c.max_session_timeout_ms,
        "server_id": c.server_id,
        "client_port_listen_backlog": -1,
    })
}

fn dump(core: &Core) -> Value {
    let mut by_expiry: Map<String, Value> = Map::new();
    for s in core.sessions.by_deadline() {
        let ids = by_expiry
            .entry(s.expires_at_ms.to_string())
            .or_insert_with(|| json!([]));
        if let Value::Array(ids) = ids {
            ids.push(json!(s.id));
        }
    }
    let ephemerals: Map<String, Value> = core
        .tree
        .all_ephemerals()
        .iter()
        .map(|(sid, paths)| (sid.to_string(), json!(paths)))
        .collect();
    json!({
        "expiry_time_to_session_ids": by_expiry,
        "session_id_to_ephemeral_paths": ephemerals,
    })
}

fn environment(core: &Core) -> Value {
    Value::Object(
        environment_rows(core)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect(),
    )
}

/// ZooKeeper answers `leader` only on an ensemble member.
fn leader(core: &Core) -> Result<Value, &'static str> {
    let Some(e) = &core.ensemble else {
        return Err("server is not initialized");
    };
    let leader = e.node.status().leader;
    let leader_ip = leader
        .and_then(|id| core.cfg.ensemble.iter().find(|p| p.id == id))
        .map_or(String::new(), |p| p.host.clone());
    Ok(json!({
        "is_leader": e.is_leader(),
        "leader_id": leader.map_or(-1, |id| id as i64),
        "leader_ip": leader_ip,
    }))
}

/// The voters and observers, as ZooKeeper prints a `server.N` line's value.
fn voting_view(core: &Core) -> Value {
    let view: Map<String, Value> = core
        .cfg
        .ensemble
        .iter()
        .map(|p| {
            let role = if p.observer {
                "observer"
            } else {
                "participant"
            };
            // ZooKeeper prints the client address with its host, 0.0.0.0 when none was given.
            let client = match p.client.as_deref() {
                Some(c) if c.contains(':') => c.to_owned(),
                Some(port) => format!("0.0.0.0:{port}"),
                None => String::new(),
            };
            (
                p.id.to_string(),
                json!(format!(
                    "{}:{}:{}:{role};{client}",
                    p.host, p.quorum_port, p.election_port
                )),
            )
        })
        .collect();
    json!({ "current_config": view })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rookery_proto::consts::FOUR_LETTER_WORDS;

    #[test]
    fn every_command_is_gated_by_a_four_letter_word() {
        for (name, aliases) in COMMANDS {
            let word = four_letter_word(name);
            assert!(
                FOUR_LETTER_WORDS.contains(&word),
                "{name} is gated by {word:?}, not a four-letter word"
            );
            // A command that is, or has, a four-letter word is gated by that word.
            let own = std::iter::once(name)
                .chain(aliases.iter())
                .find(|a| FOUR_LETTER_WORDS.contains(a));
            if let Some(own) = own {
                assert_eq!(word, *own, "{name}");
            }
        }
        assert_eq!(four_letter_word("something new"), "*");
    }
}
