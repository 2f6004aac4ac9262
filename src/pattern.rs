//! Name patterns of signal matches (and, where a name is watched, of
//! watches): how a listener says which sessions and signals it wants.
//!
//! A pattern is one of:
//!
//! * `*`: every name;
//! * `prefix*` (one `*`, at the end): every name that starts with
//!   `prefix`;
//! * any other text without `*`: exactly that name.
//!
//! A `*` anywhere else is refused (`invalid_argument`), as is an empty
//! pattern; names that are emitted or published may hold no `*` to be
//! matched only by what their patterns say (a signal name with a `*` is
//! refused when emitted). The broker and the client read patterns with
//! the same code, so both agree on what matches.

use crate::error::{Error, ErrorCode};

/// A checked pattern (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every name.
    Any,
    /// `prefix*`: every name starting with the prefix.
    Prefix(String),
    /// A name without `*`: exactly it.
    Exact(String),
}

impl Pattern {
    /// Reads a pattern; `what` names it in the error (`session pattern`).
    pub fn parse(what: &str, text: &str) -> Result<Pattern, Error> {
        if text.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("the {what} is empty (use '*' for every name)"),
            ));
        }
        if text == "*" {
            return Ok(Pattern::Any);
        }
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("the {what} '{text}' has a '*' other than one at its end"),
            ));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_string())
        } else {
            Pattern::Exact(body.to_string())
        })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Exact(e) => name == e,
        }
    }

    /// The pattern as text again (what [`Pattern::parse`] reads back to
    /// the same pattern).
    pub fn text(&self) -> String {
        match self {
            Pattern::Any => "*".to_string(),
            Pattern::Prefix(p) => format!("{p}*"),
            Pattern::Exact(e) => e.clone(),
        }
    }

    /// The exact name, if the pattern is one.
    pub fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(e) => Some(e),
            _ => None,
        }
    }
}

/// Refuses a name that is to be matched by patterns (an emitted signal's
/// name): empty, or holding a `*`.
pub(crate) fn check_matchable(what: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("the {what} is empty"),
        ));
    }
    if name.contains('*') {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("the {what} '{name}' holds a '*', which is kept for patterns"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let any = Pattern::parse("p", "*").unwrap();
        let pre = Pattern::parse("p", "svc.*").unwrap();
        let ex = Pattern::parse("p", "svc.a").unwrap();
        assert!(any.matches("x") && any.matches(""));
        assert!(pre.matches("svc.a") && pre.matches("svc.") && !pre.matches("svc"));
        assert!(ex.matches("svc.a") && !ex.matches("svc.ab"));
        assert_eq!(ex.exact(), Some("svc.a"));
        for bad in ["", "a*b", "**", "*a"] {
            let e = Pattern::parse("p", bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        }
        assert!(check_matchable("s", "a*").is_err());
        assert!(check_matchable("s", "").is_err());
        assert!(check_matchable("s", "a.b").is_ok());
    }
}
