//! The core's checks against the broker's policy, and its denials: each
//! is answered `access_denied`, logged with the peer's identity, and
//! counted in [`super::BrokerStats::access_denied`].

use super::core::Core;
use super::policy::{describe, Action};
use super::ConnId;
use crate::error::{Error, ErrorCode};

impl Core {
    /// Whether `id` may see `session` (in a listing, to subscribe): with
    /// no policy, or one without `see` rules, always.
    pub(super) fn may_see(&self, id: ConnId, session: &str) -> bool {
        match (self.policy(), self.peers.get(&id)) {
            (Some(policy), Some(peer)) => policy.may_see(&peer.caller, &peer.groups, session),
            _ => true,
        }
    }

    /// [`Core::check_access`] for seeing `session`, when the policy has
    /// `see` rules.
    pub(super) fn check_see(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        if self.policy().is_some_and(|p| p.polices(Action::See)) {
            self.check_access(id, Action::See, session, "")?;
        }
        Ok(())
    }

    /// Ok if the policy lets `id` do `action` on `name` (and `member`:
    /// a method or signal), or if there is no policy; otherwise the
    /// denial, logged and counted, for the caller to answer with.
    pub(super) fn check_access(
        &mut self,
        id: ConnId,
        action: Action,
        name: &str,
        member: &str,
    ) -> Result<(), Error> {
        let Some(policy) = self.policy() else {
            return Ok(());
        };
        let Some(peer) = self.peers.get(&id) else {
            return Ok(());
        };
        if policy.allows_in_groups(&peer.caller, &peer.groups, action, name, member) {
            return Ok(());
        }
        let what = match action {
            Action::Call => format!("call '{member}' of '{name}'"),
            Action::Listen => format!("listen to '{member}' of '{name}'"),
            Action::Own | Action::Watch | Action::See => format!("{action} '{name}'"),
            Action::Monitor | Action::Stats => action.to_string(),
        };
        let rule = match policy.deciding_line(&peer.caller, &peer.groups, action, name, member) {
            Some(line) => format!("denied by policy line {line}"),
            None => "no policy rule allows it".to_string(),
        };
        log::warn!(
            target: "stagebus::broker",
            conn = peer.caller.connection, reason = "access_denied";
            "access denied: {} may not {what} ({rule})",
            describe(&peer.caller)
        );
        self.stats.access_denied += 1;
        Err(Error::new(
            ErrorCode::AccessDenied,
            format!("access denied: this connection may not {what} ({rule})"),
        ))
    }
}
