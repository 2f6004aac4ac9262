//! The `stagebus` command line: run a broker, list what is published on
//! one, call a method, serve the demo stage, or watch the in-process demo.
//!
//! ```text
//! stagebus broker --listen tcp://127.0.0.1:56789 [--listen unix:/path] [--config FILE] [--token-file FILE] [--socket-mode MODE] [--policy FILE] [--max-connections N]
//! stagebus list --broker ADDR [--token-file FILE] [--json] [--timeout SECS]
//! stagebus call --broker ADDR [--token-file FILE] [--client-name NAME] [--timeout SECS] [--json-args JSON] [--oneway] SESSION METHOD [key=value…]
//! stagebus serve --broker ADDR --name NAME [--token-file FILE] [--mode exclusive|queue|balance] [--no-reconnect]
//! stagebus stats --broker ADDR [--token-file FILE] [--json | --prometheus] [--timeout SECS]
//! stagebus monitor --broker ADDR [--token-file FILE] [--session NAME] [--json] [--payload]
//! stagebus listen --broker ADDR [--token-file FILE] [--reconnect] [SESSION [SIGNAL]]
//! stagebus watch --broker ADDR [--token-file FILE] [--reconnect] [NAME]
//! stagebus demo
//! ```
//!
//! Every command takes its token from `--token T` (readable by other
//! local users in `/proc/PID/cmdline`), `--token-file FILE` or
//! `STAGEBUS_TOKEN` (see `secret`).
//!
//! Exit status: 0 on success, 1 when the operation failed (the reason is
//! printed to stderr as `stagebus: <error>`), 2 when the command line is
//! wrong (a message and the usage go to stderr).
//!
//! The layout: this file is the entry (exit status, help, version,
//! dispatch); `command_line` describes the command line for clap (the
//! top-level parser, the flags shared by several commands, the usage text
//! drawn from clap's model); each command has a module of its own
//! (`broker`, `list`, `call`, `serve`, `demo`) holding its flags (a
//! `clap::Args` struct) and its `cmd_NAME`; `generate` prints the man page
//! and the shell completions; `connect` is the client connection that
//! `list`, `call` and `serve` share, `stop_signals` turns SIGINT and
//! SIGTERM into a stop of the loop for `broker` and `serve`, and
//! `systemd` holds the broker's socket activation and readiness
//! notification.
//!
//! Adding a command: write a module with a `#[derive(clap::Args)]` struct
//! of its flags and `fn cmd_NAME(args: &NameArgs) -> Result<(), Failure>`,
//! add one variant to `command_line::Cmd` and one arm to [`dispatch`]; the
//! usage text, the man page and the completions pick it up from there.

mod broker;
mod call;
mod command_line;
mod config_file;
mod connect;
mod demo;
mod generate;
mod list;
mod listen;
mod logging;
mod monitor;
mod secret;
mod serve;
mod stats;
mod stop_signals;
mod systemd;
mod watch;

use clap::error::ErrorKind;
use clap::FromArgMatches;
use command_line::{usage, Cli, Cmd};
use stagebus::Error;
use std::ffi::OsString;
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
    match run(std::env::args_os().skip(1)) {
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

/// Parses the words after the program's name and runs the command.
fn run<I>(words: I) -> Result<(), Failure>
where
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let all = std::iter::once(OsString::from("stagebus")).chain(words.into_iter().map(Into::into));
    let cli = match command_line::command()
        .try_get_matches_from(all)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        // --help, help, --version: the text goes to stdout, exit 0.
        Err(e) if !e.use_stderr() => return print_out(&e.to_string()),
        Err(e) => return Err(clap_failure(&e)),
    };
    dispatch(&cli.command)
}

fn dispatch(command: &Cmd) -> Result<(), Failure> {
    match command {
        Cmd::Broker(args) => broker::cmd_broker(args),
        Cmd::List(args) => list::cmd_list(args),
        Cmd::Call(args) => call::cmd_call(args),
        Cmd::Serve(args) => serve::cmd_serve(args),
        Cmd::Stats(args) => stats::cmd_stats(args),
        Cmd::Monitor(args) => monitor::cmd_monitor(args),
        Cmd::Demo(args) => demo::cmd_demo(args),
        Cmd::Listen(args) => listen::cmd_listen(args),
        Cmd::Watch(args) => watch::cmd_watch(args),
        Cmd::Version => print_out(&format!("stagebus {}", stagebus::VERSION)),
        Cmd::Generate(args) => generate::cmd_generate(args),
    }
}

/// clap's complaint as a usage failure: its first line, without clap's
/// `error: ` (the usage is printed after it).
fn clap_failure(e: &clap::Error) -> Failure {
    if matches!(
        e.kind(),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return Failure::Usage("no command given".into());
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    Failure::Usage(first.strip_prefix("error: ").unwrap_or(first).to_string())
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

/// Prints a line to stdout at once; a reader that went away is ignored.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
