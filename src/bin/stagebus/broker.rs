//! `stagebus broker`: run a broker until SIGINT or SIGTERM, with a
//! connection limit drawn from the open-file limit unless one is given.

use crate::command_line::{address, PingFlags};
use crate::{stop_signals, Failure};
use stagebus::{Address, Broker, BrokerConfig, EventLoop, Limits};
use std::io::{self, Write};

/// `stagebus broker`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct BrokerArgs {
    /// tcp://HOST:PORT or unix:PATH; repeat for more (port 0 picks one)
    #[arg(long, value_name = "ADDR", required = true, value_parser = address)]
    pub(crate) listen: Vec<Address>,
    #[arg(long, value_name = "T", help = crate::secret::TOKEN_HELP)]
    pub(crate) token: Option<String>,
    /// read tokens from FILE (which only its owner may read): a line SECRET is the shared token, a line NAME SECRET a named one (the client's identity); else STAGEBUS_TOKEN
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// permission bits of Unix socket files, in octal (default 0660: the owner and the group may connect)
    #[arg(long, value_name = "MODE", value_parser = socket_mode)]
    pub(crate) socket_mode: Option<u32>,
    /// group (name or number) of Unix socket files
    #[arg(long, value_name = "GROUP")]
    pub(crate) socket_group: Option<String>,
    /// enforce the policy in FILE: who may own, call, listen, watch, monitor, read stats
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<std::path::PathBuf>,
    /// most connections at once (default: the open-file limit, raised to the hard limit at start, less 32 + 2 per address)
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub(crate) max_connections: Option<usize>,
    #[command(flatten)]
    pub(crate) ping: PingFlags,
}

fn socket_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            format!("--socket-mode wants octal permission bits such as 0660, not '{text}'")
        })
}

fn positive_count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--max-connections wants a positive whole number, not '{text}'"))
}

pub(crate) fn cmd_broker(args: &BrokerArgs) -> Result<(), Failure> {
    let listen = args.listen.clone();
    let max_connections = match args.max_connections {
        Some(n) => n,
        None => {
            let files = raise_open_file_limit();
            connections_for(files, listen.len())
        }
    };
    // Blocked before any thread exists (see stop_signals::block).
    let signals = stop_signals::block()?;
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    let mut limits = Limits::default();
    limits.max_connections = max_connections;
    if let Some(interval) = args.ping.ping_interval {
        limits.ping_interval = interval;
    }
    if let Some(max) = args.ping.ping_max {
        limits.ping_max = max;
    }
    let mut config = BrokerConfig::listening(listen).with_limits(limits);
    let tokens = crate::secret::broker_tokens(args.token.as_deref(), args.token_file.as_deref())?;
    config.token = tokens.shared;
    config.named_tokens = tokens.named;
    if let Some(mode) = args.socket_mode {
        config.socket_mode = mode;
    }
    config.socket_group = args.socket_group.clone();
    if let Some(path) = &args.policy {
        config.policy = Some(stagebus::broker::Policy::from_file(path)?);
    }
    crate::log_stderr::install();
    let broker = Broker::new(&lp, config)?;
    stop_signals::stop_loop_on(&lp, signals)?;
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
    // Clients are told the broker is going away; the loop runs on until
    // those notices are written (bounded by the lingering close).
    broker.close();
    let _ = lp.run_until(stagebus::DEFAULT_LINGER, || {
        broker.closing_connections() == 0
    });
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
