//! zkCli.sh's output formats (the stat block, `[a, b]` lists, `'scheme,'id` ACL lines), ACL
//! parsing as zkCli does it, and the JSON forms of the same values.

use base64::Engine as _;
use rookery_client::{perms, Acl, Stat};
use serde_json::{json, Map, Value};

use crate::error::CliError;

/// The stat block, field for field as zkCli prints it. Times are in UTC (zkCli uses the local
/// time zone; a server's clock and logs are usually UTC, and a fixed zone keeps scripts stable).
pub(crate) fn stat_text(stat: &Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\n\
         cversion = {}\ndataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\n\
         dataLength = {}\nnumChildren = {}",
        stat.czxid,
        date(stat.ctime),
        stat.mzxid,
        date(stat.mtime),
        stat.pzxid,
        stat.cversion,
        stat.version,
        stat.aversion,
        stat.ephemeral_owner,
        stat.data_length,
        stat.num_children,
    )
}

/// The Stat with the Java client's field names; times in ms since the epoch.
pub(crate) fn stat_json(stat: &Stat) -> Value {
    json!({
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "ctime": stat.ctime,
        "mtime": stat.mtime,
        "version": stat.version,
        "cversion": stat.cversion,
        "aversion": stat.aversion,
        "ephemeralOwner": stat.ephemeral_owner,
        "dataLength": stat.data_length,
        "numChildren": stat.num_children,
        "pzxid": stat.pzxid,
    })
}

/// `java.util.Date.toString()` in UTC: `Mon Dec 07 16:45:59 UTC 2026`.
fn date(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%a %b %d %H:%M:%S UTC %Y").to_string(),
        None => format!("{ms} ms"),
    }
}

/// A node's data as zkCli prints it: UTF-8, with invalid bytes replaced.
pub(crate) fn data_text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The data for JSON: `"data"` when it is UTF-8, else `"data": null` and `"dataBase64"`, so
/// binary data survives the trip.
pub(crate) fn data_json(data: &[u8], out: &mut Map<String, Value>) {
    match std::str::from_utf8(data) {
        Ok(s) => {
            out.insert("data".into(), Value::from(s));
        }
        Err(_) => {
            out.insert("data".into(), Value::Null);
            out.insert(
                "dataBase64".into(),
                Value::from(base64::engine::general_purpose::STANDARD.encode(data)),
            );
        }
    }
}

/// A Java list's `toString()`: `[a, b]`.
pub(crate) fn list_text<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", items.join(", "))
}

/// zkCli's permission letters, in its order: `cdrwa`.
pub(crate) fn perms_text(p: i32) -> String {
    [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| p & bit != 0)
    .map(|(_, c)| c)
    .collect()
}

/// getAcl's output: `'world,'anyone` then `: cdrwa` for each entry.
pub(crate) fn acl_text(acl: &[Acl]) -> String {
    acl.iter()
        .map(|a| format!("'{},'{}\n: {}", a.id.scheme, a.id.id, perms_text(a.perms)))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn acl_json(acl: &[Acl]) -> Value {
    acl.iter()
        .map(|a| json!({"scheme": a.id.scheme, "id": a.id.id, "perms": perms_text(a.perms)}))
        .collect()
}

/// Parses zkCli's ACL syntax: `scheme:id:perms` entries separated by commas. The id is
/// everything between the first and the last colon (`digest:bob:hash=:cdrwa`), and the
/// permissions are letters of `cdrwa`.
pub(crate) fn parse_acl(text: &str) -> Result<Vec<Acl>, CliError> {
    let mut acl = Vec::new();
    for entry in text.split(',') {
        let (Some(first), Some(last)) = (entry.find(':'), entry.rfind(':')) else {
            return Err(bad_form(entry));
        };
        if first == last {
            return Err(bad_form(entry));
        }
        let mut bits = 0;
        for c in entry[last + 1..].chars() {
            bits |= match c {
                'c' => perms::CREATE,
                'd' => perms::DELETE,
                'r' => perms::READ,
                'w' => perms::WRITE,
                'a' => perms::ADMIN,
                other => {
                    return Err(CliError::BadAcl(format!(
                        "unknown permission '{other}' in {entry} (use the letters of cdrwa)"
                    )))
                }
            };
        }
        acl.push(Acl::new(bits, &entry[..first], &entry[first + 1..last]));
    }
    Ok(acl)
}

fn bad_form(entry: &str) -> CliError {
    CliError::BadAcl(format!("{entry} does not have the form scheme:id:perm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_block_matches_zkcli() {
        let stat = Stat {
            czxid: 2,
            mzxid: 9,
            ctime: 1_796_661_959_000,
            mtime: 1_796_661_959_000,
            version: 2,
            cversion: 1,
            aversion: 0,
            ephemeral_owner: 0xa25165c0bb0000,
            data_length: 6,
            num_children: 1,
            pzxid: 6,
        };
        assert_eq!(
            stat_text(&stat),
            "cZxid = 0x2\nctime = Mon Dec 07 16:45:59 UTC 2026\nmZxid = 0x9\n\
             mtime = Mon Dec 07 16:45:59 UTC 2026\npZxid = 0x6\ncversion = 1\ndataVersion = 2\n\
             aclVersion = 0\nephemeralOwner = 0xa25165c0bb0000\ndataLength = 6\nnumChildren = 1"
        );
        assert_eq!(stat_json(&stat)["ephemeralOwner"], 0xa25165c0bb0000_i64);
    }

    #[test]
    fn lists_and_acls_print_as_in_zkcli() {
        assert_eq!(list_text(&["a", "b"]), "[a, b]");
        assert_eq!(list_text::<&str>(&[]), "[]");
        let acl = parse_acl("world:anyone:r,digest:bob:fyVm=:cdrwa").unwrap();
        assert_eq!(
            acl_text(&acl),
            "'world,'anyone\n: r\n'digest,'bob:fyVm=\n: cdrwa"
        );
        assert_eq!(acl[1].perms, perms::ALL);
        assert_eq!(perms_text(perms::ALL), "cdrwa");
    }

    #[test]
    fn bad_acls_are_refused_with_a_reason() {
        let e = parse_acl("bad:acl").unwrap_err();
        assert_eq!(
            e.to_string(),
            "InvalidACL: bad:acl does not have the form scheme:id:perm"
        );
        assert!(parse_acl("world:anyone:zz")
            .unwrap_err()
            .to_string()
            .contains("unknown permission 'z'"));
        assert!(parse_acl("noscheme").is_err());
    }

    #[test]
    fn binary_data_goes_to_base64_in_json() {
        let mut m = Map::new();
        data_json(b"hello", &mut m);
        assert_eq!(m["data"], "hello");
        let mut m = Map::new();
        data_json(&[0xff, 0x00], &mut m);
        assert_eq!(m["data"], Value::Null);
        assert_eq!(m["dataBase64"], "/wA=");
    }
}
