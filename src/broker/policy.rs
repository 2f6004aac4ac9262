//! Who may do what on a broker: a policy file's rules.
//!
//! # Format
//!
//! A line format rather than TOML: a policy is a list of ordered rules,
//! each of four or five words, which a table format would only wrap in
//! quoting and brackets (and the `toml` crate would add its parser to
//! every build). One rule per line; a `#` at the start of a word starts
//! a comment; blank lines are skipped. A word may hold spaces inside
//! double quotes (`subject="CN=Ann Lee,O=Example\, Inc."`, with `\"` and
//! `\\` for a quote and a backslash; other backslashes stay as written):
//!
//! ```text
//! # verdict  who          what     name          method/signal
//! allow      uid=0        own      *
//! allow      gid=100      own      com.example.*
//! allow      token=ops    call     admin         restart
//! deny       anyone       call     admin
//! allow      anyone       call     *
//! allow      uid=1000     listen   Clock         tick
//! allow      anyone       watch    *
//! allow      uid=0        monitor
//! allow      uid=0        stats
//! ```
//!
//! * **verdict**: `allow` or `deny`.
//! * **who**: `anyone`; `uid=N` or `gid=N` (the peer's credentials on a
//!   Unix socket, read from the kernel when it connected; `gid=N` matches
//!   its primary group or any of its supplementary groups, read with
//!   `SO_PEERGROUPS` on Linux); `token=NAME` (the name of the token
//!   the peer presented) or `subject=TEXT` (a TLS client certificate's
//!   subject): both match the peer's identity name.
//! * **what**: `own` (publish a name), `call` (call a session's
//!   methods), `listen` (receive a session's signals), `watch` (be told
//!   when names come and go), `monitor` (see all traffic), `stats` (read
//!   the broker's counters), `see` (find a session in a listing and
//!   subscribe to it). A policy without any `see` rule lets everyone see
//!   every session; one with `see` rules lists to each peer only the
//!   sessions it may see, and answers its subscribe to another one
//!   `access_denied`.
//! * **name** (for own, call, listen, watch, see): `*` (any), `PREFIX*` (any
//!   name starting with PREFIX) or an exact name. Default `*`.
//! * **method/signal** (for call and listen): the same patterns over the
//!   method or signal name. Default `*`.
//!
//! The first rule that matches the peer, the action and the names
//! decides; when none matches, the action is denied. A broker without a
//! policy allows everything to anyone who may connect.
//!
//! A name is owned under the policy in the sense that only the
//! identities it allows may publish it: when its publisher dies, the
//! name is free, but only for those identities again.

use crate::error::{Error, ErrorCode};
use crate::wire::CallerInfo;
use std::fmt;
use std::path::Path;

/// A broker's policy: ordered rules over who may do what. See the
/// module documentation for the file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// One rule of a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    who: Who,
    action: Action,
    name: Pattern,
    member: Pattern,
    line: usize,
}

/// Whom a rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anyone,
    Uid(u32),
    Gid(u32),
    /// A token name or a certificate subject: the peer's identity name.
    Identity(String),
}

/// What a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish (own) a name.
    Own,
    /// Call a session's method.
    Call,
    /// Receive a session's signals.
    Listen,
    /// Be told when names come and go.
    Watch,
    /// See all traffic.
    Monitor,
    /// Read the broker's counters.
    Stats,
    /// See a session: find it in a listing, subscribe to it. Policed
    /// only by a policy that has `see` rules (see the module
    /// documentation).
    See,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        Some(match word {
            "own" => Action::Own,
            "call" => Action::Call,
            "listen" => Action::Listen,
            "watch" => Action::Watch,
            "monitor" => Action::Monitor,
            "stats" => Action::Stats,
            "see" => Action::See,
            _ => return None,
        })
    }

    /// The action's word in a policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Own => "own",
            Action::Call => "call",
            Action::Listen => "listen",
            Action::Watch => "watch",
            Action::Monitor => "monitor",
            Action::Stats => "stats",
            Action::See => "see",
        }
    }

    /// How many name words it takes after the action.
    fn names(self) -> usize {
        match self {
            Action::Call | Action::Listen => 2,
            Action::Own | Action::Watch | Action::See => 1,
            Action::Monitor | Action::Stats => 0,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name pattern: any, a prefix, or exact.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn parse(word: &str) -> Pattern {
        match word.strip_suffix('*') {
            Some("") => Pattern::Any,
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(word.to_string()),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Exact(e) => name == e,
        }
    }
}

impl Who {
    fn parse(word: &str) -> Result<Who, String> {
        if word == "anyone" {
            return Ok(Who::Anyone);
        }
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "'{word}' names nobody (expected anyone, uid=N, gid=N, token=NAME or subject=TEXT)"
            ));
        };
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("'{value}' in '{word}' is not a number"))
        };
        match key {
            "uid" => Ok(Who::Uid(number()?)),
            "gid" => Ok(Who::Gid(number()?)),
            "token" | "subject" if !value.is_empty() => Ok(Who::Identity(value.to_string())),
            "token" | "subject" => Err(format!("'{word}' names nobody (empty name)")),
            _ => Err(format!(
                "unknown '{key}=' in '{word}' (expected uid=, gid=, token= or subject=)"
            )),
        }
    }

    fn matches(&self, peer: &CallerInfo, groups: &[u32]) -> bool {
        match self {
            Who::Anyone => true,
            Who::Uid(uid) => peer.uid == Some(*uid),
            Who::Gid(gid) => peer.gid == Some(*gid) || groups.contains(gid),
            Who::Identity(name) => peer.identity.as_deref() == Some(name.as_str()),
        }
    }
}

/// A rule line's words: split on whitespace, where a double-quoted
/// stretch (`subject="CN=Ann Lee,O=Example"`) keeps its spaces, `\"` and
/// `\\` inside quotes stand for `"` and `\` (any other backslash stays, so
/// RFC 4514's `\,` is written as is), and a `#` that starts a word
/// outside quotes comments out the rest of the line.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    let mut word: Option<String> = None;
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => w.push(e),
                            // RFC 4514's own escapes (`\,`) stay as written.
                            Some(other) => {
                                w.push('\\');
                                w.push(other);
                            }
                            None => return Err("a quote is not closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a quote is not closed".into()),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

impl Policy {
    /// Parses a policy's text. Errors name the line and what is wrong
    /// with it (`invalid_argument`).
    pub fn parse(text: &str) -> Result<Policy, Error> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let bad = |why: String| {
                Error::new(
                    ErrorCode::InvalidArgument,
                    format!("policy line {line}: {why}"),
                )
            };
            let words = split_words(raw).map_err(bad)?;
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            if words.is_empty() {
                continue;
            }
            let allow = match words[0] {
                "allow" => true,
                "deny" => false,
                other => return Err(bad(format!("'{other}' is no verdict (allow or deny)"))),
            };
            let (Some(who), Some(action)) = (words.get(1), words.get(2)) else {
                return Err(bad(
                    "a rule is: allow|deny WHO ACTION [NAME [METHOD]]".into()
                ));
            };
            let who = Who::parse(who).map_err(bad)?;
            let action = Action::parse(action).ok_or_else(|| {
                bad(format!(
                    "'{action}' is no action (own, call, listen, watch, monitor, stats or see)"
                ))
            })?;
            let names = &words[3..];
            if names.len() > action.names() {
                return Err(bad(format!(
                    "'{action}' takes at most {} name(s), got {}",
                    action.names(),
                    names.len()
                )));
            }
            let pattern = |i: usize| names.get(i).map_or(Pattern::Any, |w| Pattern::parse(w));
            rules.push(Rule {
                allow,
                who,
                action,
                name: pattern(0),
                member: pattern(1),
                line,
            });
        }
        Ok(Policy { rules })
    }

    /// Reads and parses the policy file at `path`.
    pub fn from_file(path: &Path) -> Result<Policy, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::io(
                format_args!("cannot read the policy file {}", path.display()),
                &e,
            )
        })?;
        Policy::parse(&text)
            .map_err(|e| Error::new(e.code, format!("{}: {}", path.display(), e.message)))
    }

    /// Whether `peer` may do `action` on `name` (and `member`: the method
    /// or signal), by the first rule that matches; no match denies.
    pub fn allows(&self, peer: &CallerInfo, action: Action, name: &str, member: &str) -> bool {
        self.allows_in_groups(peer, &[], action, name, member)
    }

    /// [`Policy::allows`] for a peer that is also in the supplementary
    /// `groups`, which `gid=` rules match as well as its primary group.
    pub fn allows_in_groups(
        &self,
        peer: &CallerInfo,
        groups: &[u32],
        action: Action,
        name: &str,
        member: &str,
    ) -> bool {
        self.deciding_rule(peer, groups, action, name, member)
            .is_some_and(|r| r.allow)
    }

    fn deciding_rule(
        &self,
        peer: &CallerInfo,
        groups: &[u32],
        action: Action,
        name: &str,
        member: &str,
    ) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.action == action
                && r.who.matches(peer, groups)
                && r.name.matches(name)
                && r.member.matches(member)
        })
    }

    /// Whether `peer` may publish (own) `name`.
    pub fn may_own(&self, peer: &CallerInfo, name: &str) -> bool {
        self.allows(peer, Action::Own, name, "")
    }

    /// Whether `peer` may call `method` of `session`.
    pub fn may_call(&self, peer: &CallerInfo, session: &str, method: &str) -> bool {
        self.allows(peer, Action::Call, session, method)
    }

    /// Whether `peer` may receive the signal `signal` of `session`.
    /// (Signals are not wired on this branch; this is the check they
    /// call.)
    pub fn may_listen(&self, peer: &CallerInfo, session: &str, signal: &str) -> bool {
        self.allows(peer, Action::Listen, session, signal)
    }

    /// Whether `peer` may be told when `name` comes and goes.
    pub fn may_watch(&self, peer: &CallerInfo, name: &str) -> bool {
        self.allows(peer, Action::Watch, name, "")
    }

    /// Whether `peer` may see all traffic.
    pub fn may_monitor(&self, peer: &CallerInfo) -> bool {
        self.allows(peer, Action::Monitor, "", "")
    }

    /// Whether the policy has rules for `action`. A policy without `see`
    /// rules lets everyone see every session (as before `see` existed).
    pub fn polices(&self, action: Action) -> bool {
        self.rules.iter().any(|r| r.action == action)
    }

    /// Whether `peer` (in the supplementary `groups`) may see `session`
    /// in a listing and subscribe to it: yes when the policy has no
    /// `see` rules, else as its first matching `see` rule says.
    pub fn may_see(&self, peer: &CallerInfo, groups: &[u32], session: &str) -> bool {
        !self.polices(Action::See) || self.allows_in_groups(peer, groups, Action::See, session, "")
    }

    /// Whether `peer` may read the broker's counters.
    pub fn may_read_stats(&self, peer: &CallerInfo) -> bool {
        self.allows(peer, Action::Stats, "", "")
    }

    /// How many rules it has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it has no rules (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The line of the rule that decides `action` for `peer`, if any
    /// (for log lines).
    pub(crate) fn deciding_line(
        &self,
        peer: &CallerInfo,
        groups: &[u32],
        action: Action,
        name: &str,
        member: &str,
    ) -> Option<usize> {
        self.deciding_rule(peer, groups, action, name, member)
            .map(|r| r.line)
    }
}

/// A peer in words for a log line: its connection, credentials and
/// names, as far as known.
pub(crate) fn describe(peer: &CallerInfo) -> String {
    let mut out = format!("connection {}", peer.connection);
    if let Some(uid) = peer.uid {
        out += &format!(" uid={uid}");
    }
    if let Some(gid) = peer.gid {
        out += &format!(" gid={gid}");
    }
    if let Some(pid) = peer.pid {
        out += &format!(" pid={pid}");
    }
    if let Some(name) = &peer.identity {
        out += &format!(" identity={name:?}");
    }
    if let Some(name) = &peer.client_name {
        out += &format!(" client={name:?}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_subject_keeps_its_spaces_and_escapes() {
        let p = Policy::parse(
            "allow subject=\"CN=Ann Lee,O=Example\\, Inc.\" call Vault # Ann\n\
             allow subject=\"CN=Q\\\"x\" call *\n",
        )
        .unwrap();
        let ann = peer(None, None, Some("CN=Ann Lee,O=Example\\, Inc."));
        assert!(p.allows(&ann, Action::Call, "Vault", "open"));
        assert!(!p.allows(&ann, Action::Call, "Other", "open"));
        let q = peer(None, None, Some("CN=Q\"x"));
        assert!(p.allows(&q, Action::Call, "Other", "m"));
        let ann_lee = peer(None, None, Some("CN=Ann"));
        assert!(!p.allows(&ann_lee, Action::Call, "Vault", "open"));
    }

    #[test]
    fn a_quote_not_closed_is_an_error_naming_the_line() {
        let e = Policy::parse("allow anyone own *\nallow subject=\"CN=a b call *\n").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("line 2") && e.message.contains("not closed"),
            "{e}"
        );
        let e = Policy::parse("allow subject=\"CN=x\\").unwrap_err();
        assert!(
            e.message.contains("line 1") && e.message.contains("not closed"),
            "{e}"
        );
        let e = Policy::parse("allow subject=\"\" call *\n").unwrap_err();
        assert!(e.message.contains("empty name"), "{e}");
    }

    fn peer(uid: Option<u32>, gid: Option<u32>, identity: Option<&str>) -> CallerInfo {
        CallerInfo {
            connection: 1,
            uid,
            gid,
            pid: None,
            identity: identity.map(str::to_string),
            client_name: None,
        }
    }

    const SAMPLE: &str = "
        # comment
        allow uid=0 own *
        allow gid=100 own com.example.*   # trailing comment
        allow token=ops call admin restart
        deny anyone call admin
        allow anyone call *
        allow uid=1000 listen Clock tick
        allow anyone watch *
        allow uid=0 monitor
        allow subject=CN=root stats
    ";

    #[test]
    fn the_first_matching_rule_decides_and_none_denies() {
        let p = Policy::parse(SAMPLE).unwrap();
        assert_eq!(p.len(), 9);
        let root = peer(Some(0), Some(0), None);
        let staff = peer(Some(1000), Some(100), None);
        let ops = peer(None, None, Some("ops"));
        let other = peer(None, None, Some("app"));
        assert!(p.may_own(&root, "anything"));
        assert!(p.may_own(&staff, "com.example.svc"));
        assert!(!p.may_own(&staff, "com.other"));
        assert!(!p.may_own(&ops, "x"));
        assert!(p.may_call(&ops, "admin", "restart"));
        assert!(!p.may_call(&ops, "admin", "other"));
        assert!(!p.may_call(&other, "admin", "restart"));
        assert!(p.may_call(&other, "Foo", "bar"));
        assert!(p.may_listen(&staff, "Clock", "tick"));
        assert!(!p.may_listen(&staff, "Clock", "tock"));
        assert!(!p.may_listen(&root, "Clock", "tick"));
        assert!(p.may_watch(&other, "x"));
        assert!(p.may_monitor(&root));
        assert!(!p.may_monitor(&staff));
        assert!(p.may_read_stats(&peer(None, None, Some("CN=root"))));
        assert!(!p.may_read_stats(&root));
        assert_eq!(
            p.deciding_line(&ops, &[], Action::Call, "admin", "x"),
            Some(6)
        );
    }

    #[test]
    fn an_empty_policy_denies_everything() {
        let p = Policy::parse("# nothing\n\n").unwrap();
        assert!(p.is_empty());
        assert!(!p.may_own(&peer(Some(0), Some(0), None), "x"));
        assert!(!p.may_call(&peer(Some(0), Some(0), None), "x", "y"));
    }

    #[test]
    fn bad_rules_name_their_line() {
        for (text, needle) in [
            ("permit anyone own x", "no verdict"),
            ("allow anyone", "a rule is"),
            ("allow uid=x own a", "not a number"),
            ("allow who own a", "names nobody"),
            ("allow token= own a", "empty name"),
            ("allow pid=3 own a", "unknown 'pid='"),
            ("allow anyone publish a", "no action"),
            ("allow anyone own a b", "at most 1"),
            ("allow anyone stats x", "at most 0"),
            ("allow anyone call a b c", "at most 2"),
        ] {
            let e = Policy::parse(&format!("\n{text}\n")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert!(e.message.starts_with("policy line 2: "), "{}", e.message);
            assert!(e.message.contains(needle), "{text}: {}", e.message);
        }
    }
}
