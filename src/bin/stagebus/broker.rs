//! `stagebus broker`: run a broker until SIGINT or SIGTERM, with a
//! connection limit drawn from the open-file limit unless one is given.
//! Under systemd it serves the sockets it was handed (socket activation)
//! and reports readiness (`Type=notify`); see `systemd`.

use crate::command_line::{address, positive_duration, usage_error, PingFlags};
use crate::config_file::{self, BrokerFile};
use crate::logging::LogFlags;
use crate::{stop_signals, systemd, Failure};
use stagebus::{Address, Broker, BrokerConfig, EventLoop, Limit, Limits};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

/// `stagebus broker`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct BrokerArgs {
    /// tcp://HOST:PORT, tls://HOST:PORT or unix:PATH; repeat for more (port 0 picks one); replaces the config file's; needed unless the config file or systemd (LISTEN_FDS) gives sockets
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) listen: Vec<Address>,
    /// read listeners, token, limits and logging from this TOML file; flags override it
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// check this config file, print what is wrong (with its line) or "ok", and exit
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub(crate) check_config: Option<PathBuf>,
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
    /// the certificate chain (PEM) of tls:// listeners; replaces the config file's [tls]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// the private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// ask TLS clients for a certificate issued by a CA of FILE (PEM) and refuse those without one (mutual TLS); its subject is the client's identity
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// most connections at once (default: the open-file limit, raised to the hard limit at start, less 32 + 2 per address)
    #[arg(long, value_name = "N", value_parser = positive_count)]
    pub(crate) max_connections: Option<usize>,
    /// set a broker limit by name (max-hello-frame, max-unauthenticated, max-memory, write-timeout-ms, ...; a wrong name lists them all); repeat for more
    #[arg(long = "limit", value_name = "NAME=N", value_parser = limit_setting)]
    pub(crate) limits: Vec<(Limit, u64)>,
    /// join a federation of brokers over these NATS servers (nats://HOST:PORT or tls://HOST:PORT, comma-separated; credentials may be in the URL); needs --broker-id
    #[arg(long, value_name = "URLS", requires = "broker_id")]
    pub(crate) federate: Option<String>,
    /// this broker's id in the federation (letters, digits, _ and -; unique in the namespace)
    #[arg(long, value_name = "ID", requires = "federate")]
    pub(crate) broker_id: Option<String>,
    /// the federation's namespace (default sb): clusters sharing one NATS account stay apart
    #[arg(long, value_name = "NS", requires = "federate")]
    pub(crate) namespace: Option<String>,
    /// how often this broker tells the federation it is alive, as 0.5, 500ms or 2s (default 500ms); replaces the config file's hb-interval
    #[arg(long, value_name = "DURATION", value_parser = hb_duration("--hb-interval"))]
    pub(crate) hb_interval: Option<Duration>,
    /// how long a peer broker may stay silent before it is declared dead (default 2s; longer than --hb-interval); replaces the config file's hb-timeout
    #[arg(long, value_name = "DURATION", value_parser = hb_duration("--hb-timeout"))]
    pub(crate) hb_timeout: Option<Duration>,
    /// take the NATS servers' client disconnect events ($SYS.ACCOUNT.*.DISCONNECT, which the NATS account must import) as a faster sign of a peer broker's death; replaces the config file's nats-sys-events
    #[arg(long)]
    pub(crate) nats_sys_events: bool,
    /// user name for NATS (with --nats-password)
    #[arg(
        long,
        value_name = "USER",
        requires = "nats_password",
        conflicts_with = "nats_token"
    )]
    pub(crate) nats_user: Option<String>,
    /// password for NATS (with --nats-user)
    #[arg(long, value_name = "PASSWORD", requires = "nats_user")]
    pub(crate) nats_password: Option<String>,
    /// token for NATS
    #[arg(long, value_name = "TOKEN", conflicts_with = "nats_nkey")]
    pub(crate) nats_token: Option<String>,
    /// a NATS user's NKey seed file (as `nk -gen user` writes it, or a .creds file)
    #[arg(long, value_name = "FILE", conflicts_with = "nats_user")]
    pub(crate) nats_nkey: Option<PathBuf>,
    /// TLS toward NATS: the CA file of the NATS servers' certificates (default: the system's roots)
    #[arg(long, value_name = "FILE", requires = "federate")]
    pub(crate) nats_tls_ca: Option<PathBuf>,
    /// TLS toward NATS: a client certificate for servers that verify clients (with --nats-tls-key)
    #[arg(long, value_name = "FILE", requires_all = ["federate", "nats_tls_key"])]
    pub(crate) nats_tls_cert: Option<PathBuf>,
    /// TLS toward NATS: the key of --nats-tls-cert
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub(crate) nats_tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) ping: PingFlags,
    #[command(flatten)]
    pub(crate) log: LogFlags,
}

fn hb_duration(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| positive_duration(text).map_err(|e| format!("{flag} '{text}': {e}"))
}

/// The heartbeat settings given (`interval`, `timeout`: flags or config
/// keys, named by `names`) over those of `config`, checked together: a
/// timeout no longer than the interval is refused naming both.
pub(crate) fn set_heartbeats(
    config: &mut stagebus::FederationConfig,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    names: [&str; 2],
) -> Result<(), String> {
    let interval = interval.unwrap_or(config.hb_interval);
    let timeout = timeout.unwrap_or(config.hb_timeout);
    if timeout <= interval {
        return Err(format!(
            "{} ({timeout:?}) must be longer than {} ({interval:?}): a peer broker would be \
             declared dead between two of its heartbeats",
            names[1], names[0]
        ));
    }
    config.hb_interval = interval;
    config.hb_timeout = timeout;
    Ok(())
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

/// One `--limit NAME=N`, checked against the limits' own rules.
fn limit_setting(text: &str) -> Result<(Limit, u64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--limit wants NAME=N, not '{text}'"))?;
    let limit = Limit::from_name(name).map_err(|e| e.message)?;
    let value = value
        .parse::<u64>()
        .map_err(|_| format!("--limit {name} wants a whole number, not '{value}'"))?;
    Limits::default().set(limit, value).map_err(|e| e.message)?;
    Ok((limit, value))
}

/// Credentials for NATS from flags or the config file: a user with a
/// password, a token, or an NKey seed file; at most one of them.
#[derive(Debug, Default)]
pub(crate) struct NatsCredentials {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) nkey_file: Option<PathBuf>,
    /// TLS toward NATS (CA, client certificate and key files).
    pub(crate) tls: stagebus::ClientTls,
}

/// Federation settings from flags or the config file, checked.
pub(crate) fn federation_config(
    servers: &str,
    broker_id: &str,
    namespace: Option<&str>,
    credentials: NatsCredentials,
) -> Result<stagebus::FederationConfig, String> {
    use stagebus::federation::nats::{NKeySeed, NatsAuth};
    let mut config = stagebus::FederationConfig::new(servers, broker_id).map_err(|e| e.message)?;
    if let Some(ns) = namespace {
        config = config.with_namespace(ns).map_err(|e| e.message)?;
    }
    let NatsCredentials {
        user,
        password,
        token,
        nkey_file,
        tls,
    } = credentials;
    config.tls = tls;
    config.auth = match (user, password, token, nkey_file) {
        (Some(user), Some(password), None, None) => NatsAuth::UserPassword { user, password },
        (None, None, Some(t), None) => NatsAuth::Token(t),
        (None, None, None, Some(path)) => NatsAuth::NKey(NKeySeed::from_file(&path)?),
        (None, None, None, None) => NatsAuth::None,
        _ => {
            return Err(
                "NATS credentials: a user with a password, a token or an NKey, only one"
                    .to_string(),
            )
        }
    };
    Ok(config)
}

pub(crate) fn cmd_broker(args: &BrokerArgs) -> Result<(), Failure> {
    if let Some(path) = &args.check_config {
        config_file::read(path).map_err(Failure::Failed)?;
        crate::say(&format!("{}: ok", path.display()));
        return Ok(());
    }
    let file = match &args.config {
        Some(path) => config_file::read(path).map_err(Failure::Failed)?,
        None => BrokerFile::default(),
    };
    args.log.install_over(file.log_level, file.log_format);
    let listen = if args.listen.is_empty() {
        file.listen.clone()
    } else {
        args.listen.clone()
    };
    let inherited = systemd::listen_fds()?;
    if listen.is_empty() && inherited.is_empty() {
        return Err(usage_error(
            "broker",
            "nothing to listen on: give --listen or `listen` in the config file (or let systemd pass sockets: LISTEN_FDS)",
        ));
    }
    let max_connections = match args.max_connections {
        Some(n) => n,
        None => {
            let files = raise_open_file_limit();
            connections_for(files, listen.len() + inherited.len())
        }
    };
    // Blocked before any thread exists (see stop_signals::block).
    let signals = stop_signals::block()?;
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    // The file, then the flags: each later one wins.
    let mut limits = Limits::default();
    limits.max_connections = max_connections;
    for &(limit, value) in file.limits.iter().chain(&args.limits) {
        limits
            .set(limit, value)
            .map_err(|e| Failure::Failed(e.message))?;
    }
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    if let Some(interval) = args.ping.ping_interval {
        limits.ping_interval = interval;
    }
    if let Some(max) = args.ping.ping_max {
        limits.ping_max = max;
    }
    let mut config = BrokerConfig::listening(listen).with_limits(limits);
    config.inherited = inherited;
    let tokens = crate::secret::broker_tokens(args.token.as_deref(), args.token_file.as_deref())?;
    config.token = tokens.shared.or(file.token);
    config.named_tokens = tokens.named;
    if let Some(mode) = args.socket_mode {
        config.socket_mode = mode;
    }
    config.socket_group = args.socket_group.clone();
    if let Some(path) = &args.policy {
        config.policy = Some(stagebus::broker::Policy::from_file(path)?);
    }
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(stagebus::BrokerTls::new(cert, key)),
        _ => file.tls.clone(),
    };
    if let Some(ca) = &args.tls_client_ca {
        match config.tls.as_mut() {
            Some(tls) => tls.client_ca = Some(ca.clone()),
            None => {
                return Err(usage_error(
                    "broker",
                    "--tls-client-ca needs --tls-cert and --tls-key (or [tls] in the config file)",
                ))
            }
        }
    }
    config.federation = file.federation.clone();
    if let (Some(servers), Some(id)) = (&args.federate, &args.broker_id) {
        let f = federation_config(
            servers,
            id,
            args.namespace.as_deref(),
            NatsCredentials {
                user: args.nats_user.clone(),
                password: args.nats_password.clone(),
                token: args.nats_token.clone(),
                nkey_file: args.nats_nkey.clone(),
                tls: stagebus::ClientTls {
                    ca: args.nats_tls_ca.clone(),
                    cert: args.nats_tls_cert.clone(),
                    key: args.nats_tls_key.clone(),
                },
            },
        )
        .map_err(|e| usage_error("broker", &e))?;
        config.federation = Some(f);
    }
    if args.nats_sys_events {
        let Some(f) = config.federation.as_mut() else {
            return Err(usage_error(
                "broker",
                "--nats-sys-events needs --federate (or [federation] in the config file)",
            ));
        };
        f.sys_events = true;
    }
    if args.hb_interval.is_some() || args.hb_timeout.is_some() {
        let Some(f) = config.federation.as_mut() else {
            return Err(usage_error(
                "broker",
                "--hb-interval and --hb-timeout need --federate (or [federation] in the config file)",
            ));
        };
        set_heartbeats(
            f,
            args.hb_interval,
            args.hb_timeout,
            ["--hb-interval", "--hb-timeout"],
        )
        .map_err(|e| usage_error("broker", e))?;
    }
    let broker = Broker::new(&lp, config)?;
    stop_signals::stop_loop_on(&lp, signals)?;
    {
        // Scripts wait for these lines to know the broker is ready; a
        // reader that went away must not stop the broker, so write errors
        // are ignored.
        let mut out = io::stdout().lock();
        let addresses: Vec<String> = broker
            .local_addresses()
            .iter()
            .map(ToString::to_string)
            .collect();
        for address in &addresses {
            let _ = writeln!(out, "listening on {address}");
        }
        let _ = out.flush();
        systemd::notify_or_warn(&format!(
            "READY=1\nSTATUS=listening on {}\nMAINPID={}",
            addresses.join(" "),
            std::process::id()
        ));
    }
    let outcome = lp.run();
    systemd::notify_or_warn("STOPPING=1");
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
