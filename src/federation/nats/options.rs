//! What a NATS connection is told: the servers, the credentials and the
//! timings, and the parsing of `nats://` URLs.

use crate::transport::ClientTls;
use std::time::Duration;

/// Credentials sent in `CONNECT`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// None (or whatever the server URL carries).
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A user's NKey: the server's nonce is signed with it.
    NKey(NKeySeed),
}

/// A user's NKey seed, read and checked (NATS's challenge–response
/// authentication; see [`super::nkey`]). Needs the `tls` feature, whose
/// crypto signs.
#[derive(Clone)]
pub struct NKeySeed(Seed);

#[cfg(feature = "tls")]
type Seed = std::sync::Arc<super::nkey::NKey>;
/// Without the `tls` feature no seed can be read: the type is empty.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum Seed {}

impl NKeySeed {
    /// Reads a user seed (`SU…`) from `text`: the seed alone, or a seed
    /// or `.creds` file's content. The error never holds the secret.
    pub fn parse(text: &str) -> Result<NKeySeed, String> {
        #[cfg(feature = "tls")]
        return super::nkey::NKey::from_seed(text).map(|k| NKeySeed(std::sync::Arc::new(k)));
        #[cfg(not(feature = "tls"))]
        {
            let _ = text;
            Err("NKeys need stagebus built with the tls feature".into())
        }
    }

    /// Reads the seed from the file at `path`; errors name the file.
    pub fn from_file(path: &std::path::Path) -> Result<NKeySeed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the NKey seed file {}: {e}", path.display()))?;
        NKeySeed::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The public key (`U…`).
    pub fn public_key(&self) -> &str {
        #[cfg(feature = "tls")]
        return self.0.public_key();
        #[cfg(not(feature = "tls"))]
        match self.0 {}
    }

    /// The user's JWT, when the seed came from a `.creds` file.
    pub fn jwt(&self) -> Option<&str> {
        #[cfg(feature = "tls")]
        return self.0.jwt();
        #[cfg(not(feature = "tls"))]
        match self.0 {}
    }

    /// The signature of the server's `nonce` (base64url).
    pub fn sign(&self, nonce: &[u8]) -> String {
        #[cfg(feature = "tls")]
        return self.0.sign(nonce);
        #[cfg(not(feature = "tls"))]
        {
            let _ = nonce;
            match self.0 {}
        }
    }
}

impl PartialEq for NKeySeed {
    fn eq(&self, other: &NKeySeed) -> bool {
        self.public_key() == other.public_key()
    }
}

impl Eq for NKeySeed {}

impl std::fmt::Debug for NKeySeed {
    /// The public key only, never the seed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NKeySeed({})", self.public_key())
    }
}

impl std::fmt::Debug for NatsAuth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => write!(f, "None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            NatsAuth::Token(_) => write!(f, "Token(***)"),
            NatsAuth::NKey(k) => write!(f, "NKey({})", k.public_key()),
        }
    }
}

/// One server to connect to: `host:port`, with credentials when its URL
/// carried them (`nats://user:pass@host:port`, `nats://token@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (4222 when the URL names none).
    pub port: u16,
    /// Credentials from the URL, used when the options carry none.
    pub auth: NatsAuth,
    /// TLS demanded (`tls://`): a server that offers none is skipped.
    pub tls: bool,
}

impl ServerUrl {
    /// Parses `nats://[user:pass@|token@]host[:port]` (the scheme may be
    /// left out), or `tls://…` for a server that must speak TLS. Other
    /// schemes are refused.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let url = url.trim();
        let (rest, tls) = match url.split_once("://") {
            Some(("nats", rest)) => (rest, false),
            Some(("tls", rest)) => (rest, true),
            Some((scheme, _)) => {
                return Err(format!(
                    "{url:?}: scheme {scheme}:// is not supported (nats:// or tls://)"
                ))
            }
            None => (url, false),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let auth = match cred.split_once(':') {
                    Some((u, p)) => NatsAuth::UserPassword {
                        user: u.to_string(),
                        password: p.to_string(),
                    },
                    None => NatsAuth::Token(cred.to_string()),
                };
                (auth, hp)
            }
            None => (NatsAuth::None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (h, 4222),
                Some((h, p)) => match p.strip_prefix(':').and_then(|p| p.parse().ok()) {
                    Some(port) => (h, port),
                    None => return Err(format!("{url:?}: bad port")),
                },
                None => return Err(format!("{url:?}: unclosed '['")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => match p.parse::<u16>() {
                    Ok(port) => (h, port),
                    Err(_) => return Err(format!("{url:?}: bad port {p:?}")),
                },
                None => (hostport, 4222),
            }
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(format!("{url:?}: bad host {host:?}"));
        }
        if port == 0 {
            return Err(format!("{url:?}: port 0"));
        }
        Ok(ServerUrl {
            host: host.to_string(),
            port,
            auth,
            tls,
        })
    }

    /// `host:port`, for messages and for connecting.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses a comma-separated list of server URLs (at least one).
pub fn parse_servers(list: &str) -> Result<Vec<ServerUrl>, String> {
    let servers = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(ServerUrl::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no NATS server given".to_string());
    }
    Ok(servers)
}

/// How a [`NatsClient`](super::NatsClient) connects and stays connected.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The servers, tried in order; servers the cluster announces
    /// (`connect_urls`) are added behind them.
    pub servers: Vec<ServerUrl>,
    /// The connection's name (seen in the server's monitoring).
    pub name: String,
    /// Credentials; [`NatsAuth::None`] uses those of the server's URL.
    pub auth: NatsAuth,
    /// How often a `PING` checks the server.
    pub ping_interval: Duration,
    /// `PING`s without a `PONG` before the connection is dropped as stale.
    pub max_pings_out: u32,
    /// How long a connection attempt (TCP, `INFO`, `CONNECT`, `PONG`) may
    /// take.
    pub connect_timeout: Duration,
    /// The first back-off after a full round of the server list failed;
    /// doubled after each further failed round.
    pub reconnect_wait: Duration,
    /// The longest back-off.
    pub reconnect_wait_max: Duration,
    /// Bytes of output that may wait for the socket; a publish over it
    /// is refused.
    pub max_queued: usize,
    /// TLS settings: the CA that signs the servers' certificates (the
    /// system's roots when none), and a client certificate for servers
    /// that verify clients. With any of them set every connection uses
    /// TLS; without, TLS is used for `tls://` servers and for servers
    /// whose `INFO` requires it.
    pub tls: ClientTls,
}

impl NatsOptions {
    /// Options for `servers` with default timings: ping every 2 s, 2
    /// missed pongs, 2 s to connect, back-off from 50 ms to 2 s, 64 MiB
    /// of output.
    pub fn new(servers: Vec<ServerUrl>) -> NatsOptions {
        NatsOptions {
            servers,
            name: "stagebus".to_string(),
            auth: NatsAuth::None,
            ping_interval: Duration::from_secs(2),
            max_pings_out: 2,
            connect_timeout: Duration::from_secs(2),
            reconnect_wait: Duration::from_millis(50),
            reconnect_wait_max: Duration::from_secs(2),
            max_queued: 64 << 20,
            tls: ClientTls::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = ServerUrl::parse("nats://127.0.0.1:4333").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 4333));
        assert_eq!(u.auth, NatsAuth::None);
        let u = ServerUrl::parse("nats://a:b@h").unwrap();
        assert_eq!(u.port, 4222);
        assert_eq!(
            u.auth,
            NatsAuth::UserPassword {
                user: "a".into(),
                password: "b".into()
            }
        );
        let u = ServerUrl::parse("tok@[::1]:5").unwrap();
        assert_eq!(u.host_port(), "[::1]:5");
        assert_eq!(u.auth, NatsAuth::Token("tok".into()));
        assert!(ServerUrl::parse("tls://h:1").unwrap().tls);
        assert!(!ServerUrl::parse("nats://h:1").unwrap().tls);
        for bad in [
            "wss://h:1",
            "nats://h:x",
            "nats://:1",
            "h:0",
            "nats://h:70000",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_servers("nats://a:1, nats://b:2").unwrap().len(), 2);
        assert!(parse_servers(" , ").is_err());
    }
}
