//! How names behave on the wire: the mode a name is published in, and
//! what a watcher is told when a watched name changes.
//!
//! Separate from the frames that carry them because both have their own
//! vocabulary (parsed from and shown as text by the CLI and bindings).

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// How a name takes several publishers (see [`Frame::PublishAs`](super::Frame::PublishAs)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NameMode {
    /// One publisher; another's publish fails with `already_exists`.
    #[default]
    Exclusive,
    /// Later publishers wait in line; when the owner goes or rescinds,
    /// the next one takes over.
    Queue,
    /// Every publisher serves; each new call goes to the one with the
    /// fewest calls in flight.
    Balance,
}

impl NameMode {
    /// Its name: `exclusive`, `queue` or `balance`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameMode::Exclusive => "exclusive",
            NameMode::Queue => "queue",
            NameMode::Balance => "balance",
        }
    }

    /// Reads a mode by its name.
    pub fn parse(text: &str) -> Option<NameMode> {
        match text {
            "exclusive" => Some(NameMode::Exclusive),
            "queue" => Some(NameMode::Queue),
            "balance" => Some(NameMode::Balance),
            _ => None,
        }
    }
}

/// What happened to a watched name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NameChange {
    /// It was published (it had no publisher): its methods.
    Appeared {
        /// The methods.
        methods: Vec<String>,
    },
    /// Another publisher took it over (a standby of a `queue` name):
    /// the methods it offers.
    OwnerChanged {
        /// The methods.
        methods: Vec<String>,
    },
    /// It has no publisher any more.
    Gone {
        /// Why: `no_such_session` (rescinded) or `publisher_gone` (its
        /// publisher disconnected).
        reason: Error,
    },
}
