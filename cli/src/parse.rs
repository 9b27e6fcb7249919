//! The command language: zkCli's tokenizer, `;` between commands, and each command's grammar
//! (clap, with zkCli's names, flags and usage lines).

use std::sync::LazyLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use rookery_client::{AddWatchMode, WatcherType};

use crate::error::CliError;

/// One command: its name, usage line (zkCli's where zkCli has the command) and what it does.
pub(crate) struct Usage {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
}

/// Every command, in `help`'s order (zkCli's: by name, ignoring case).
pub(crate) const COMMANDS: &[Usage] = &[
    u(
        "addWatch",
        "addWatch [-m mode] path",
        "a persistent watch; mode PERSISTENT or PERSISTENT_RECURSIVE (default)",
    ),
    u(
        "addauth",
        "addauth scheme auth",
        "add credentials to the session (addauth digest user:password)",
    ),
    u("close", "close", "close the session"),
    u(
        "config",
        "config [-w] [-s]",
        "the ensemble configuration (/zookeeper/config)",
    ),
    u(
        "connect",
        "connect [host:port[,...][/chroot]]",
        "close the session and open one to these servers",
    ),
    u(
        "create",
        "create [-s] [-e] [-c] [-t ttl] path [data] [acl]",
        "create a node: -s sequential, -e ephemeral, -c container, -t TTL in ms",
    ),
    u(
        "delete",
        "delete [-v version] path",
        "delete a node without children",
    ),
    u(
        "deleteall",
        "deleteall path [-b batch size]",
        "delete a node and its whole subtree",
    ),
    u(
        "get",
        "get [-s] [-w] path",
        "a node's data (-s with its stat, -w with a data watch)",
    ),
    u("getAcl", "getAcl [-s] path", "a node's ACL"),
    u(
        "getAllChildrenNumber",
        "getAllChildrenNumber path",
        "the number of nodes below path",
    ),
    u(
        "getEphemerals",
        "getEphemerals [path]",
        "this session's ephemeral nodes (under path)",
    ),
    u("help", "help", "this list"),
    u("history", "history", "the last commands, numbered for redo"),
    u(
        "ls",
        "ls [-s] [-w] [-R] path",
        "a node's children (-R every path below it)",
    ),
    u(
        "printwatches",
        "printwatches [on|off]",
        "whether watch events are printed",
    ),
    u("quit", "quit", "close the session and leave"),
    u("redo", "redo cmdno", "run a command of history again"),
    u(
        "removewatches",
        "removewatches path [-c|-d|-a]",
        "remove this session's child, data or any watches on path",
    ),
    u(
        "set",
        "set [-s] [-v version] path data",
        "set a node's data",
    ),
    u(
        "setAcl",
        "setAcl [-s] [-v version] [-R] path acl",
        "set a node's ACL (-R on the whole subtree)",
    ),
    u(
        "stat",
        "stat [-w] path",
        "a node's stat (-w with a watch, also on a missing node)",
    ),
    u(
        "sync",
        "sync path",
        "wait until the server has every write committed before now",
    ),
    u(
        "tree",
        "tree [-d depth] [-n max] [path]",
        "the subtree as an indented tree with data sizes",
    ),
    u("version", "version", "the shell's version"),
    u(
        "whoami",
        "whoami",
        "the identities the server holds for this session",
    ),
];

const fn u(name: &'static str, usage: &'static str, about: &'static str) -> Usage {
    Usage { name, usage, about }
}

/// The usage line of the command called `name` (or one of its aliases).
fn usage_of(name: &str) -> Option<&'static str> {
    let sub = GRAMMAR.find_subcommand(name)?;
    COMMANDS
        .iter()
        .find(|c| c.name == sub.get_name())
        .map(|c| c.usage)
}

/// The command names, for completion.
pub(crate) fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

/// A persistent watch's mode, as zkCli spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WatchMode {
    #[value(name = "PERSISTENT")]
    Persistent,
    #[value(name = "PERSISTENT_RECURSIVE")]
    PersistentRecursive,
}

impl WatchMode {
    pub(crate) fn wire(self) -> AddWatchMode {
        match self {
            WatchMode::Persistent => AddWatchMode::Persistent,
            WatchMode::PersistentRecursive => AddWatchMode::PersistentRecursive,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            WatchMode::Persistent => "PERSISTENT",
            WatchMode::PersistentRecursive => "PERSISTENT_RECURSIVE",
        }
    }
}

#[derive(Debug, Parser)]
#[command(multicall = true, disable_help_subcommand = true)]
struct Line {
    #[command(subcommand)]
    cmd: Cmd,
}

/// A parsed command. Flags follow zkCli (single letters, anywhere on the line).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub(crate) enum Cmd {
    #[command(name = "ls")]
    Ls {
        #[arg(short = 's')]
        stat: bool,
        #[arg(short = 'w')]
        watch: bool,
        #[arg(short = 'R')]
        recursive: bool,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "tree")]
    Tree {
        #[arg(short = 'd', value_name = "depth", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
        depth: u32,
        #[arg(short = 'n', value_name = "max", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max: u32,
        #[arg(value_name = "path", default_value = "/")]
        path: String,
    },
    #[command(name = "get")]
    Get {
        #[arg(short = 's')]
        stat: bool,
        #[arg(short = 'w')]
        watch: bool,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "create")]
    Create {
        #[arg(short = 's')]
        sequential: bool,
        #[arg(short = 'e')]
        ephemeral: bool,
        #[arg(short = 'c')]
        container: bool,
        #[arg(short = 't', value_name = "ttl", value_parser = clap::value_parser!(u64).range(1..))]
        ttl: Option<u64>,
        #[arg(value_name = "path")]
        path: String,
        #[arg(value_name = "data")]
        data: Option<String>,
        #[arg(value_name = "acl")]
        acl: Option<String>,
    },
    #[command(name = "set")]
    Set {
        #[arg(short = 's')]
        stat: bool,
        #[arg(short = 'v', value_name = "version")]
        version: Option<i32>,
        #[arg(value_name = "path")]
        path: String,
        #[arg(value_name = "data")]
        data: String,
    },
    #[command(name = "delete")]
    Delete {
        #[arg(short = 'v', value_name = "version")]
        version: Option<i32>,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "deleteall", alias = "rmr")]
    DeleteAll {
        #[arg(short = 'b', value_name = "batch size", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "stat")]
    Stat {
        #[arg(short = 'w')]
        watch: bool,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "getAcl", alias = "getacl")]
    GetAcl {
        #[arg(short = 's')]
        stat: bool,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "setAcl", alias = "setacl")]
    SetAcl {
        #[arg(short = 's')]
        stat: bool,
        #[arg(short = 'v', value_name = "version")]
        version: Option<i32>,
        #[arg(short = 'R')]
        recursive: bool,
        #[arg(value_name = "path")]
        path: String,
        #[arg(value_name = "acl")]
        acl: String,
    },
    #[command(name = "addauth")]
    AddAuth {
        #[arg(value_name = "scheme")]
        scheme: String,
        #[arg(value_name = "auth")]
        auth: String,
    },
    #[command(name = "addWatch", alias = "addwatch")]
    AddWatch {
        #[arg(short = 'm', value_name = "mode", value_enum, ignore_case = true, default_value_t = WatchMode::PersistentRecursive)]
        mode: WatchMode,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "removewatches", alias = "removeWatches")]
    RemoveWatches {
        #[arg(short = 'c', conflicts_with_all = ["data", "any"])]
        child: bool,
        #[arg(short = 'd', conflicts_with = "any")]
        data: bool,
        #[arg(short = 'a')]
        any: bool,
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "sync")]
    Sync {
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "getAllChildrenNumber", alias = "getallchildrennumber")]
    GetAllChildrenNumber {
        #[arg(value_name = "path")]
        path: String,
    },
    #[command(name = "getEphemerals", alias = "getephemerals")]
    GetEphemerals {
        #[arg(value_name = "path", default_value = "/")]
        path: String,
    },
    #[command(name = "whoami", alias = "whoAmI")]
    WhoAmI,
    #[command(name = "config")]
    Config {
        #[arg(short = 'w')]
        watch: bool,
        #[arg(short = 's')]
        stat: bool,
    },
    #[command(name = "connect")]
    Connect {
        #[arg(value_name = "host:port")]
        servers: Option<String>,
    },
    #[command(name = "close")]
    Close,
    #[command(name = "quit", alias = "exit")]
    Quit,
    #[command(name = "help")]
    Help,
    #[command(name = "history")]
    History,
    #[command(name = "redo")]
    Redo {
        #[arg(value_name = "cmdno")]
        number: usize,
    },
    #[command(name = "printwatches")]
    PrintWatches {
        #[arg(value_name = "on|off", value_parser = ["on", "off"])]
        state: Option<String>,
    },
    #[command(name = "version")]
    Version,
}

impl Cmd {
    /// The watch type `removewatches` asks for (`-a`, any, when no flag is given).
    pub(crate) fn watcher_type(child: bool, data: bool) -> WatcherType {
        match (child, data) {
            (true, _) => WatcherType::Children,
            (_, true) => WatcherType::Data,
            _ => WatcherType::Any,
        }
    }
}

/// The grammar, built once. clap's own `-h` is off, so that `-h` is refused like any other
/// unknown flag (as in zkCli) instead of printing clap's help; `-1` is a value (a version,
/// data), not a flag.
static GRAMMAR: LazyLock<clap::Command> = LazyLock::new(|| {
    Line::command().mut_subcommands(|c| c.disable_help_flag(true).allow_negative_numbers(true))
});

/// Parses one tokenized command.
///
/// # Errors
/// [`CliError::UnknownCommand`] for a name that is not a command, [`CliError::Usage`] (the
/// command's usage line and what was wrong) for arguments that do not fit.
pub(crate) fn parse(tokens: &[String]) -> Result<Cmd, CliError> {
    let Some(name) = tokens.first() else {
        return Err(CliError::UnknownCommand(String::new()));
    };
    let Some(usage) = usage_of(name) else {
        return Err(CliError::UnknownCommand(name.clone()));
    };
    let matches = GRAMMAR
        .clone()
        .try_get_matches_from(tokens)
        .map_err(|e| CliError::Usage {
            usage,
            reason: reason(&e),
        })?;
    Line::from_arg_matches(&matches)
        .map(|l| l.cmd)
        .map_err(|e| CliError::Usage {
            usage,
            reason: reason(&e),
        })
}

/// What clap found wrong, in a few words.
fn reason(e: &clap::Error) -> Option<String> {
    if e.kind() == ErrorKind::MissingRequiredArgument {
        if let Some(ContextValue::Strings(missing)) = e.get(ContextKind::InvalidArg) {
            return Some(format!("missing {}", missing.join(" ")));
        }
    }
    let text = e.to_string();
    let first = text.lines().next()?.trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    (!first.is_empty()).then(|| first.to_owned())
}

/// Splits a line into words as zkCli does: a word that starts with `"` or `'` runs to the
/// matching quote (which is dropped) and may hold spaces; any other word runs to the next
/// whitespace, quotes included. There are no escapes, so `C:\dir` stays as typed.
pub(crate) fn tokenize(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while let Some(first) = rest.chars().next() {
        let end = if first == '"' || first == '\'' {
            let body = &rest[1..];
            match body.find(first) {
                Some(close) => {
                    words.push(body[..close].to_owned());
                    1 + close + 1
                }
                // An unclosed quote runs to the end of the line.
                None => {
                    words.push(body.to_owned());
                    rest.len()
                }
            }
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            end
        };
        rest = rest[end..].trim_start();
    }
    words
}

/// Splits `-c` text into commands at each `;` outside quoted words (quoted as in
/// [`tokenize`]); empty commands are dropped.
pub(crate) fn split_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut start = 0;
    let mut at_word_start = true;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == ';' => {
                commands.push(&text[start..i]);
                start = i + 1;
                at_word_start = true;
                continue;
            }
            None if at_word_start && (c == '"' || c == '\'') => quote = Some(c),
            None => {}
        }
        at_word_start = quote.is_none() && c.is_whitespace();
    }
    commands.push(&text[start..]);
    commands
        .into_iter()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokenize(line)
    }

    fn parsed(line: &str) -> Result<Cmd, CliError> {
        parse(&tokenize(line))
    }

    #[test]
    fn tokenizer_follows_zkcli() {
        assert_eq!(words("  ls   / "), ["ls", "/"]);
        assert_eq!(
            words("set /a \"hello world\""),
            ["set", "/a", "hello world"]
        );
        assert_eq!(words("set /a 'say \"hi\"'"), ["set", "/a", "say \"hi\""]);
        assert_eq!(words("set /a it's"), ["set", "/a", "it's"]);
        assert_eq!(words(r"set /a C:\dir"), ["set", "/a", r"C:\dir"]);
        assert_eq!(words("create /a ''"), ["create", "/a", ""]);
        assert_eq!(words("set /a 'open"), ["set", "/a", "open"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn semicolons_split_commands_outside_quotes() {
        assert_eq!(
            split_commands("create /a x; get /a;;ls /"),
            ["create /a x", "get /a", "ls /"]
        );
        assert_eq!(
            split_commands("set /a 'x;y'; get /a"),
            ["set /a 'x;y'", "get /a"]
        );
        assert!(split_commands(" ; ").is_empty());
    }

    #[test]
    fn flags_go_anywhere_as_in_zkcli() {
        assert_eq!(
            parsed("ls /a -R").unwrap(),
            Cmd::Ls {
                stat: false,
                watch: false,
                recursive: true,
                path: "/a".into()
            }
        );
        assert_eq!(
            parsed("create -e -s /lock- x").unwrap(),
            Cmd::Create {
                sequential: true,
                ephemeral: true,
                container: false,
                ttl: None,
                path: "/lock-".into(),
                data: Some("x".into()),
                acl: None
            }
        );
        assert_eq!(
            parsed("set -v -1 /a -5").unwrap(),
            Cmd::Set {
                stat: false,
                version: Some(-1),
                path: "/a".into(),
                data: "-5".into()
            }
        );
        assert_eq!(
            parsed("addWatch -m persistent /a").unwrap(),
            Cmd::AddWatch {
                mode: WatchMode::Persistent,
                path: "/a".into()
            }
        );
        assert!(matches!(parsed("getacl /a").unwrap(), Cmd::GetAcl { .. }));
    }

    #[test]
    fn bad_syntax_gives_the_usage_line() {
        let e = parsed("ls").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Usage: ls [-s] [-w] [-R] path (missing <path>)"
        );
        let e = parsed("get -x /a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Usage: get [-s] [-w] path (unexpected argument '-x' found)"
        );
        let e = parsed("set -v x /a b").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Usage: set [-s] [-v version] path data ("));
        assert!(parsed("removewatches /a -c -d").is_err());
        assert!(parsed("printwatches maybe").is_err());
        assert!(parsed("ls -h /").is_err());
        assert_eq!(
            parsed("bogus /").unwrap_err().to_string(),
            "UnknownCommand: bogus (help lists the commands)"
        );
    }

    #[test]
    fn every_command_has_a_usage_line_and_parses() {
        for c in COMMANDS {
            let sub = GRAMMAR
                .get_subcommands()
                .find(|s| s.get_name() == c.name)
                .unwrap_or_else(|| panic!("no grammar for {}", c.name));
            assert!(c.usage.starts_with(sub.get_name()));
        }
        assert_eq!(GRAMMAR.get_subcommands().count(), COMMANDS.len());
    }
}
