//! Errors: a stable code for programs, a message for people.
//!
//! Every failure that stagebus reports, locally or from across the wire,
//! is an [`Error`]: an [`ErrorCode`] whose numbers never change, plus a
//! message. Messages of the broker operations keep the strings of the
//! original POEx::ProxySession (`Session 'X' doesn't exist`, …) so that
//! programs ported from it can still match them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares [`ErrorCode`] from one table: variant, stable number, stable
/// name and doc. Everything that lists the codes (the name, the number
/// conversions, [`ErrorCode::ALL`], and through it the C status checks
/// and the Perl table's test) is derived from this one list.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $number:literal, $name:literal;)+) => {
        /// What went wrong, as a stable number. Numbers are part of the wire
        /// protocol and of the C ABI: a retired number is never reused
        /// (15, `unhandled`, was never produced: a response without a
        /// handler has nobody to be reported to but the diagnostics).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "u16", into = "u16")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant = $number,)+
            /// A code this build does not know (sent by a newer peer).
            Unknown = 0xffff,
        }

        impl ErrorCode {
            /// Every code but [`ErrorCode::Unknown`], in number order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The stable snake_case name of the code (`no_such_session`, …).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                    ErrorCode::Unknown => "unknown",
                }
            }
        }

        impl From<u16> for ErrorCode {
            fn from(n: u16) -> Self {
                match n {
                    $($number => ErrorCode::$variant,)+
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

error_codes! {
    /// No session is published under that name.
    NoSuchSession = 1, "no_such_session";
    /// The session (or stage) has no such method.
    NoSuchMethod = 2, "no_such_method";
    /// The publisher disconnected before answering.
    PublisherGone = 3, "publisher_gone";
    /// The connection to the broker is closed or never opened.
    BrokerGone = 4, "broker_gone";
    /// The request's timeout fired before its final response.
    Timeout = 5, "timeout";
    /// A configured limit (frame size, pending requests, queued bytes,
    /// name length, sessions) would be exceeded.
    LimitExceeded = 6, "limit_exceeded";
    /// A peer broke the wire protocol (bad frame, bad handshake).
    Protocol = 7, "protocol";
    /// A session of that name is already published.
    AlreadyExists = 8, "already_exists";
    /// An argument is missing, empty or malformed.
    InvalidArgument = 9, "invalid_argument";
    /// Only the connection that published a session may rescind it.
    NotPublisher = 10, "not_publisher";
    /// The session is not subscribed on this client.
    NotSubscribed = 11, "not_subscribed";
    /// The broker refused the handshake (wrong token or version).
    Refused = 12, "refused";
    /// An operating-system I/O error (connect refused, bind failed, …).
    Io = 13, "io";
    /// The request was cancelled (reported to the callee, and to callers
    /// that operate on a cancelled request).
    Cancelled = 14, "cancelled";
    /// A handler failed while serving the request.
    HandlerFailed = 16, "handler_failed";
    /// The operation is not valid in the object's current state (answering
    /// twice, recalling a finished request, …).
    InvalidState = 17, "invalid_state";
    /// The callee let go of the request without a final answer: its last
    /// reference went away while it was still open.
    Unanswered = 18, "unanswered";
    /// A publish named another mode (`exclusive`, `queue`, `balance`)
    /// than the one the name's first publisher fixed.
    NameModeConflict = 19, "name_mode_conflict";
    /// The broker's policy does not allow this peer to do this (own a
    /// name, call a session or method, …).
    AccessDenied = 20, "access_denied";
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code as u16
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure: a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, for people (and for programs matching the
    /// original's strings).
    pub message: String,
}

impl Error {
    /// An error with that code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// `no_such_session` with the original's wording.
    pub fn no_such_session(name: &str) -> Self {
        Error::new(
            ErrorCode::NoSuchSession,
            format!("Session '{name}' doesn't exist"),
        )
    }

    /// `broker_gone`: the connection is closed.
    pub fn broker_gone(detail: impl fmt::Display) -> Self {
        Error::new(
            ErrorCode::BrokerGone,
            format!("connection to the broker is closed: {detail}"),
        )
    }

    /// `io` from an operating-system error, with what we were doing.
    pub fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Error::new(ErrorCode::Io, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of stagebus operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
