//! The broker's config file (`stagebus broker --config FILE`), in TOML:
//!
//! ```toml
//! listen = ["tcp://127.0.0.1:7400", "unix:/run/stagebus/bus.sock"]
//! token = "secret"          # better kept out of the file's readers' reach
//!
//! [limits]                  # any limit by its name (`--limit NAME=N`)
//! max-connections = 4096
//! ping-interval-ms = 30000
//! max-memory = 1073741824
//!
//! [log]
//! level = "info"            # off, error, warn, info, debug, trace
//! format = "json"           # text, json
//!
//! [tls]                     # for tls:// listeners (relative paths: from the file's folder)
//! cert = "/etc/stagebus/broker.pem"
//! key = "/etc/stagebus/broker.key"
//! client-ca = "/etc/stagebus/clients-ca.pem"   # mutual TLS
//! [federation]              # join other brokers over a NATS cluster
//! servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! broker-id = "b1"
//! namespace = "sb"          # default sb
//! nats-user = "fed"         # or nats-token, or nats-nkey-file; optional
//! nats-password = "secret"
//! # nats-nkey-file = "fed.nk"  # a user's NKey seed (relative: from the file's folder)
//! # nats-tls-ca = "nats-ca.pem"    # TLS toward NATS (also tls:// servers)
//! # nats-tls-cert = "fed.pem"      # a client certificate, with
//! # nats-tls-key = "fed.key"       # its key
//! hb-interval = "500ms"     # heartbeats (a number of seconds, or ms, s, m)
//! hb-timeout = "2s"         # a peer silent this long is dead (> hb-interval)
//! nats-sys-events = false   # $SYS disconnect events as a death sign (imported)
//! ```
//!
//! Every key is checked: an unknown key, a value of the wrong type or out
//! of range is an error naming the file, the line and the column.
//! Command-line flags override what the file says.

use crate::logging::LogFormat;
use log::LevelFilter;
use serde::Deserialize;
use stagebus::{Address, BrokerTls, Limit, Limits};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// What a config file says, checked.
#[derive(Debug, Default)]
pub(crate) struct BrokerFile {
    pub(crate) listen: Vec<Address>,
    pub(crate) token: Option<String>,
    /// Limits in the order the file gives them.
    pub(crate) limits: Vec<(Limit, u64)>,
    pub(crate) log_level: Option<LevelFilter>,
    pub(crate) log_format: Option<LogFormat>,
    /// The `[tls]` table.
    pub(crate) tls: Option<BrokerTls>,
    pub(crate) federation: Option<stagebus::FederationConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Vec<Spanned<String>>>,
    token: Option<String>,
    limits: Option<BTreeMap<Spanned<String>, Spanned<u64>>>,
    log: Option<RawLog>,
    tls: Option<RawTls>,
    federation: Option<Spanned<RawFederation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFederation {
    servers: Vec<String>,
    broker_id: String,
    namespace: Option<String>,
    nats_user: Option<String>,
    nats_password: Option<String>,
    nats_token: Option<String>,
    nats_nkey_file: Option<PathBuf>,
    nats_tls_ca: Option<PathBuf>,
    nats_tls_cert: Option<PathBuf>,
    nats_tls_key: Option<PathBuf>,
    hb_interval: Option<Spanned<RawDuration>>,
    hb_timeout: Option<Spanned<RawDuration>>,
    nats_sys_events: Option<bool>,
}

/// A duration in the file: a number of seconds, or a string with a unit
/// as the command line takes it (`"500ms"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(f64),
    Text(String),
}

impl RawDuration {
    fn duration(&self, key: &str) -> Result<std::time::Duration, String> {
        let text = match self {
            RawDuration::Seconds(s) => s.to_string(),
            RawDuration::Text(t) => t.clone(),
        };
        crate::command_line::positive_duration(&text).map_err(|e| format!("{key} '{text}': {e}"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

/// Reads and checks the config file at `path`.
pub(crate) fn read(path: &Path) -> Result<BrokerFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    // A relative path means the same file wherever the broker is started
    // from: the one beside the config file.
    let folder = path.parent().unwrap_or(Path::new(""));
    parse_in(&text, folder).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks a config file's text, with relative paths as they stand.
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Result<BrokerFile, String> {
    parse_in(text, Path::new(""))
}

/// Checks a config file's text; relative paths in it are under `folder`.
fn parse_in(text: &str, folder: &Path) -> Result<BrokerFile, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| one_line(&e, text))?;
    let at = |span: std::ops::Range<usize>| position(text, span.start);
    let mut file = BrokerFile {
        token: raw.token,
        tls: raw.tls.map(|t| BrokerTls {
            cert: folder.join(t.cert),
            key: folder.join(t.key),
            client_ca: t.client_ca.map(|ca| folder.join(ca)),
        }),
        ..BrokerFile::default()
    };
    for address in raw.listen.unwrap_or_default() {
        let parsed = address
            .get_ref()
            .parse::<Address>()
            .map_err(|e| format!("{}: listen: {}", at(address.span()), e.message))?;
        file.listen.push(parsed);
    }
    // A BTreeMap orders by name; the file's order decides nothing,
    // since each limit is set once.
    for (name, value) in raw.limits.unwrap_or_default() {
        let limit = Limit::from_name(name.get_ref())
            .map_err(|e| format!("{}: limits: {}", at(name.span()), e.message))?;
        Limits::default()
            .set(limit, *value.get_ref())
            .map_err(|e| format!("{}: limits: {}", at(value.span()), e.message))?;
        file.limits.push((limit, *value.get_ref()));
    }
    if let Some(f) = raw.federation {
        let place = at(f.span());
        let f = f.into_inner();
        let mut heartbeats = [None, None];
        for (slot, (key, value)) in heartbeats.iter_mut().zip([
            ("hb-interval", &f.hb_interval),
            ("hb-timeout", &f.hb_timeout),
        ]) {
            if let Some(value) = value {
                let d = value
                    .get_ref()
                    .duration(key)
                    .map_err(|e| format!("{}: federation: {e}", at(value.span())))?;
                *slot = Some(d);
            }
        }
        let mut config = crate::broker::federation_config(
            &f.servers.join(","),
            &f.broker_id,
            f.namespace.as_deref(),
            crate::broker::NatsCredentials {
                user: f.nats_user,
                password: f.nats_password,
                token: f.nats_token,
                nkey_file: f.nats_nkey_file.map(|p| folder.join(p)),
                tls: stagebus::ClientTls {
                    ca: f.nats_tls_ca.map(|p| folder.join(p)),
                    cert: f.nats_tls_cert.map(|p| folder.join(p)),
                    key: f.nats_tls_key.map(|p| folder.join(p)),
                },
            },
        )
        .map_err(|e| format!("{place}: federation: {e}"))?;
        crate::broker::set_heartbeats(
            &mut config,
            heartbeats[0],
            heartbeats[1],
            ["hb-interval", "hb-timeout"],
        )
        .map_err(|e| format!("{place}: federation: {e}"))?;
        config.sys_events = f.nats_sys_events.unwrap_or(false);
        file.federation = Some(config);
    }
    if let Some(log) = raw.log {
        if let Some(level) = log.level {
            let parsed = level.get_ref().parse::<LevelFilter>().map_err(|_| {
                format!(
                    "{}: log.level: '{}' is none of off, error, warn, info, debug, trace",
                    at(level.span()),
                    level.get_ref()
                )
            })?;
            file.log_level = Some(parsed);
        }
        if let Some(format) = log.format {
            let parsed = match format.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(format!(
                        "{}: log.format: '{other}' is neither text nor json",
                        at(format.span())
                    ))
                }
            };
            file.log_format = Some(parsed);
        }
    }
    Ok(file)
}

/// "line L, column C" of byte `offset` in `text` (both from 1).
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// toml's error, whose text spans several lines (a snippet of the file),
/// as one line that names the position.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => format!("{}: {message}", position(text, span.start)),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_tls_paths_are_read_from_the_config_files_folder() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(
            &path,
            "[tls]\ncert = \"certs/b.pem\"\nkey = \"/etc/k.pem\"\nclient-ca = \"ca.pem\"\n",
        )
        .unwrap();
        let file = read(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let tls = file.unwrap().tls.unwrap();
        assert_eq!(tls.cert, dir.join("certs/b.pem"));
        assert_eq!(tls.key, Path::new("/etc/k.pem"), "absolute paths stay");
        assert_eq!(tls.client_ca, Some(dir.join("ca.pem")));
    }

    #[test]
    fn a_full_file_reads() {
        let file = parse(
            "listen = [\"tcp://127.0.0.1:0\", \"unix:/tmp/x.sock\"]\n\
             token = \"t\"\n\
             [limits]\n\
             max-connections = 7\n\
             ping-interval-ms = 1500\n\
             [log]\n\
             level = \"debug\"\n\
             format = \"json\"\n\
             [tls]\n\
             cert = \"c.pem\"\n\
             key = \"k.pem\"\n\
             client-ca = \"ca.pem\"\n",
        )
        .unwrap();
        let tls = file.tls.as_ref().unwrap();
        assert_eq!(tls.cert, Path::new("c.pem"));
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(file.listen.len(), 2);
        assert_eq!(file.token.as_deref(), Some("t"));
        assert_eq!(file.limits.len(), 2);
        assert!(file.limits.contains(&(Limit::MaxConnections, 7)));
        assert!(file.limits.contains(&(Limit::PingIntervalMs, 1500)));
        assert_eq!(file.log_level, Some(LevelFilter::Debug));
        assert_eq!(file.log_format, Some(LogFormat::Json));
        assert!(parse("").unwrap().listen.is_empty());
    }

    #[test]
    fn a_federation_table_reads_and_is_checked() {
        let file = parse(
            "[federation]\n\
             servers = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]\n\
             broker-id = \"b1\"\n\
             namespace = \"prod\"\n\
             nats-token = \"t\"\n",
        )
        .unwrap();
        let f = file.federation.unwrap();
        assert_eq!((f.servers.len(), f.broker_id.as_str()), (2, "b1"));
        assert_eq!(f.namespace, "prod");
        assert_eq!(f.hb_timeout, std::time::Duration::from_secs(2), "default");
        assert!(!f.sys_events, "off by default");
        let f = parse(
            "[federation]\n\
             servers = [\"nats://127.0.0.1:4222\"]\n\
             broker-id = \"b1\"\n\
             hb-interval = \"250ms\"\n\
             hb-timeout = 1.5\n\
             nats-sys-events = true\n",
        )
        .unwrap()
        .federation
        .unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!((f.hb_interval, f.hb_timeout), (ms(250), ms(1500)));
        assert!(f.sys_events);
        for (text, says) in [
            (
                "[federation]\nservers = []\nbroker-id = \"b1\"\n",
                "no NATS server",
            ),
            (
                "[federation]\nservers = [\"nats://h:1\"]\nbroker-id = \"b 1\"\n",
                "broker id",
            ),
            (
                "[federation]\nservers = [\"nats://h:1\"]\nbroker-id = \"b1\"\nnats-user = \"u\"\n",
                "a user with a password",
            ),
            ("\n[federation]\nservers = [\"nats://h:1\"]\n", "broker-id"),
            (
                "[federation]\nservers = [\"nats://h:1\"]\nbroker-id = \"b1\"\nhb-interval = 0\n",
                "hb-interval '0': wants a positive duration",
            ),
            (
                "[federation]\nservers = [\"nats://h:1\"]\nbroker-id = \"b1\"\nhb-timeout = \"2h\"\n",
                "hb-timeout '2h': unit 'h'",
            ),
            (
                "[federation]\nservers = [\"nats://h:1\"]\nbroker-id = \"b1\"\nhb-interval = \"3s\"\n",
                "hb-timeout (2s) must be longer than hb-interval (3s)",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says) && e.contains("line"), "{text:?}: {e}");
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("listen = [\"tcp://x:1\"]\nlisten_typo = 1\n", "line 2"),
            (
                "token = \"t\"\n\n[limits]\nmax-conections = 3\n",
                "line 4, column 1",
            ),
            ("[limits]\nmax-frame = 0\n", "line 2, column 13"),
            ("[limits]\nmax-frame = -1\n", "line 2"),
            ("listen = [\"nowhere\"]\n", "line 1, column 11"),
            ("[log]\nlevel = \"loud\"\n", "line 2"),
            ("[log]\nformat = \"xml\"\n", "line 2"),
            ("[log]\ncolour = true\n", "line 2"),
            ("listen = 3\n", "line 1"),
            ("[limits\n", "line 1"),
            ("[tls]\ncert = \"c.pem\"\n", "key"),
            ("[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n", "line 4"),
        ];
        for (text, wanted) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(wanted), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: one line: {e}");
        }
        assert!(parse("[limits]\nmax-conections = 3\n")
            .unwrap_err()
            .contains("max-conections"));
    }
}
