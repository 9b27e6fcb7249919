//! `rookery cli`: a ZooKeeper shell with zkCli.sh's commands, flags and output, plus line
//! editing, persistent history, Tab completion of paths from the live tree, watch events
//! printed as they arrive, `tree`, and a `--json` mode for scripts.
//!
//! ## Layout
//! - [`Args`] and [`run`]: the command line, and the choice between an interactive shell
//!   (stdin is a terminal and no commands were given) and a script.
//! - `parse`: zkCli's tokenizer, `;` between commands, and each command's grammar (clap, with
//!   zkCli's usage lines).
//! - `shell`: the session and the history; runs a line to its printed result.
//! - `ops`: the server commands, one function each, every request under the request timeout;
//!   `walk`: the subtree commands (`ls -R`, `deleteall`, `setAcl -R`, `tree`), bounded.
//! - `watches`: the tasks that wait for watch events and print them once, zkCli's way.
//! - `format`: zkCli's output formats and ACL syntax; `error`: [`CliError`], one line
//!   starting with ZooKeeper's name for what went wrong.
//! - `repl`: rustyline (history file, completion, events above the edited line); `script`:
//!   `-c`, `-f`, trailing words and piped stdin.
//!
//! See `docs/cli.md` for the commands and the differences from zkCli.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

mod error;
mod format;
mod ops;
mod parse;
mod repl;
mod script;
mod shell;
mod walk;
mod watches;

use error::CliError;

use shell::{Options, Shell};

/// `rookery cli`: the options. zkCli's single-dash forms (`-server host:port`, `-timeout ms`)
/// work too once [`zkcli_args`] has rewritten them.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The servers' connect string: host:port[,host:port...][/chroot] (zkCli's -server).
    #[arg(long, default_value = "127.0.0.1:2181", value_name = "CONNECT")]
    pub server: String,
    /// The session timeout to ask for, in milliseconds (zkCli's -timeout).
    #[arg(long, default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout: u64,
    /// How long to wait for the first connection, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub connect_timeout: u64,
    /// How long any one request may wait for its reply, in milliseconds.
    #[arg(long, default_value_t = 15_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout: u64,
    /// Accept a read-only server (zkCli's -r).
    #[arg(short = 'r', long)]
    pub read_only: bool,
    /// Run these commands and exit (repeatable; `;` separates commands within one).
    #[arg(short = 'c', long = "command", value_name = "COMMANDS")]
    pub commands: Vec<String>,
    /// Run the commands in FILE, one per line (`#` starts a comment), and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print each result as one JSON object per line, errors and watch events too.
    #[arg(long)]
    pub json: bool,
    /// The interactive history file [default: ~/.rookery_cli_history].
    #[arg(long, env = "ROOKERY_CLI_HISTORY", value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// A command and its arguments to run once, as zkCli takes them after its options.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD ARGS"
    )]
    pub command: Vec<String>,
}

const AFTER_HELP: &str = "\
Without -c, -f or CMD, and with a terminal on stdin, it is an interactive shell (Tab completes \
commands and paths, Up recalls history, `help` lists the commands); with stdin piped, it runs \
the commands read from it. zkCli's -server and -timeout work as well.

Exit status: 0 when every command succeeded, 1 when one failed (the others still run), 2 for \
a bad command line.";

/// Rewrites zkCli's single-dash options after the `cli` subcommand (`-server host:port` to
/// `--server host:port`, `-timeout ms` to `--timeout ms`; `-waitforconnection` is dropped, as
/// the shell always waits) so that clap can parse them. Other arguments are left alone, and
/// nothing after a `--`.
pub fn zkcli_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut in_cli = false;
    let mut done = false;
    for (i, arg) in args.into_iter().map(Into::into).enumerate() {
        if !in_cli || done {
            // The first argument is the program; the subcommand is the first `cli` after it.
            in_cli = i > 0 && arg == "cli";
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                done = true;
                out.push(arg);
            }
            Some("-server") => out.push("--server".into()),
            Some("-timeout") => out.push("--timeout".into()),
            Some("-waitforconnection") => {}
            _ => out.push(arg),
        }
    }
    out
}

/// Runs `rookery cli`; returns the exit status.
pub fn run(args: Args) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        // The session's task must keep running (pings) while the prompt waits for a line, so
        // the runtime has threads of its own.
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("IOError: cannot start the tokio runtime: {e}");
            return 1;
        }
    };
    let scripted = !args.commands.is_empty() || args.file.is_some() || !args.command.is_empty();
    let interactive = !scripted && std::io::stdin().is_terminal();
    let opts = Options {
        connect: args.server.clone(),
        session_timeout: Duration::from_millis(args.timeout),
        connect_timeout: Duration::from_millis(args.connect_timeout),
        request_timeout: Duration::from_millis(args.request_timeout),
        read_only: args.read_only,
        json: args.json,
        interactive,
    };
    let mut shell = Shell::new(rt, opts);
    if interactive {
        let history = args.history.clone().or_else(repl::default_history);
        return repl::run(&mut shell, history);
    }
    if !scripted {
        return script::run(&mut shell, script::from_stdin());
    }
    let mut inputs: Vec<Result<script::Input, CliError>> = script::from_commands(&args.commands)
        .into_iter()
        .map(Ok)
        .collect();
    if let Some(file) = &args.file {
        match script::from_file(file) {
            Ok(lines) => inputs.extend(lines.into_iter().map(Ok)),
            Err(e) => inputs.push(Err(e)),
        }
    }
    if !args.command.is_empty() {
        inputs.push(Ok(script::Input::Words(args.command.clone())));
    }
    script::run(&mut shell, inputs.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Vec<String> {
        zkcli_args(args.iter().copied())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn zkcli_options_are_rewritten_after_cli_only() {
        assert_eq!(
            rewritten(&["rookery", "cli", "-server", "h:1", "-timeout", "5000", "ls", "/"]),
            [
                "rookery",
                "cli",
                "--server",
                "h:1",
                "--timeout",
                "5000",
                "ls",
                "/"
            ]
        );
        assert_eq!(
            rewritten(&[
                "rookery",
                "--log-format",
                "json",
                "cli",
                "-waitforconnection",
                "-server",
                "h"
            ]),
            ["rookery", "--log-format", "json", "cli", "--server", "h"]
        );
        assert_eq!(
            rewritten(&["rookery", "server", "-server"]),
            ["rookery", "server", "-server"]
        );
        assert_eq!(
            rewritten(&["rookery", "cli", "--", "-server"]),
            ["rookery", "cli", "--", "-server"]
        );
        assert_eq!(rewritten(&["cli", "-server"]), ["cli", "-server"]);
    }
}
