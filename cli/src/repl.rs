//! The interactive loop: rustyline for editing, history (kept in a file across runs) and Tab
//! completion of command names and of paths from the live tree; watch events are printed
//! above the line being edited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Context, Editor};
use rustyline::{Helper, Highlighter, Hinter, Validator};

use crate::parse;
use crate::shell::{Ran, SharedClient, Shell};

/// How long Tab may wait for the server to list a node's children.
const COMPLETION_WAIT: Duration = Duration::from_secs(2);

/// How many lines the history file keeps.
const HISTORY_LINES: usize = 1000;

/// Runs the shell at a terminal until `quit` or end of input; the exit status is 0.
pub(crate) fn run(shell: &mut Shell, history: Option<PathBuf>) -> i32 {
    let mut editor = match editor(shell) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("IOError: cannot set up the terminal: {e}");
            return 1;
        }
    };
    if let Some(path) = &history {
        // A missing file is the first run; anything else is worth a word but not a stop.
        if let Err(e) = editor.load_history(path) {
            if !is_not_found(&e) {
                eprintln!("IOError: cannot read the history {}: {e}", path.display());
            }
        }
    }
    if let Ok(printer) = editor.create_external_printer() {
        shell.watches().use_printer(Box::new(printer));
    }
    println!("Connecting to {}", shell.connect_string());
    if let Err(e) = shell.connect() {
        eprintln!("{e}");
    }
    let mut history = history;
    loop {
        let line = match editor.readline(&shell.prompt()) {
            Ok(line) => line,
            // Ctrl-C drops the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("IOError: cannot read the terminal: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if let Some(path) = &history {
            // Saved at each line, so that a killed shell keeps what was typed.
            if let Err(e) = editor.append_history(path) {
                eprintln!("IOError: cannot write the history {}: {e}", path.display());
                history = None;
            }
        }
        if shell.run_line(&line) == Ran::Quit {
            break;
        }
    }
    shell.close_session();
    0
}

fn is_not_found(e: &ReadlineError) -> bool {
    matches!(e, ReadlineError::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
}

fn editor(shell: &Shell) -> rustyline::Result<Editor<PathHelper, DefaultHistory>> {
    let config = Config::builder()
        // Bash's way: complete the common prefix, list the candidates on a second Tab.
        .completion_type(CompletionType::List)
        .max_history_size(HISTORY_LINES)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .build();
    let mut editor = Editor::with_config(config)?;
    editor.set_helper(Some(PathHelper {
        completer: TreeCompleter {
            runtime: shell.runtime(),
            client: shell.shared_client(),
        },
    }));
    Ok(editor)
}

/// The default history file: `~/.rookery_cli_history`.
pub(crate) fn default_history() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(".rookery_cli_history"))
}

#[derive(Helper, Hinter, Highlighter, Validator)]
struct PathHelper {
    completer: TreeCompleter,
}

impl Completer for PathHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.completer.complete(&line[..pos]))
    }
}

/// Completes the word before the cursor: a command name as the first word, a path (from the
/// server, listing the children of the typed path's parent) where a word starts with `/`.
struct TreeCompleter {
    runtime: tokio::runtime::Handle,
    client: SharedClient,
}

impl TreeCompleter {
    fn complete(&self, before: &str) -> (usize, Vec<Pair>) {
        let start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let word = &before[start..];
        let candidates = if before[..start].trim().is_empty() {
            parse::command_names()
                .filter(|n| n.starts_with(word))
                .map(|n| pair(n, format!("{n} ")))
                .collect()
        } else if word.starts_with('/') {
            self.paths(word)
        } else {
            Vec::new()
        };
        (start, candidates)
    }

    fn paths(&self, word: &str) -> Vec<Pair> {
        let Some(slash) = word.rfind('/') else {
            return Vec::new();
        };
        let (parent, prefix) = (&word[..slash.max(1)], &word[slash + 1..]);
        let Some(client) = self.client.lock().ok().and_then(|c| c.clone()) else {
            return Vec::new();
        };
        let listing = self.runtime.block_on(async {
            tokio::time::timeout(COMPLETION_WAIT, client.get_children(parent)).await
        });
        // No completion is the answer to every failure: Tab must never print errors.
        let Ok(Ok(children)) = listing else {
            return Vec::new();
        };
        let base = if parent == "/" { "" } else { parent };
        children
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .map(|c| {
                let full = format!("{base}/{c}");
                pair(&c, full)
            })
            .collect()
    }
}

fn pair(display: &str, replacement: String) -> Pair {
    Pair {
        display: display.to_owned(),
        replacement,
    }
}
