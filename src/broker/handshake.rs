//! The handshake: a new connection's first frame must be a hello with
//! the broker's magic, its protocol version and, if the broker has one,
//! its token. Pure: a frame in, a verdict out.

use super::peer::CloseReason;
use crate::error::{Error, ErrorCode};
use crate::wire::{Frame, MAGIC, PROTOCOL_VERSION};

/// Checks a connection's first frame against the broker's `token`. Err
/// holds why the connection is refused: a protocol error when the frame
/// is no hello of this protocol at all, a refusal when it is a hello the
/// broker does not take.
pub(super) fn check_hello(frame: &Frame, token: Option<&str>) -> Result<(), CloseReason> {
    let Frame::Hello {
        magic,
        version,
        token: offered,
    } = frame
    else {
        return Err(CloseReason::Protocol(expected_hello(frame.kind_name())));
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
    if token.is_some() && offered.as_deref() != token {
        return Err(CloseReason::HelloRefused(Error::new(
            ErrorCode::Refused,
            "wrong or missing token",
        )));
    }
    Ok(())
}

/// Why a connection that sent `kind` before its hello is refused.
pub(super) fn expected_hello(kind: &str) -> Error {
    Error::new(ErrorCode::Protocol, format!("expected hello, got '{kind}'"))
}
