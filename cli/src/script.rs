//! Non-interactive runs: commands from `-c`, from a file (`-f`), from the words after the
//! options (zkCli's `cmd args`), or from standard input when it is not a terminal.

use std::io::BufRead;
use std::path::Path;

use crate::error::CliError;
use crate::parse;
use crate::shell::{Ran, Shell};

/// One command to run.
pub(crate) enum Input {
    /// A line to tokenize.
    Line(String),
    /// Words already split by the calling shell.
    Words(Vec<String>),
}

/// The commands of `-c` texts, `;` separating commands within one.
pub(crate) fn from_commands(texts: &[String]) -> Vec<Input> {
    texts
        .iter()
        .flat_map(|t| parse::split_commands(t))
        .map(Input::Line)
        .collect()
}

/// The command lines of a script: blank lines and `#` comments are skipped.
fn command_line(line: &str) -> Option<Input> {
    let line = line.trim();
    (!line.is_empty() && !line.starts_with('#')).then(|| Input::Line(line.to_owned()))
}

/// The commands in `path`.
///
/// # Errors
/// [`CliError::Io`] if the file cannot be read.
pub(crate) fn from_file(path: &Path) -> Result<Vec<Input>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        what: format!("reading {}", path.display()),
        source,
    })?;
    Ok(text.lines().filter_map(command_line).collect())
}

/// Standard input's commands, read as they come (a pipe from a slow producer works). A read
/// error is reported once and ends the input.
pub(crate) fn from_stdin() -> impl Iterator<Item = Result<Input, CliError>> {
    let mut broken = false;
    std::io::stdin()
        .lock()
        .lines()
        .map_while(move |line| {
            if broken {
                return None;
            }
            broken = line.is_err();
            Some(line.map_err(|source| CliError::Io {
                what: "reading standard input".into(),
                source,
            }))
        })
        .filter_map(|line| line.map(|l| command_line(&l)).transpose())
}

/// Runs every command (after a failure too, as zkCli does) until the end or `quit`. The exit
/// status is 0 if all succeeded, 1 otherwise.
pub(crate) fn run(shell: &mut Shell, inputs: impl Iterator<Item = Result<Input, CliError>>) -> i32 {
    let mut failed = false;
    for input in inputs {
        let ran = match input {
            Ok(Input::Line(line)) => shell.run_line(&line),
            Ok(Input::Words(words)) => {
                let line = words.join(" ");
                shell.run_tokens(words, &line)
            }
            Err(e) => {
                eprintln!("{e}");
                Ran::Failed
            }
        };
        match ran {
            Ran::Ok => {}
            Ran::Failed => failed = true,
            Ran::Quit => break,
        }
    }
    shell.close_session();
    i32::from(failed)
}
