//! The command line's grammar, described once for clap (derive): every
//! command's flags and positionals, the checks of their values, and the
//! usage text drawn from that description (the same description gives
//! the man page and the shell completions, see `generate`).
//!
//! The usage keeps the project's compact synopsis form
//! (`stagebus list --broker ADDR [--token T] …`), built from clap's model
//! of each command rather than written by hand.

use crate::broker::BrokerArgs;
use crate::call::CallArgs;
use crate::demo::DemoArgs;
use crate::generate::GenerateArgs;
use crate::list::ListArgs;
use crate::listen::ListenArgs;
use crate::monitor::MonitorArgs;
use crate::serve::ServeArgs;
use crate::stats::StatsArgs;
use crate::watch::WatchArgs;
use crate::Failure;
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use stagebus::{Address, ClientConfig};
use std::fmt::Write as _;
use std::time::Duration;

/// How long `list` and `call` wait for the broker unless told otherwise
/// (`--timeout`), and how long `serve` waits to connect and publish.
pub(crate) const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

/// The last lines of the usage text.
const EXIT_STATUS: &str = "exit status: 0 success, 1 the operation failed, 2 bad command line";

/// The whole command line.
#[derive(Parser, Debug)]
#[command(
    name = "stagebus",
    version,
    about = "run a stagebus broker, list and call what is published on one",
    long_about = "stagebus is an embeddable message broker and request/response library. \
This command runs a broker (broker), lists the sessions published on one (list), \
calls a method of a session and prints each response as a JSON line (call), \
publishes a demo stage to try it with (serve), and runs all of it in one process \
with what happens printed (demo). Addresses are tcp://HOST:PORT, tls://HOST:PORT or unix:PATH.",
    subcommand_required = true
)]
pub(crate) struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// run a broker until SIGINT or SIGTERM
    Broker(Box<BrokerArgs>),
    /// print the sessions published on a broker
    List(ListArgs),
    /// call METHOD of SESSION; print one JSON line per response
    Call(CallArgs),
    /// publish the demo stage (echo, count, ask/answer, slow, whoami, announce) until SIGINT or SIGTERM
    Serve(ServeArgs),
    /// print a broker's report of itself: totals, errors, connections, sessions
    Stats(StatsArgs),
    /// print every frame a broker receives until SIGINT or SIGTERM
    Monitor(MonitorArgs),
    /// run a broker, a service and a caller in one process and print what happens
    Demo(DemoArgs),
    /// print every matching signal as a JSON line until SIGINT or SIGTERM
    Listen(ListenArgs),
    /// print the matching names now, then every change, as JSON lines
    Watch(WatchArgs),
    /// print the version (as --version does)
    #[command(hide = true)]
    Version,
    /// print the man page or a shell's completions (for installers)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// The flags of every command that connects to a broker as a client.
#[derive(clap::Args, Debug)]
pub(crate) struct ClientFlags {
    #[arg(long, value_name = "T", help = crate::secret::TOKEN_HELP)]
    pub(crate) token: Option<String>,
    /// read the token from the first line of FILE (which only its owner may read); STAGEBUS_TOKEN in the environment is the other way that keeps it off the command line
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// the name this client gives itself (the publishers it calls see it)
    #[arg(long, value_name = "NAME")]
    pub(crate) client_name: Option<String>,
    /// trust only brokers whose certificate a CA of FILE (PEM) issued (tls:// addresses; default: the system's certificate store)
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// present this client certificate chain (PEM) to a broker that asks for one (mutual TLS)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// the private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) ping: PingFlags,
}

/// The liveness flags, of the broker and of clients alike.
#[derive(clap::Args, Debug)]
pub(crate) struct PingFlags {
    /// ping a peer silent this long (default 120; 0: never)
    #[arg(long, value_name = "SECS", value_parser = seconds_or_never)]
    pub(crate) ping_interval: Option<Duration>,
    /// unanswered pings before the peer is taken for gone (default 2)
    #[arg(long, value_name = "N", value_parser = ping_count)]
    pub(crate) ping_max: Option<u32>,
}

impl ClientFlags {
    /// A client's settings from the token flags (or `STAGEBUS_TOKEN`),
    /// `--client-name` and the ping flags; fails on a token file that
    /// cannot be read or that others may read.
    pub(crate) fn config(&self) -> Result<ClientConfig, crate::Failure> {
        let mut config = ClientConfig::default();
        config.token =
            crate::secret::client_token(self.token.as_deref(), self.token_file.as_deref())?;
        config.name = self.client_name.clone();
        config.tls = stagebus::ClientTls {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        if let Some(interval) = self.ping.ping_interval {
            config.ping_interval = interval;
        }
        if let Some(max) = self.ping.ping_max {
            config.ping_max = max;
        }
        Ok(config)
    }
}

/// `--timeout`, or the default.
pub(crate) fn timeout_or_default(timeout: Option<Duration>) -> Duration {
    timeout.unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS))
}

/// Checks an address flag (`tcp://HOST:PORT`, `tls://HOST:PORT` or
/// `unix:PATH`).
pub(crate) fn address(text: &str) -> Result<Address, String> {
    text.parse::<Address>().map_err(|e| e.message)
}

/// A checker of a flag's value as a positive number of seconds.
pub(crate) fn positive_seconds(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{flag} wants a positive number of seconds, not '{text}'"))
    }
}

/// A positive duration: a number of seconds (`0.5`), or with a unit
/// (`500ms`, `2s`, `1m`).
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("unit '{unit}': use ms, s or m")),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "wants a positive duration such as 0.5, 500ms or 2s".to_string())
}

fn seconds_or_never(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("--ping-interval wants a number of seconds (0: never), not '{text}'")
        })
}

fn ping_count(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("--ping-max wants a whole number of pings, not '{text}'"))
}

/// The command line as clap sees it, with the project's synopsis as each
/// command's usage (this is what the man page and completions describe).
pub(crate) fn base_command() -> clap::Command {
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sub| {
            // A flag's value is the next word whatever it looks like
            // (`--ping-interval -1` is a bad interval, not a flag `-1`).
            let sub = sub.mut_args(|a| {
                if !a.is_positional() && a.get_action().takes_values() {
                    a.allow_hyphen_values(true)
                } else {
                    a
                }
            });
            let synopsis = synopsis(&sub);
            sub.override_usage(synopsis)
                .help_template("{usage}\n  {about}\n\n{all-args}")
        });
    }
    cmd
}

/// [`base_command`] with the top-level help replaced by [`usage`].
pub(crate) fn command() -> clap::Command {
    let cmd = base_command();
    let text = usage_of(&cmd);
    cmd.help_template("{after-help}").after_help(text)
}

/// The top-level usage: every command's synopsis and flags.
pub(crate) fn usage() -> String {
    usage_of(&base_command())
}

fn usage_of(cmd: &clap::Command) -> String {
    let mut text = String::from(
        "usage: stagebus <command> [options]\n       stagebus help [command] | --help | --version\n\ncommands:\n",
    );
    let visible = || cmd.get_subcommands().filter(|s| !s.is_hide_set());
    for sub in visible() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(text, "  {:<8} {about}", sub.get_name());
    }
    for sub in visible() {
        text.push('\n');
        text.push_str(&command_usage(sub));
    }
    text.push('\n');
    text.push_str(EXIT_STATUS);
    text
}

/// One command's synopsis, summary and flags, in the compact form.
fn command_usage(sub: &clap::Command) -> String {
    let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
    let mut text = format!("{}\n  {about}\n", synopsis(sub));
    for arg in sub
        .get_arguments()
        .filter(|a| shown(a) && !a.is_positional())
    {
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let _ = writeln!(text, "    {:<16} {help}", flag_word(arg));
    }
    text
}

/// Whether an argument is the command's own (not clap's help flag).
fn shown(arg: &clap::Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
}

/// `--name VALUE`, or `--name` for a switch.
fn flag_word(arg: &clap::Arg) -> String {
    let name = format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str()));
    match value_name(arg) {
        Some(value) => format!("{name} {value}"),
        None => name,
    }
}

fn value_name(arg: &clap::Arg) -> Option<String> {
    if !arg.get_action().takes_values() {
        return None;
    }
    Some(
        arg.get_value_names()
            .and_then(|names| names.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase()),
    )
}

/// `stagebus NAME --required X [--optional Y] [--repeated Z]... POSITIONALS`.
fn synopsis(sub: &clap::Command) -> String {
    let mut text = format!("stagebus {}", sub.get_name());
    let args: Vec<&clap::Arg> = sub.get_arguments().filter(|a| shown(a)).collect();
    let flags = args.iter().filter(|a| !a.is_positional());
    let positionals = args.iter().filter(|a| a.is_positional());
    for arg in flags.chain(positionals) {
        let mut word = if arg.is_positional() {
            value_name(arg).unwrap_or_default()
        } else {
            flag_word(arg)
        };
        if matches!(arg.get_action(), ArgAction::Append) {
            word.push_str("...");
        }
        if arg.is_required_set() {
            let _ = write!(text, " {word}");
        } else {
            let _ = write!(text, " [{word}]");
        }
    }
    text
}

/// A command-line error found after clap's checks (a bad `key=value`,
/// …): exit 2 with the usage, naming the command.
pub(crate) fn usage_error(command: &str, message: impl std::fmt::Display) -> Failure {
    Failure::Usage(format!("{command}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use clap::FromArgMatches;

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec!["stagebus"];
        all.extend_from_slice(words);
        command()
            .try_get_matches_from(all)
            .and_then(|m| Cli::from_arg_matches(&m))
    }

    fn fails(words: &[&str], why: &str) {
        match parse(words) {
            Err(e) => assert!(e.to_string().contains(why), "{words:?}: {e}"),
            Ok(_) => panic!("{words:?} is accepted"),
        }
    }

    #[test]
    fn the_clap_description_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_take_values_inline_or_separately() {
        let cli = parse(&[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen=unix:/tmp/x",
            "--token=a=b",
        ])
        .unwrap();
        let Cmd::Broker(b) = cli.command else {
            panic!("not broker")
        };
        let listen: Vec<String> = b.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(listen, ["tcp://127.0.0.1:0", "unix:/tmp/x"]);
        assert_eq!(b.token.as_deref(), Some("a=b"));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        let l = "--listen=tcp://127.0.0.1:0";
        let b = "--broker=tcp://127.0.0.1:1";
        fails(&["broker", "--listen"], "--listen <ADDR>");
        fails(&["broker", l, "--nope"], "'--nope'");
        fails(&["broker", l, "-x"], "'-x'");
        fails(&["broker", l, "stray"], "'stray'");
        fails(&["list", b, "--json=yes"], "--json");
        fails(
            &["list", b, "--token", "a", "--token", "b"],
            "cannot be used multiple times",
        );
        fails(&["list", b, "--timeout", "0"], "--timeout wants a positive");
        fails(&["list", "--broker", "http://x"], "bad address");
        assert!(parse(&["broker", "-h"]).is_err_and(|e| !e.use_stderr()));
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(run(words(&["frob"])), Err(Failure::Usage(_))));
        assert!(matches!(run(words(&[])), Err(Failure::Usage(_))));
    }

    #[test]
    fn ping_flags_set_the_liveness_and_bad_ones_are_usage_errors() {
        let l = "--listen=tcp://127.0.0.1:0";
        let Cmd::Broker(b) = parse(&["broker", l, "--ping-interval", "0.25", "--ping-max", "3"])
            .unwrap()
            .command
        else {
            panic!("not broker")
        };
        assert_eq!(b.ping.ping_interval, Some(Duration::from_millis(250)));
        assert_eq!(b.ping.ping_max, Some(3));
        let Cmd::Serve(s) = parse(&[
            "serve",
            "--broker=tcp://127.0.0.1:1",
            "--name=X",
            "--ping-interval=0",
        ])
        .unwrap()
        .command
        else {
            panic!("not serve")
        };
        let c = s.client.config().unwrap();
        assert_eq!((c.ping_interval, c.ping_max), (Duration::ZERO, 2));
        fails(&["broker", l, "--ping-interval", "-1"], "--ping-interval");
        fails(&["broker", l, "--ping-interval", "soon"], "--ping-interval");
        fails(&["broker", l, "--ping-max", "1.5"], "--ping-max");
    }

    #[test]
    fn heartbeat_flags_take_durations_and_bad_ones_are_usage_errors() {
        let l = "--listen=tcp://127.0.0.1:0";
        let fed = ["--federate", "nats://127.0.0.1:1", "--broker-id", "b1"];
        let args = |more: &[&'static str]| {
            let mut a = vec!["broker", l];
            a.extend(fed);
            a.extend(more);
            a
        };
        let Cmd::Broker(b) = parse(&args(&["--hb-interval", "250ms", "--hb-timeout", "1.5"]))
            .unwrap()
            .command
        else {
            panic!("not broker")
        };
        let ms = Duration::from_millis;
        assert_eq!(
            (b.hb_interval, b.hb_timeout),
            (Some(ms(250)), Some(ms(1500)))
        );
        for (text, d) in [("2s", 2000), ("0.1m", 6000), ("7", 7000), ("1.5ms", 1)] {
            assert_eq!(positive_duration(text).unwrap().as_millis(), d, "{text}");
        }
        fails(&args(&["--hb-interval", "0"]), "--hb-interval '0'");
        fails(&args(&["--hb-timeout", "-1s"]), "--hb-timeout '-1s'");
        fails(&args(&["--hb-timeout", "2h"]), "unit 'h'");
        fails(&args(&["--hb-interval", "soon"]), "--hb-interval");
    }

    #[test]
    fn usage_names_every_command_and_flag() {
        let text = usage();
        let cmd = base_command();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(text.contains(&format!("stagebus {}", sub.get_name())));
            for arg in sub
                .get_arguments()
                .filter(|a| shown(a) && !a.is_positional())
            {
                let long = arg.get_long().unwrap();
                assert!(text.contains(&format!("--{long}")), "{long}");
            }
        }
        assert!(
            text.contains("stagebus list --broker ADDR [--token T]"),
            "{text}"
        );
        assert!(text.contains("SESSION METHOD [key=value...]"), "{text}");
        assert!(text.contains("--listen ADDR..."), "{text}");
    }
}
