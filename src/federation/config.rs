//! How a broker joins a federation: the NATS servers, its id, the
//! namespace, credentials and timings.

use super::nats::{parse_servers, NatsAuth, ServerUrl};
use crate::error::{Error, ErrorCode};
use crate::transport::ClientTls;
use std::time::Duration;

/// A broker's federation settings (see [`BrokerConfig::federation`]).
///
/// Not exhaustive: build it with [`FederationConfig::new`] and set the
/// fields to change.
///
/// [`BrokerConfig::federation`]: crate::BrokerConfig::federation
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FederationConfig {
    /// The NATS servers, tried in order (one connection at a time).
    pub servers: Vec<ServerUrl>,
    /// This broker's id, unique in the namespace
    /// (`[A-Za-z0-9_-]{1,64}`).
    pub broker_id: String,
    /// The cluster namespace (default `sb`): several stagebus clusters
    /// may share one NATS account under different namespaces.
    pub namespace: String,
    /// Credentials for NATS (user and password, a token or an NKey);
    /// those in a server URL are used when this is [`NatsAuth::None`].
    pub auth: NatsAuth,
    /// TLS toward NATS: the CA of the servers' certificates (the
    /// system's roots when none) and a client certificate with its key
    /// for servers that verify clients. Any of them set makes every
    /// connection TLS; without, `tls://` servers and servers that
    /// require TLS get it, against the system's roots.
    pub tls: ClientTls,
    /// How often the broker says it is alive (default 500 ms), and how
    /// often a link with calls in flight is checked for lost messages.
    pub hb_interval: Duration,
    /// How long a peer broker may stay silent before it is declared dead
    /// (default 2 s): its sessions leave every listing and the calls to
    /// it end with `publisher_gone`.
    pub hb_timeout: Duration,
    /// How long a directory operation (a publish's claim of its name) may
    /// wait for JetStream (default 5 s); past it the publish fails with
    /// `timeout`.
    pub op_timeout: Duration,
    /// Copies of the directory bucket the NATS cluster keeps (default 3;
    /// never more than the servers the cluster announces).
    pub kv_replicas: u32,
    /// Listen to the NATS servers' client disconnect events
    /// (`$SYS.ACCOUNT.*.DISCONNECT`) as a faster sign of a peer's death
    /// (default off): a peer whose connection closed is probed at once
    /// and declared dead on two no-responders answers `hb_interval`
    /// apart with no heartbeat between, instead of after `hb_timeout`.
    /// Only where the NATS account receives those events (the system
    /// account's export imported into it); elsewhere nothing arrives and
    /// nothing changes.
    pub sys_events: bool,
}

/// What is wrong with heartbeats every `interval` and a death after
/// `timeout` of silence, if anything, naming the fields.
fn heartbeat_fault(interval: Duration, timeout: Duration) -> Option<String> {
    if interval.is_zero() {
        Some("hb_interval must not be zero".into())
    } else if timeout.is_zero() {
        Some("hb_timeout must not be zero".into())
    } else if timeout <= interval {
        Some(format!(
            "hb_timeout ({timeout:?}) must be longer than hb_interval ({interval:?}): \
             a peer would be declared dead between two of its heartbeats"
        ))
    } else {
        None
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl FederationConfig {
    /// Settings for broker `broker_id` joining through `servers`
    /// (`nats://host:port`, comma-separated), in namespace `sb`, with the
    /// default timings.
    pub fn new(servers: &str, broker_id: &str) -> Result<FederationConfig, Error> {
        let servers = parse_servers(servers)
            .map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("--federate: {e}")))?;
        let config = FederationConfig {
            servers,
            broker_id: broker_id.to_string(),
            namespace: "sb".to_string(),
            auth: NatsAuth::None,
            tls: ClientTls::default(),
            hb_interval: Duration::from_millis(500),
            hb_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
            kv_replicas: 3,
            sys_events: false,
        };
        config.check()?;
        Ok(config)
    }

    /// The same in namespace `namespace`.
    pub fn with_namespace(mut self, namespace: &str) -> Result<FederationConfig, Error> {
        self.namespace = namespace.to_string();
        self.check()?;
        Ok(self)
    }

    /// The same with heartbeats every `interval`, a peer silent for
    /// `timeout` declared dead; the error names the bad one (both
    /// non-zero, `timeout` longer than `interval`).
    pub fn with_heartbeats(
        mut self,
        interval: Duration,
        timeout: Duration,
    ) -> Result<FederationConfig, Error> {
        self.hb_interval = interval;
        self.hb_timeout = timeout;
        self.check()?;
        Ok(self)
    }

    /// Checks every setting; the error names the bad one.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::new(ErrorCode::InvalidArgument, what));
        if self.servers.is_empty() {
            return bad("federation: no NATS server given".into());
        }
        if !valid_id(&self.broker_id) {
            return bad(format!(
                "broker id {:?}: 1 to 64 letters, digits, '_' or '-'",
                self.broker_id
            ));
        }
        if !valid_id(&self.namespace) {
            return bad(format!(
                "namespace {:?}: 1 to 64 letters, digits, '_' or '-'",
                self.namespace
            ));
        }
        if let Some(why) = heartbeat_fault(self.hb_interval, self.hb_timeout) {
            return bad(format!("federation: {why}"));
        }
        if self.op_timeout.is_zero() {
            return bad("federation: op_timeout must not be zero".into());
        }
        Ok(())
    }

    /// The subject of a broker's inbox.
    pub(crate) fn inbox(&self, broker: &str) -> String {
        format!("sb.{}.b.{broker}", self.namespace)
    }

    /// The subject of this broker's heartbeats.
    pub(crate) fn heartbeat(&self, broker: &str) -> String {
        format!("sb.{}.hb.{broker}", self.namespace)
    }

    /// The reply subject of link messages from `from` to `to`, where
    /// no-responders statuses come back.
    pub(crate) fn no_responders(&self, from: &str, to: &str) -> String {
        format!("sb.{}.nr.{from}.{to}", self.namespace)
    }

    /// The subject of the NATS servers' client disconnect events.
    pub(crate) fn disconnect_events(&self) -> &'static str {
        "$SYS.ACCOUNT.*.DISCONNECT"
    }

    /// The name this broker's NATS connection gives itself (what the
    /// servers' events name it by).
    pub(crate) fn connection_name(&self, broker: &str) -> String {
        format!("sb.{}.{broker}", self.namespace)
    }

    /// The directory bucket.
    pub(crate) fn bucket(&self) -> String {
        format!("sb_{}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let c = FederationConfig::new("nats://127.0.0.1:4222,nats://h:5", "b1").unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.inbox("b2"), "sb.sb.b.b2");
        assert!(FederationConfig::new("", "b1").is_err());
        assert!(FederationConfig::new("nats://h:1", "b 1").is_err());
        assert!(FederationConfig::new("nats://h:1", "").is_err());
        assert!(FederationConfig::new("wss://h:1", "b1").is_err());
        assert!(FederationConfig::new("tls://h:1", "b1").unwrap().servers[0].tls);
        assert!(c.clone().with_namespace("a.b").is_err());
        assert_eq!(
            c.clone().with_namespace("prod").unwrap().bucket(),
            "sb_prod"
        );
        let ms = Duration::from_millis;
        assert_eq!(
            c.clone()
                .with_heartbeats(ms(100), ms(900))
                .unwrap()
                .hb_timeout,
            ms(900)
        );
        for (i, t, says) in [
            (0, 900, "hb_interval must not be zero"),
            (100, 0, "hb_timeout must not be zero"),
            (500, 500, "must be longer than hb_interval"),
            (
                900,
                100,
                "hb_timeout (100ms) must be longer than hb_interval (900ms)",
            ),
        ] {
            let e = c.clone().with_heartbeats(ms(i), ms(t)).unwrap_err();
            assert!(e.message.contains(says), "{i} {t}: {}", e.message);
        }
    }
}
