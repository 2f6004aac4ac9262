//! The command line's grammar: each command's flags and positionals in one
//! table, the usage text drawn from it, and the parser that checks a
//! command line against it.

use crate::Failure;
use crate::{broker::cmd_broker, call::cmd_call, demo::cmd_demo, list::cmd_list, serve::cmd_serve};
use stagebus::{Address, ClientConfig, ReconnectPolicy};
use std::fmt::Write as _;
use std::time::Duration;

/// How long `list` and `call` wait for the broker unless told otherwise
/// (`--timeout`), and how long `serve` waits to connect and publish.
pub(crate) const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

/// One flag a command accepts.
struct Flag {
    /// Its name without the leading dashes.
    name: &'static str,
    /// The placeholder of its value, or `None` for a switch.
    value: Option<&'static str>,
    /// Whether it may be given more than once.
    repeat: bool,
    /// Whether the command refuses to run without it.
    required: bool,
    /// One line for the usage text.
    help: &'static str,
}

/// One subcommand.
pub(crate) struct Command {
    name: &'static str,
    /// What it does, in a few words, for the usage text.
    summary: &'static str,
    /// Its positional arguments as shown in the usage (empty: none taken).
    positionals: &'static str,
    flags: &'static [Flag],
    pub(crate) run: fn(&Parsed) -> Result<(), Failure>,
}

const TOKEN: Flag = Flag {
    name: "token",
    value: Some("T"),
    repeat: false,
    required: false,
    help: "the broker's shared secret",
};

const PING_INTERVAL: Flag = Flag {
    name: "ping-interval",
    value: Some("SECS"),
    repeat: false,
    required: false,
    help: "ping a peer silent this long (default 120; 0: never)",
};

const PING_MAX: Flag = Flag {
    name: "ping-max",
    value: Some("N"),
    repeat: false,
    required: false,
    help: "unanswered pings before the peer is taken for gone (default 2)",
};

const COMMANDS: &[Command] = &[
    Command {
        name: "broker",
        summary: "run a broker until SIGINT or SIGTERM",
        positionals: "",
        flags: &[
            Flag {
                name: "listen",
                value: Some("ADDR"),
                repeat: true,
                required: true,
                help: "tcp://HOST:PORT or unix:PATH; repeat for more (port 0 picks one)",
            },
            Flag {
                help: "require this shared secret from clients",
                ..TOKEN
            },
            Flag {
                name: "max-connections",
                value: Some("N"),
                repeat: false,
                required: false,
                help: "most connections at once (default: the open-file limit, raised to the hard limit at start, less 32 + 2 per address)",
            },
            PING_INTERVAL,
            PING_MAX,
        ],
        run: cmd_broker,
    },
    Command {
        name: "list",
        summary: "print the sessions published on a broker",
        positionals: "",
        flags: &[
            Flag {
                name: "broker",
                value: Some("ADDR"),
                repeat: false,
                required: true,
                help: "the broker to ask",
            },
            TOKEN,
            PING_INTERVAL,
            PING_MAX,
            Flag {
                name: "json",
                value: None,
                repeat: false,
                required: false,
                help: "print one JSON array [{\"name\":…,\"methods\":[…]}]",
            },
            Flag {
                name: "timeout",
                value: Some("SECS"),
                repeat: false,
                required: false,
                help: "give up after this many seconds (default 10)",
            },
        ],
        run: cmd_list,
    },
    Command {
        name: "call",
        summary: "call METHOD of SESSION; print one JSON line per response",
        positionals: "SESSION METHOD [key=value...]",
        flags: &[
            Flag {
                name: "broker",
                value: Some("ADDR"),
                repeat: false,
                required: true,
                help: "the broker to call through",
            },
            TOKEN,
            PING_INTERVAL,
            PING_MAX,
            Flag {
                name: "timeout",
                value: Some("SECS"),
                repeat: false,
                required: false,
                help: "cancel the call after this many seconds (default 10)",
            },
            Flag {
                name: "wait",
                value: Some("SECS"),
                repeat: false,
                required: false,
                help: "first wait up to this many seconds for SESSION to be published",
            },
            Flag {
                name: "recall",
                value: Some("'M k=v…'"),
                repeat: false,
                required: false,
                help: "answer the first emit by recalling method M with those args",
            },
        ],
        run: cmd_call,
    },
    Command {
        name: "serve",
        summary: "publish the demo stage (echo, count, ask/answer, slow) until SIGINT or SIGTERM",
        positionals: "",
        flags: &[
            Flag {
                name: "broker",
                value: Some("ADDR"),
                repeat: false,
                required: true,
                help: "the broker to publish on",
            },
            Flag {
                name: "name",
                value: Some("NAME"),
                repeat: false,
                required: true,
                help: "the session name to publish as",
            },
            TOKEN,
            PING_INTERVAL,
            PING_MAX,
            Flag {
                name: "no-reconnect",
                value: None,
                repeat: false,
                required: false,
                help: "exit when the broker goes away instead of reconnecting",
            },
            Flag {
                name: "reconnect-max-delay",
                value: Some("SECS"),
                repeat: false,
                required: false,
                help: "the longest wait between reconnect attempts (default 5)",
            },
        ],
        run: cmd_serve,
    },
    Command {
        name: "demo",
        summary: "run a broker, a service and a caller in one process and print what happens",
        positionals: "",
        flags: &[],
        run: cmd_demo,
    },
];

pub(crate) fn find_command(name: &str) -> Result<&'static Command, Failure> {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Failure::Usage(format!("unknown command '{name}'")))
}

pub(crate) fn usage() -> String {
    let mut text = String::from(
        "usage: stagebus <command> [options]\n       stagebus help [command] | --help | --version\n\ncommands:\n",
    );
    for c in COMMANDS {
        let _ = writeln!(text, "  {:<8} {}", c.name, c.summary);
    }
    for c in COMMANDS {
        text.push('\n');
        text.push_str(&command_usage(c));
    }
    text.push_str("\nexit status: 0 success, 1 the operation failed, 2 bad command line");
    text
}

pub(crate) fn command_usage(c: &Command) -> String {
    let mut text = format!("stagebus {}", c.name);
    for f in c.flags {
        let mut word = match f.value {
            Some(v) => format!("--{} {v}", f.name),
            None => format!("--{}", f.name),
        };
        if f.repeat {
            word.push_str("...");
        }
        let _ = if f.required {
            write!(text, " {word}")
        } else {
            write!(text, " [{word}]")
        };
    }
    if !c.positionals.is_empty() {
        let _ = write!(text, " {}", c.positionals);
    }
    let _ = writeln!(text, "\n  {}", c.summary);
    for f in c.flags {
        let left = match f.value {
            Some(v) => format!("--{} {v}", f.name),
            None => format!("--{}", f.name),
        };
        let _ = writeln!(text, "    {left:<16} {}", f.help);
    }
    text
}

/// A command line parsed against one command's flags.
pub(crate) struct Parsed {
    command: &'static str,
    /// Flag values in the order given, by flag name; switches get "".
    values: Vec<(&'static str, String)>,
    pub(crate) positionals: Vec<String>,
    /// `-h` or `--help` was given where a flag may stand.
    pub(crate) help: bool,
}

impl Parsed {
    /// Accepts `--name value`, `--name=value`, switches, positionals,
    /// `-h`/`--help`, and `--` ending the flags (so a positional may start
    /// with a dash).
    pub(crate) fn parse(command: &'static Command, args: &[String]) -> Result<Parsed, Failure> {
        let mut parsed = Parsed {
            command: command.name,
            values: Vec::new(),
            positionals: Vec::new(),
            help: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                parsed.help = true;
                continue;
            }
            if arg == "--" {
                parsed.positionals.extend(args.by_ref().cloned());
                break;
            }
            let Some(body) = arg.strip_prefix("--") else {
                if arg.starts_with('-') && arg.len() > 1 {
                    return Err(parsed.usage(format!("unknown flag '{arg}'")));
                }
                parsed.positionals.push(arg.clone());
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = command.flags.iter().find(|f| f.name == name) else {
                return Err(parsed.usage(format!("unknown flag '--{name}'")));
            };
            let value = match (flag.value, inline) {
                (None, None) => String::new(),
                (None, Some(_)) => {
                    return Err(parsed.usage(format!("--{name} takes no value")));
                }
                (Some(_), Some(v)) => v,
                (Some(placeholder), None) => args.next().cloned().ok_or_else(|| {
                    parsed.usage(format!("--{name} needs a value ({placeholder})"))
                })?,
            };
            if !flag.repeat && parsed.has(flag.name) {
                return Err(parsed.usage(format!("--{name} given more than once")));
            }
            parsed.values.push((flag.name, value));
        }
        // Help wins over whatever else is missing.
        if parsed.help {
            return Ok(parsed);
        }
        if let Some(missing) = command
            .flags
            .iter()
            .find(|f| f.required && !parsed.has(f.name))
        {
            return Err(parsed.usage(format!("--{} is required", missing.name)));
        }
        if command.positionals.is_empty() {
            if let Some(extra) = parsed.positionals.first() {
                return Err(parsed.usage(format!("unexpected argument '{extra}'")));
            }
        }
        Ok(parsed)
    }

    pub(crate) fn usage(&self, message: String) -> Failure {
        Failure::Usage(format!("{}: {message}", self.command))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| *n == name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| self.usage(format!("--{name} is required")))
    }

    pub(crate) fn address(&self, text: &str) -> Result<Address, Failure> {
        text.parse::<Address>().map_err(|e| self.usage(e.message))
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.get("token").map(str::to_string)
    }

    /// `--ping-interval` and `--ping-max`, each `None` when not given.
    pub(crate) fn ping(&self) -> Result<(Option<Duration>, Option<u32>), Failure> {
        let interval = match self.get("ping-interval") {
            None => None,
            Some(text) => Some(
                text.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        self.usage(format!(
                            "--ping-interval wants a number of seconds (0: never), not '{text}'"
                        ))
                    })?,
            ),
        };
        let max = match self.get("ping-max") {
            None => None,
            Some(text) => Some(text.parse::<u32>().ok().ok_or_else(|| {
                self.usage(format!(
                    "--ping-max wants a whole number of pings, not '{text}'"
                ))
            })?),
        };
        Ok((interval, max))
    }

    /// A client's settings from `--token` and the ping flags.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, Failure> {
        let mut config = ClientConfig::default();
        config.token = self.token();
        let (interval, max) = self.ping()?;
        if let Some(interval) = interval {
            config.ping_interval = interval;
        }
        if let Some(max) = max {
            config.ping_max = max;
        }
        Ok(config)
    }

    pub(crate) fn timeout(&self) -> Result<Duration, Failure> {
        Ok(self
            .seconds("timeout")?
            .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS)))
    }

    /// `--wait`, if given.
    pub(crate) fn wait(&self) -> Result<Option<Duration>, Failure> {
        self.seconds("wait")
    }

    /// `serve`'s reconnect policy: on unless `--no-reconnect`, its
    /// longest delay from `--reconnect-max-delay`.
    pub(crate) fn reconnect(&self) -> Result<Option<ReconnectPolicy>, Failure> {
        let max = self.seconds("reconnect-max-delay")?;
        if self.has("no-reconnect") {
            if max.is_some() {
                return Err(self.usage(
                    "--reconnect-max-delay and --no-reconnect contradict each other".into(),
                ));
            }
            return Ok(None);
        }
        let mut policy = ReconnectPolicy::default();
        if let Some(max) = max {
            policy.max_delay = max;
            policy.initial_delay = policy.initial_delay.min(max);
        }
        Ok(Some(policy))
    }

    /// A flag's value as a positive number of seconds, if given.
    fn seconds(&self, flag: &str) -> Result<Option<Duration>, Failure> {
        let Some(text) = self.get(flag) else {
            return Ok(None);
        };
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                self.usage(format!(
                    "--{flag} wants a positive number of seconds, not '{text}'"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn parse(command: &str, words: &[&str]) -> Result<Parsed, Failure> {
        Parsed::parse(find_command(command).unwrap(), &args(words))
    }

    #[test]
    fn flags_take_values_inline_or_separately() {
        let p = parse(
            "broker",
            &[
                "--listen",
                "tcp://127.0.0.1:0",
                "--listen=unix:/tmp/x",
                "--token=a=b",
            ],
        )
        .unwrap();
        assert_eq!(
            p.all("listen").collect::<Vec<_>>(),
            ["tcp://127.0.0.1:0", "unix:/tmp/x"]
        );
        assert_eq!(p.get("token"), Some("a=b"));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        let l = "--listen=tcp://127.0.0.1:0";
        let b = "--broker=tcp://127.0.0.1:1";
        for (command, words, why) in [
            ("broker", &["--listen"][..], "--listen needs a value"),
            ("broker", &[], "--listen is required"),
            ("broker", &[l, "--nope"], "unknown flag '--nope'"),
            ("broker", &[l, "-x"], "unknown flag '-x'"),
            ("broker", &[l, "stray"], "unexpected argument 'stray'"),
            ("list", &[b, "--json=yes"], "--json takes no value"),
            (
                "list",
                &[b, "--token", "a", "--token", "b"],
                "more than once",
            ),
        ] {
            match parse(command, words) {
                Err(Failure::Usage(m)) => assert!(m.contains(why), "{m}"),
                _ => panic!("{command} {words:?} is not a usage error"),
            }
        }
        assert!(parse("broker", &["-h"]).unwrap().help);
        assert!(matches!(run(&args(&["frob"])), Err(Failure::Usage(_))));
        assert!(matches!(run(&args(&[])), Err(Failure::Usage(_))));
        let p = parse("list", &[b, "--timeout", "0"]).unwrap();
        assert!(matches!(p.timeout(), Err(Failure::Usage(_))));
        assert!(matches!(p.address("http://x"), Err(Failure::Usage(_))));
    }

    #[test]
    fn ping_flags_set_the_liveness_and_bad_ones_are_usage_errors() {
        let l = "--listen=tcp://127.0.0.1:0";
        let p = parse("broker", &[l, "--ping-interval", "0.25", "--ping-max", "3"]).unwrap();
        assert_eq!(
            p.ping().ok(),
            Some((Some(Duration::from_millis(250)), Some(3)))
        );
        let b = "--broker=tcp://127.0.0.1:1";
        let c = parse("serve", &[b, "--name=X", "--ping-interval=0"])
            .unwrap()
            .client_config()
            .ok()
            .unwrap();
        assert_eq!((c.ping_interval, c.ping_max), (Duration::ZERO, 2));
        for words in [
            &[l, "--ping-interval", "-1"][..],
            &[l, "--ping-interval", "soon"],
            &[l, "--ping-max", "1.5"],
        ] {
            let p = parse("broker", words).unwrap();
            match p.ping() {
                Err(Failure::Usage(m)) => assert!(m.contains("--ping-"), "{m}"),
                _ => panic!("{words:?} is not a usage error"),
            }
        }
    }

    #[test]
    fn usage_names_every_command_and_flag() {
        let text = usage();
        for c in COMMANDS {
            assert!(text.contains(&format!("stagebus {}", c.name)));
            for f in c.flags {
                assert!(text.contains(&format!("--{}", f.name)), "{}", f.name);
            }
        }
    }
}
