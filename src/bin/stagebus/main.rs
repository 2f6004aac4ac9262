//! The `stagebus` command line: run a broker, list what is published on
//! one, call a method, serve the demo stage, or watch the in-process demo.
//!
//! ```text
//! stagebus broker --listen tcp://127.0.0.1:56789 [--listen unix:/path] [--token T] [--max-connections N]
//! stagebus list --broker ADDR [--token T] [--json] [--timeout SECS]
//! stagebus call --broker ADDR [--token T] [--timeout SECS] SESSION METHOD [key=value…]
//! stagebus serve --broker ADDR --name NAME [--token T]
//! stagebus demo
//! ```
//!
//! Exit status: 0 on success, 1 when the operation failed (the reason is
//! printed to stderr as `stagebus: <error>`), 2 when the command line is
//! wrong (a message and the usage go to stderr).
//!
//! The layout: this file is the entry (exit status, help, version,
//! dispatch); `command_line` holds every command's flags, the usage text
//! and the parser; each command has a module of its own (`broker`, `list`,
//! `call`, `serve`, `demo`); `connect` is the client connection that
//! `call` and `serve` share, and `stop_signals` turns SIGINT and SIGTERM
//! into a stop of the loop for `broker` and `serve`.
//!
//! Adding a command: write a module with
//! `fn cmd_NAME(args: &Parsed) -> Result<(), Failure>` and add one
//! `Command` entry to `command_line::COMMANDS` naming its flags; the shared
//! parser, the usage text and the dispatch pick it up from there.

mod broker;
mod call;
mod command_line;
mod connect;
mod demo;
mod list;
mod serve;
mod stop_signals;

use command_line::{command_usage, find_command, usage, Parsed};
use stagebus::Error;
use std::io::{self, Write};
use std::process::ExitCode;

/// Why a command did not succeed; decides the exit status.
#[derive(Debug)]
enum Failure {
    /// The command line is wrong: exit 2 with the usage.
    Usage(String),
    /// The operation failed: exit 1.
    Failed(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(message)) => {
            eprintln!("stagebus: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("stagebus: {message}\n\n{}", usage());
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some(first) = args.first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    match first.as_str() {
        "-h" | "--help" => return print_out(&usage()),
        "help" => {
            return match args.get(1) {
                None => print_out(&usage()),
                Some(name) => print_out(&command_usage(find_command(name)?)),
            }
        }
        "-V" | "--version" | "version" => {
            return print_out(&format!("stagebus {}", stagebus::VERSION))
        }
        _ => {}
    }
    let command = find_command(first)?;
    let parsed = Parsed::parse(command, &args[1..])?;
    if parsed.help {
        return print_out(&command_usage(command));
    }
    (command.run)(&parsed)
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

/// Prints a line to stdout at once; a reader that went away is ignored.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
