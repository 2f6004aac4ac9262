//! The handshake: a new connection's first frame must be a hello (or a
//! greeting) with the broker's magic, its protocol version and, if the
//! broker has tokens, one of them. Pure: a frame in, a verdict out.

use super::peer::CloseReason;
use crate::error::{Error, ErrorCode};
use crate::wire::{Frame, MAGIC, PROTOCOL_VERSION};

/// What an accepted hello tells about the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Hello {
    /// The name of the token it presented, if that token has one.
    pub identity: Option<String>,
    /// The name it gave itself.
    pub client_name: Option<String>,
    /// It sent a [`Frame::Greeting`], so it reads [`Frame::DeliverFrom`].
    pub greeted: bool,
}

/// The tokens a broker takes: the shared one (no name) and named ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tokens<'a> {
    pub shared: Option<&'a str>,
    pub named: &'a [(String, String)],
}

impl Tokens<'_> {
    fn required(&self) -> bool {
        self.shared.is_some() || !self.named.is_empty()
    }

    /// The token `offered` matches: `Some(name)` (None for the shared
    /// one), or None when it matches none. Every token is compared, each
    /// in constant time, so the time taken says nothing about which
    /// token, or how much of one, matched.
    fn matching(&self, offered: &str) -> Option<Option<String>> {
        let mut found = None;
        if let Some(shared) = self.shared {
            if constant_time_eq(offered.as_bytes(), shared.as_bytes()) {
                found = Some(None);
            }
        }
        for (name, secret) in self.named {
            if constant_time_eq(offered.as_bytes(), secret.as_bytes()) && found.is_none() {
                found = Some(Some(name.clone()));
            }
        }
        found
    }
}

/// Whether `offered` equals `secret`, in a time that depends only on the
/// length of `offered` (which the peer knows already), never on where
/// the two first differ nor on the secret's bytes.
pub(super) fn constant_time_eq(offered: &[u8], secret: &[u8]) -> bool {
    let mut diff = (offered.len() ^ secret.len()) as u64;
    for (i, &b) in offered.iter().enumerate() {
        // An index past the secret compares against its own complement,
        // which differs; the length check already counted it.
        let s = secret.get(i).copied().unwrap_or(!b);
        diff |= u64::from(b ^ s);
    }
    std::hint::black_box(diff) == 0
}

/// Checks a connection's first frame against the broker's `tokens`. Err
/// holds why the connection is refused: a protocol error when the frame
/// is no hello of this protocol at all, a refusal when it is a hello the
/// broker does not take.
pub(super) fn check_hello(frame: &Frame, tokens: Tokens<'_>) -> Result<Hello, CloseReason> {
    let (magic, version, offered, client_name, greeted) = match frame {
        Frame::Hello {
            magic,
            version,
            token,
        } => (magic, version, token, None, false),
        Frame::Greeting {
            magic,
            version,
            token,
            client_name,
        } => (magic, version, token, client_name.clone(), true),
        _ => return Err(CloseReason::Protocol(expected_hello(frame.kind_name()))),
    };
    if *magic != MAGIC {
        return Err(CloseReason::Protocol(Error::new(
            ErrorCode::Protocol,
            "bad magic in hello",
        )));
    }
    if *version != PROTOCOL_VERSION {
        return Err(CloseReason::HelloRefused(Error::new(
            ErrorCode::Refused,
            format!(
                "protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"
            ),
        )));
    }
    let mut identity = None;
    if tokens.required() {
        let matched = offered.as_deref().and_then(|t| tokens.matching(t));
        match matched {
            Some(name) => identity = name,
            None => {
                return Err(CloseReason::HelloRefused(Error::new(
                    ErrorCode::Refused,
                    "wrong or missing token",
                )))
            }
        }
    }
    Ok(Hello {
        identity,
        client_name,
        greeted,
    })
}

/// Why a connection that sent `kind` before its hello is refused.
pub(super) fn expected_hello(kind: &str) -> Error {
    Error::new(ErrorCode::Protocol, format!("expected hello, got '{kind}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        for other in [&b"secreT"[..], b"secre", b"secrets", b"", b"xecret"] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
        }
        // A byte past the secret equal to 0 or 0xff still differs.
        assert!(!constant_time_eq(b"a\0", b"a"));
        assert!(!constant_time_eq(b"a\xff", b"a"));
    }

    #[test]
    fn a_named_token_names_the_peer() {
        let named = vec![
            ("ops".to_string(), "s3cret".to_string()),
            ("app".to_string(), "other".to_string()),
        ];
        let tokens = Tokens {
            shared: Some("shared"),
            named: &named,
        };
        let greet = |token: Option<&str>| Frame::Greeting {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            token: token.map(str::to_string),
            client_name: Some("me".into()),
        };
        let hello = check_hello(&greet(Some("other")), tokens).unwrap();
        assert_eq!(hello.identity.as_deref(), Some("app"));
        assert_eq!(hello.client_name.as_deref(), Some("me"));
        assert!(hello.greeted);
        assert_eq!(
            check_hello(&greet(Some("shared")), tokens)
                .unwrap()
                .identity,
            None
        );
        for bad in [None, Some("s3cre"), Some("nope")] {
            assert!(matches!(
                check_hello(&greet(bad), tokens),
                Err(CloseReason::HelloRefused(_))
            ));
        }
    }
}
