//! Errors: a stable code for programs, a message for people.
//!
//! Every failure that stagebus reports, locally or from across the wire,
//! is an [`Error`]: an [`ErrorCode`] whose numbers never change, plus a
//! message. Messages of the broker operations keep the strings of the
//! original POEx::ProxySession (`Session 'X' doesn't exist`, …) so that
//! programs ported from it can still match them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong, as a stable number. Numbers are part of the wire
/// protocol and of the C ABI: a retired number is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No session is published under that name.
    NoSuchSession = 1,
    /// The session (or stage) has no such method.
    NoSuchMethod = 2,
    /// The publisher disconnected before answering.
    PublisherGone = 3,
    /// The connection to the broker is closed or never opened.
    BrokerGone = 4,
    /// The request's timeout fired before its final response.
    Timeout = 5,
    /// A configured limit (frame size, pending requests, queued bytes,
    /// name length, sessions) would be exceeded.
    LimitExceeded = 6,
    /// A peer broke the wire protocol (bad frame, bad handshake).
    Protocol = 7,
    /// A session of that name is already published.
    AlreadyExists = 8,
    /// An argument is missing, empty or malformed.
    InvalidArgument = 9,
    /// Only the connection that published a session may rescind it.
    NotPublisher = 10,
    /// The session is not subscribed on this client.
    NotSubscribed = 11,
    /// The broker refused the handshake (wrong token or version).
    Refused = 12,
    /// An operating-system I/O error (connect refused, bind failed, …).
    Io = 13,
    /// The request was cancelled (reported to the callee, and to callers
    /// that operate on a cancelled request).
    Cancelled = 14,
    /// A response found no handler on the requester.
    Unhandled = 15,
    /// A handler failed while serving the request.
    HandlerFailed = 16,
    /// The operation is not valid in the object's current state (answering
    /// twice, recalling a finished request, …).
    InvalidState = 17,
    /// A code this build does not know (sent by a newer peer).
    Unknown = 0xffff,
}

impl ErrorCode {
    /// The stable snake_case name of the code (`no_such_session`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoSuchSession => "no_such_session",
            ErrorCode::NoSuchMethod => "no_such_method",
            ErrorCode::PublisherGone => "publisher_gone",
            ErrorCode::BrokerGone => "broker_gone",
            ErrorCode::Timeout => "timeout",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Protocol => "protocol",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotPublisher => "not_publisher",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::Refused => "refused",
            ErrorCode::Io => "io",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Unhandled => "unhandled",
            ErrorCode::HandlerFailed => "handler_failed",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        match n {
            1 => ErrorCode::NoSuchSession,
            2 => ErrorCode::NoSuchMethod,
            3 => ErrorCode::PublisherGone,
            4 => ErrorCode::BrokerGone,
            5 => ErrorCode::Timeout,
            6 => ErrorCode::LimitExceeded,
            7 => ErrorCode::Protocol,
            8 => ErrorCode::AlreadyExists,
            9 => ErrorCode::InvalidArgument,
            10 => ErrorCode::NotPublisher,
            11 => ErrorCode::NotSubscribed,
            12 => ErrorCode::Refused,
            13 => ErrorCode::Io,
            14 => ErrorCode::Cancelled,
            15 => ErrorCode::Unhandled,
            16 => ErrorCode::HandlerFailed,
            17 => ErrorCode::InvalidState,
            _ => ErrorCode::Unknown,
        }
    }
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
