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
//! Adding a command: write `fn cmd_NAME(args: &Parsed) -> Result<(), Failure>`
//! and add one `Command` entry to `COMMANDS` naming its flags; the
//! shared parser, the usage text and the dispatch pick it up from there.

use stagebus::wire::SessionInfo;
use stagebus::{
    Address, Args, Broker, BrokerConfig, CallEvent, Client, ClientConfig, Error, EventLoop, Limits,
    Value,
};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// How long `list` waits for the broker unless told otherwise.
const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

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
struct Command {
    name: &'static str,
    /// What it does, in a few words, for the usage text.
    summary: &'static str,
    /// Its positional arguments as shown in the usage (empty: none taken).
    positionals: &'static str,
    flags: &'static [Flag],
    run: fn(&Parsed) -> Result<(), Failure>,
}

const TOKEN: Flag = Flag {
    name: "token",
    value: Some("T"),
    repeat: false,
    required: false,
    help: "the broker's shared secret",
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
            Flag {
                name: "timeout",
                value: Some("SECS"),
                repeat: false,
                required: false,
                help: "cancel the call after this many seconds (default 10)",
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

fn find_command(name: &str) -> Result<&'static Command, Failure> {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Failure::Usage(format!("unknown command '{name}'")))
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

fn usage() -> String {
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

fn command_usage(c: &Command) -> String {
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
struct Parsed {
    command: &'static str,
    /// Flag values in the order given, by flag name; switches get "".
    values: Vec<(&'static str, String)>,
    positionals: Vec<String>,
    /// `-h` or `--help` was given where a flag may stand.
    help: bool,
}

impl Parsed {
    /// Accepts `--name value`, `--name=value`, switches, positionals,
    /// `-h`/`--help`, and `--` ending the flags (so a positional may start
    /// with a dash).
    fn parse(command: &'static Command, args: &[String]) -> Result<Parsed, Failure> {
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

    fn usage(&self, message: String) -> Failure {
        Failure::Usage(format!("{}: {message}", self.command))
    }

    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| *n == name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Failure> {
        self.get(name)
            .ok_or_else(|| self.usage(format!("--{name} is required")))
    }

    fn address(&self, text: &str) -> Result<Address, Failure> {
        text.parse::<Address>().map_err(|e| self.usage(e.message))
    }

    fn token(&self) -> Option<String> {
        self.get("token").map(str::to_string)
    }

    fn timeout(&self) -> Result<Duration, Failure> {
        let Some(text) = self.get("timeout") else {
            return Ok(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS));
        };
        text.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                self.usage(format!(
                    "--timeout wants a positive number of seconds, not '{text}'"
                ))
            })
    }
}

// ---- broker ----------------------------------------------------------

fn cmd_broker(args: &Parsed) -> Result<(), Failure> {
    let listen = args
        .all("listen")
        .map(|a| args.address(a))
        .collect::<Result<Vec<_>, _>>()?;
    let max_connections = match args.get("max-connections") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                args.usage(format!(
                    "--max-connections wants a positive whole number, not '{text}'"
                ))
            })?,
        None => {
            let files = raise_open_file_limit();
            connections_for(files, listen.len())
        }
    };
    // Blocked before any thread exists, so every thread inherits the mask
    // and the signals can only be taken by sigwait in the signal thread.
    let signals = block_stop_signals()?;
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    let broker = Broker::new(
        &lp,
        BrokerConfig {
            listen,
            token: args.token(),
            limits: Limits {
                max_connections,
                ..Limits::default()
            },
        },
    )?;
    let remote = lp.remote();
    std::thread::Builder::new()
        .name("stagebus-signals".into())
        .spawn(move || {
            if wait_for_signal(&signals).is_some() {
                // A failed post means the loop is gone, so it has stopped.
                let _ = remote.post(|lp| lp.stop());
            }
        })
        .map_err(|e| Failure::Failed(format!("cannot start the signal thread: {e}")))?;
    {
        // Scripts wait for these lines to know the broker is ready; a
        // reader that went away must not stop the broker, so write errors
        // are ignored.
        let mut out = io::stdout().lock();
        for address in broker.local_addresses() {
            let _ = writeln!(out, "listening on {address}");
        }
        let _ = out.flush();
    }
    let outcome = lp.run();
    broker.close();
    lp.shutdown();
    outcome.map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))
}

/// Raises the soft limit on open files to the hard limit, since every
/// connection is a descriptor; the soft limit now in force (`None` if it
/// cannot be read). A failed raise keeps the old soft limit.
fn raise_open_file_limit() -> Option<u64> {
    // SAFETY: rlimit is plain data, fully written by getrlimit below.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is not u64 everywhere
    Some(u64::from(limit.rlim_cur))
}

/// The default connection limit for `files` open files (unknown: the
/// library's default): what is left after the broker's own descriptors
/// (standard streams, the poll and waker, each listener and its lock,
/// and slack), so that it refuses connections before it runs out of
/// descriptors.
fn connections_for(files: Option<u64>, addresses: usize) -> usize {
    let Some(files) = files else {
        return Limits::default().max_connections;
    };
    let own = 32 + 2 * addresses as u64;
    // An unlimited or huge limit is capped: memory runs out first.
    usize::try_from(files.saturating_sub(own).clamp(1, 1 << 24)).unwrap_or(1 << 24)
}

/// The set {SIGINT, SIGTERM}, blocked in the calling thread.
fn block_stop_signals() -> Result<libc::sigset_t, Failure> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t and the signal numbers
    // are valid; these calls only write into `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(Failure::Failed(format!(
            "cannot block SIGINT/SIGTERM: {}",
            io::Error::from_raw_os_error(rc)
        )));
    }
    Ok(set)
}

/// Blocks until a signal of `set` arrives; `None` if sigwait fails.
fn wait_for_signal(set: &libc::sigset_t) -> Option<libc::c_int> {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid
        // place for the result.
        let rc = unsafe { libc::sigwait(set, &mut signal) };
        match rc {
            0 => return Some(signal),
            libc::EINTR => continue,
            _ => return None,
        }
    }
}

// ---- list ------------------------------------------------------------

fn cmd_list(args: &Parsed) -> Result<(), Failure> {
    let address = args.address(args.required("broker")?)?;
    let timeout = args.timeout()?;
    let sessions = fetch_listing(&address, args.token(), timeout)?;
    let text = if args.has("json") {
        listing_json(&sessions)
    } else {
        listing_text(&sessions)
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

/// Connects, asks for the listing and waits for it, at most `timeout`.
fn fetch_listing(
    address: &Address,
    token: Option<String>,
    timeout: Duration,
) -> Result<Vec<SessionInfo>, Failure> {
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    let client = Client::connect(
        &lp,
        address,
        ClientConfig {
            token,
            ..Default::default()
        },
    );
    // A failed connect also fails the listing, but only with a generic
    // `broker_gone`, and its own report (which says why: refused, wrong
    // token) may come a turn later; so wait for both outcomes.
    let connected = Rc::new(RefCell::new(None));
    let listing = Rc::new(RefCell::new(None));
    {
        let connected = connected.clone();
        client.on_connect(move |r| *connected.borrow_mut() = Some(r.map(|_| ())));
    }
    {
        let listing = listing.clone();
        client.listing(move |r| *listing.borrow_mut() = Some(r));
    }
    let finished = lp
        .run_until(timeout, || {
            connected.borrow().is_some() && listing.borrow().is_some()
        })
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    client.close();
    lp.shutdown();
    if let Some(Err(e)) = connected.borrow_mut().take() {
        return Err(e.into());
    }
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: no listing from {address} within {} s",
            timeout.as_secs_f64()
        )));
    }
    let result = listing.borrow_mut().take();
    result
        .expect("run_until returns true only once the listing arrived")
        .map_err(Failure::from)
}

// ---- call ------------------------------------------------------------

/// Connects and waits for the handshake, at most `timeout`.
fn connect(
    address: &Address,
    token: Option<String>,
    timeout: Duration,
) -> Result<(EventLoop, Client), Failure> {
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    let client = Client::connect(
        &lp,
        address,
        ClientConfig {
            token,
            ..Default::default()
        },
    );
    let connected = Rc::new(RefCell::new(None));
    let c = connected.clone();
    client.on_connect(move |r| *c.borrow_mut() = Some(r.map(|_| ())));
    let finished = lp
        .run_until(timeout, || connected.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: no answer from {address} within {} s",
            timeout.as_secs_f64()
        )));
    }
    let outcome = connected.borrow_mut().take();
    outcome.expect("checked above")?;
    Ok((lp, client))
}

/// `key=value` words as args; values parse as null, bools, numbers or
/// else strings.
fn parse_args(parsed: &Parsed, words: &[String]) -> Result<Args, Failure> {
    let mut args = Args::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| parsed.usage(format!("'{word}' is not key=value")))?;
        args.insert(key, Value::parse_word(value));
    }
    Ok(args)
}

/// One response as a JSON line.
fn response_line(kind: &str, args: &Args) -> String {
    format!(
        "{{\"type\":{},\"args\":{}}}",
        Value::from(kind).to_json(),
        args.to_json()
    )
}

fn cmd_call(args: &Parsed) -> Result<(), Failure> {
    let address = args.address(args.required("broker")?)?;
    let timeout = args.timeout()?;
    let (session, method, rest) = match args.positionals.as_slice() {
        [session, method, rest @ ..] => (session, method, rest),
        _ => return Err(args.usage("SESSION and METHOD are required".into())),
    };
    let call_args = parse_args(args, rest)?;
    let recall = match args.get("recall") {
        None => None,
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            let (m, rest) = words
                .split_first()
                .ok_or_else(|| args.usage("--recall needs a method".into()))?;
            Some((m.clone(), parse_args(args, rest)?))
        }
    };
    let (lp, client) = connect(&address, args.token(), timeout)?;
    let outcome: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::default();
    let o = outcome.clone();
    let caller = client.clone();
    let mut recall = recall;
    let call = client.call(session, method, &call_args, move |id, event| {
        let line = match &event {
            CallEvent::Emit { kind, args } | CallEvent::Return { kind, args } => {
                response_line(kind, args)
            }
            CallEvent::Error(e) => {
                *o.borrow_mut() = Some(Err(Failure::Failed(e.to_string())));
                return;
            }
        };
        let mut out = io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            *o.borrow_mut() = Some(Err(Failure::Failed(format!("cannot write to stdout: {e}"))));
        } else if matches!(event, CallEvent::Return { .. }) {
            *o.borrow_mut() = Some(Ok(()));
        } else if let Some((method, args)) = recall.take() {
            if let Err(e) = caller.recall(id, &method, &args) {
                *o.borrow_mut() = Some(Err(e.into()));
            }
        }
    })?;
    let finished = lp
        .run_until(timeout, || outcome.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if !finished {
        // Tell the publisher to stop working on it, and let that leave.
        client.cancel(call);
        let _ = lp.run_until(Duration::from_millis(100), || false);
    }
    client.close();
    lp.shutdown();
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: {session}.{method} did not return within {} s (cancelled)",
            timeout.as_secs_f64()
        )));
    }
    let result = outcome.borrow_mut().take();
    result.expect("checked above")
}

// ---- serve -----------------------------------------------------------

fn cmd_serve(args: &Parsed) -> Result<(), Failure> {
    let address = args.address(args.required("broker")?)?;
    let name = args.required("name")?.to_string();
    let signals = block_stop_signals()?;
    let (lp, client) = connect(
        &address,
        args.token(),
        Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
    )?;
    let stage = stagebus::demo::stage(&lp, say);
    let published = Rc::new(RefCell::new(None));
    let p = published.clone();
    stage.publish(&client, &name, &stagebus::demo::METHODS, move |r| {
        *p.borrow_mut() = Some(r)
    });
    lp.run_until(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS), || {
        published.borrow().is_some()
    })
    .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let outcome = published.borrow_mut().take();
    outcome.ok_or_else(|| {
        Failure::Failed("timeout: the broker did not answer the publish".into())
    })??;
    let lost: Rc<RefCell<Option<Error>>> = Rc::default();
    let disconnect_stopper = lp.clone();
    let l = lost.clone();
    client.on_disconnect(move |e| {
        *l.borrow_mut() = Some(e.clone());
        disconnect_stopper.stop();
    });
    let remote = lp.remote();
    std::thread::Builder::new()
        .name("stagebus-signals".into())
        .spawn(move || {
            if wait_for_signal(&signals).is_some() {
                let _ = remote.post(|lp| lp.stop());
            }
        })
        .map_err(|e| Failure::Failed(format!("cannot start the signal thread: {e}")))?;
    say(&format!(
        "serving {name} on {address}: {}",
        stagebus::demo::METHODS.join(" ")
    ));
    let outcome = lp.run();
    client.close();
    lp.shutdown();
    outcome.map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let lost = lost.borrow_mut().take();
    match lost {
        Some(e) => Err(Failure::Failed(format!("lost the broker: {e}"))),
        None => Ok(()),
    }
}

/// Prints a line to stdout at once; a reader that went away is ignored.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---- demo ------------------------------------------------------------

fn cmd_demo(_args: &Parsed) -> Result<(), Failure> {
    stagebus::demo::transcript(say).map_err(Failure::from)
}

/// One session per line, `NAME method1 method2 …`. Control characters are
/// escaped so that a name cannot forge extra lines or drive the terminal;
/// programs should read `--json`.
fn listing_text(sessions: &[SessionInfo]) -> String {
    let mut text = String::new();
    for s in sessions {
        push_printable(&mut text, &s.name);
        for m in &s.methods {
            text.push(' ');
            push_printable(&mut text, m);
        }
        text.push('\n');
    }
    text
}

fn push_printable(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

fn listing_json(sessions: &[SessionInfo]) -> String {
    let json_str = |s: &str| Value::from(s).to_json();
    let mut text = String::from("[");
    for (i, s) in sessions.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let methods: Vec<String> = s.methods.iter().map(|m| json_str(m)).collect();
        let _ = write!(
            text,
            "{{\"name\":{},\"methods\":[{}]}}",
            json_str(&s.name),
            methods.join(",")
        );
    }
    text.push_str("]\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn listing_prints_as_text_and_escaped_json() {
        let sessions = vec![
            SessionInfo {
                name: "Foo".into(),
                methods: vec!["a".into(), "b".into()],
            },
            SessionInfo {
                name: "q\"\\\n".into(),
                methods: vec![],
            },
        ];
        assert_eq!(listing_text(&sessions), "Foo a b\nq\"\\\\n\n");
        assert_eq!(
            listing_json(&sessions),
            "[{\"name\":\"Foo\",\"methods\":[\"a\",\"b\"]},{\"name\":\"q\\\"\\\\\\n\",\"methods\":[]}]\n"
        );
        assert_eq!(listing_json(&[]), "[]\n");
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
