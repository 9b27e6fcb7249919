//! [`Shell`]: the session, the command history, and running one command line to its printed
//! result. The interactive loop ([`crate::repl`]) and scripts ([`crate::script`]) both drive it.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rookery_client::{Client, LossReason, SessionEventKind, SessionState};
use serde_json::{json, Map, Value};
use tokio::runtime::Runtime;

use crate::error::CliError;
use crate::ops::{self, Ctx, Outcome};
use crate::parse::{self, Cmd, COMMANDS};
use crate::watches::Watches;

/// How long closing a session may take on the way out or on `connect`/`close` (a server that
/// is gone expires the session by itself).
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// How many earlier commands `history` lists (zkCli's ten, plus the `history` itself).
const HISTORY_SHOWN: usize = 11;

/// The session, shared with the completer, which lists children while a line is edited.
pub(crate) type SharedClient = Arc<Mutex<Option<Client>>>;

/// The shell's settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub connect: String,
    pub session_timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub read_only: bool,
    pub json: bool,
    /// A person at a terminal: session state changes are printed, Ctrl-C stops a command.
    pub interactive: bool,
}

/// What running a line came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    Ok,
    Failed,
    Quit,
}

enum Step {
    Out(Outcome),
    Quit,
}

/// A shell: one session (or none), the commands run so far, and where watch events go.
pub(crate) struct Shell {
    rt: Runtime,
    opts: Options,
    client: SharedClient,
    /// The first server command connects (so `help` needs no server); `close` and a failed
    /// `connect` clear it, so that later commands fail at once instead of waiting again.
    connect_pending: bool,
    /// One more for each session opened: watches are keyed by it.
    generation: u64,
    watches: Arc<Watches>,
    /// Every command line run, numbered from 0 as in the prompt.
    history: Vec<String>,
}

impl Shell {
    pub(crate) fn new(rt: Runtime, opts: Options) -> Shell {
        let watches = Watches::new(opts.json);
        Shell {
            rt,
            opts,
            client: Arc::new(Mutex::new(None)),
            connect_pending: true,
            generation: 0,
            watches,
            history: Vec::new(),
        }
    }

    pub(crate) fn connect_string(&self) -> &str {
        &self.opts.connect
    }

    pub(crate) fn runtime(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    pub(crate) fn shared_client(&self) -> SharedClient {
        self.client.clone()
    }

    pub(crate) fn watches(&self) -> &Arc<Watches> {
        &self.watches
    }

    /// zkCli's prompt: `[zk: 127.0.0.1:2181(CONNECTED) 3] `.
    pub(crate) fn prompt(&self) -> String {
        let state = match lock(&self.client).as_ref().map(Client::state) {
            Some(SessionState::Connected) => "CONNECTED",
            Some(SessionState::ConnectedReadOnly) => "CONNECTEDREADONLY",
            Some(SessionState::Disconnected) => "CONNECTING",
            Some(SessionState::AuthFailed) => "AUTH_FAILED",
            _ => "CLOSED",
        };
        format!(
            "[zk: {}({state}) {}] ",
            self.opts.connect,
            self.history.len()
        )
    }

    /// Opens a session to the configured servers now (closing any other), waiting at most the
    /// connect timeout.
    ///
    /// # Errors
    /// [`CliError::Connect`] when no session came up.
    pub(crate) fn connect(&mut self) -> Result<(), CliError> {
        self.connect_pending = false;
        self.close_session();
        self.generation += 1;
        let connect = self.opts.connect.clone();
        let builder = Client::builder(&connect)
            .session_timeout(self.opts.session_timeout)
            .connect_timeout(self.opts.connect_timeout)
            .read_only(self.opts.read_only);
        // The builder bounds the wait itself; this is a backstop a little later.
        let backstop = self.opts.connect_timeout + Duration::from_secs(1);
        let connected = self
            .rt
            .block_on(async { tokio::time::timeout(backstop, builder.connect()).await });
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let reason = match e {
                    rookery_client::Error::Timeout(_) => self.no_session(),
                    rookery_client::Error::InvalidArgument(why) => why,
                    other => other.to_string(),
                };
                return Err(CliError::Connect { connect, reason });
            }
            Err(_) => {
                let reason = self.no_session();
                return Err(CliError::Connect { connect, reason });
            }
        };
        tracing::debug!(session_id = client.session_id(), %connect, "connected");
        if self.opts.interactive {
            self.report_session_changes(&client);
        }
        *lock(&self.client) = Some(client);
        Ok(())
    }

    fn no_session(&self) -> String {
        let ms = self.opts.connect_timeout.as_millis();
        format!("no session within {ms} ms (is a server listening there?)")
    }

    /// Prints the session's state changes as zkCli does (`state:Disconnected type:None`).
    fn report_session_changes(&self, client: &Client) {
        let mut events = client.session_events();
        let watches = self.watches.clone();
        self.rt.spawn(async move {
            while let Some(ev) = events.next().await {
                let state = match ev.kind {
                    SessionEventKind::Suspended => "Disconnected",
                    SessionEventKind::Connected | SessionEventKind::Reconnected { .. } => {
                        "SyncConnected"
                    }
                    SessionEventKind::ReadOnly => "ConnectedReadOnly",
                    SessionEventKind::Lost(LossReason::AuthFailed) => "AuthFailed",
                    // Closed by this shell: it says so itself.
                    SessionEventKind::Lost(LossReason::Closed) => break,
                    SessionEventKind::Lost(_) => "Expired",
                    _ => continue,
                };
                watches.session_event(state);
            }
        });
    }

    /// Closes the session, if any, waiting at most [`CLOSE_WAIT`].
    pub(crate) fn close_session(&mut self) {
        let old = lock(&self.client).take();
        if let Some(client) = old {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, client.close()).await });
        }
    }

    /// Runs one line typed or read from a script, prints its result, and says how it went.
    pub(crate) fn run_line(&mut self, line: &str) -> Ran {
        let tokens = parse::tokenize(line);
        if tokens.is_empty() {
            return Ran::Ok;
        }
        self.run_tokens(tokens, line.trim())
    }

    /// As [`Shell::run_line`], for words already split (zkCli's `cmd args` after the options).
    pub(crate) fn run_tokens(&mut self, mut tokens: Vec<String>, line: &str) -> Ran {
        let mut line = line.to_owned();
        let mut cmd = parse::parse(&tokens);
        // `redo N` runs line N again, and history records that line rather than the redo.
        if let Ok(Cmd::Redo { number }) = cmd {
            match self.history.get(number) {
                Some(old) => {
                    line = old.clone();
                    tokens = parse::tokenize(&line);
                    cmd = parse::parse(&tokens);
                }
                None => {
                    let e = CliError::BadArgument(format!("no command {number} in history"));
                    self.print_err("redo", &e);
                    return Ran::Failed;
                }
            }
        }
        self.history.push(line);
        let name = tokens.first().cloned().unwrap_or_default();
        match cmd.and_then(|cmd| self.dispatch(cmd)) {
            Ok(Step::Quit) => Ran::Quit,
            Ok(Step::Out(out)) => {
                self.print_ok(&name, out);
                Ran::Ok
            }
            Err(e) => {
                tracing::debug!(command = %name, error = %e, "command failed");
                self.print_err(&name, &e);
                Ran::Failed
            }
        }
    }

    fn dispatch(&mut self, cmd: Cmd) -> Result<Step, CliError> {
        let out = match cmd {
            Cmd::Quit => return Ok(Step::Quit),
            Cmd::Help => help(),
            Cmd::History => self.history_list(),
            Cmd::PrintWatches { state } => {
                if let Some(state) = state {
                    self.watches.set_enabled(state == "on");
                    Outcome::quiet().with("printwatches", self.watches.enabled())
                } else {
                    let on = self.watches.enabled();
                    Outcome::text(format!("printwatches is {}", if on { "on" } else { "off" }))
                        .with("printwatches", on)
                }
            }
            Cmd::Connect { servers } => {
                if let Some(servers) = servers {
                    self.opts.connect = servers;
                }
                self.connect()?;
                Outcome::quiet().with("connected", self.opts.connect.clone())
            }
            Cmd::Close => {
                self.connect_pending = false;
                self.close_session();
                Outcome::quiet()
            }
            Cmd::Version => {
                let v = env!("CARGO_PKG_VERSION");
                Outcome::text(format!("rookery cli {v}")).with("version", v)
            }
            Cmd::Redo { .. } => return Err(CliError::BadArgument("redo cannot run a redo".into())),
            remote => self.on_server(remote)?,
        };
        Ok(Step::Out(out))
    }

    /// Runs a server command, connecting first if no command has yet.
    fn on_server(&mut self, cmd: Cmd) -> Result<Outcome, CliError> {
        if self.connect_pending {
            self.connect()?;
        }
        let client = lock(&self.client).clone().ok_or(CliError::NotConnected)?;
        let ctx = Ctx {
            client,
            timeout: self.opts.request_timeout,
            watches: self.watches.clone(),
            generation: self.generation,
        };
        let interactive = self.opts.interactive;
        self.rt.block_on(async {
            if !interactive {
                return ops::run(&ctx, cmd).await;
            }
            // Ctrl-C at the prompt is rustyline's; during a command it stops the command.
            tokio::select! {
                r = ops::run(&ctx, cmd) => r,
                () = interrupted() => Err(CliError::Interrupted),
            }
        })
    }

    fn history_list(&self) -> Outcome {
        let start = self.history.len().saturating_sub(HISTORY_SHOWN);
        let shown = &self.history[start..];
        let text: Vec<String> = shown
            .iter()
            .enumerate()
            .map(|(i, line)| format!("{} - {line}", start + i))
            .collect();
        let json: Vec<Value> = shown
            .iter()
            .enumerate()
            .map(|(i, line)| json!({"number": start + i, "command": line}))
            .collect();
        Outcome::text(text.join("\n")).with("history", json)
    }

    fn print_ok(&self, name: &str, out: Outcome) {
        let mut stdout = std::io::stdout().lock();
        if self.opts.json {
            let mut line = Map::new();
            line.insert("ok".into(), Value::Bool(true));
            line.insert("command".into(), Value::from(name));
            line.extend(out.json);
            let _ = writeln!(stdout, "{}", Value::Object(line));
        } else if let Some(text) = out.text {
            let _ = writeln!(stdout, "{text}");
        }
        let _ = stdout.flush();
    }

    /// Errors go to stderr as one line, or to stdout as a JSON line with `--json` (a script
    /// reads one stream).
    fn print_err(&self, name: &str, e: &CliError) {
        if self.opts.json {
            let mut line = json!({
                "ok": false,
                "command": name,
                "error": e.name(),
                "message": e.message(),
            });
            if let Some(code) = e.code() {
                line["code"] = json!(code);
            }
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        } else {
            eprintln!("{e}");
        }
    }
}

/// Resolves on Ctrl-C; never, if the signal cannot be watched.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `help`: zkCli's list of usage lines, each with what the command does.
fn help() -> Outcome {
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    let mut text = String::from(
        "rookery cli [--server host:port[,host:port...][/chroot]] [--json] [-c 'cmd; cmd'] \
         [-f file] [cmd args]",
    );
    for c in COMMANDS {
        text.push_str(&format!("\n\t{:width$}  {}", c.usage, c.about));
    }
    let usages: Vec<&str> = COMMANDS.iter().map(|c| c.usage).collect();
    Outcome::text(text).with("commands", usages)
}

/// Locks a mutex, ignoring poisoning: the guarded `Option<Client>` is replaced whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
