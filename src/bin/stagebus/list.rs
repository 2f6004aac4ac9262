//! `stagebus list`: print the sessions published on a broker, as text
//! or as JSON.

use crate::command_line::{address, positive_seconds, timeout_or_default, ClientFlags};
use crate::connect::start_client;
use crate::Failure;
use serde::Serialize;
use stagebus::{Address, ClientConfig, SessionInfo};
use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

/// `stagebus list`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// the broker to ask
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    /// print one JSON array [{"name":…,"methods":[…]}]
    #[arg(long)]
    pub(crate) json: bool,
    /// give up after this many seconds (default 10)
    #[arg(long, value_name = "SECS", value_parser = positive_seconds("--timeout"))]
    pub(crate) timeout: Option<Duration>,
}

pub(crate) fn cmd_list(args: &ListArgs) -> Result<(), Failure> {
    let timeout = timeout_or_default(args.timeout);
    let sessions = fetch_listing(&args.broker, args.client.config()?, timeout)?;
    let text = if args.json {
        listing_json(&sessions)
    } else {
        listing_text(&sessions)
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
}

/// Connects, asks for the listing and waits for it, at most `timeout`.
fn fetch_listing(
    address: &Address,
    config: ClientConfig,
    timeout: Duration,
) -> Result<Vec<SessionInfo>, Failure> {
    let (lp, client) = start_client(address, config)?;
    // A failed connect also fails the listing, but only with a generic
    // `broker_gone`, and its own report (which says why: refused, wrong
    // token) may come a turn later; so wait for both outcomes.
    let connected = Rc::new(RefCell::new(None));
    let listing = Rc::new(RefCell::new(None));
    {
        let connected = connected.clone();
        client.on_connect(move |r| *connected.borrow_mut() = Some(r.map(|_| ())));
    }
    {
        let listing = listing.clone();
        client.listing(move |r| *listing.borrow_mut() = Some(r));
    }
    let finished = lp
        .run_until(timeout, || {
            connected.borrow().is_some() && listing.borrow().is_some()
        })
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    client.close();
    lp.shutdown();
    if let Some(Err(e)) = connected.borrow_mut().take() {
        return Err(e.into());
    }
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: no listing from {address} within {} s",
            timeout.as_secs_f64()
        )));
    }
    let result = listing.borrow_mut().take();
    result
        .expect("run_until returns true only once the listing arrived")
        .map_err(Failure::from)
}

/// One session per line, `NAME method1 method2 …`. Control characters are
/// escaped so that a name cannot forge extra lines or drive the terminal;
/// programs should read `--json`.
fn listing_text(sessions: &[SessionInfo]) -> String {
    let mut text = String::new();
    for s in sessions {
        push_printable(&mut text, &s.name);
        for m in &s.methods {
            text.push(' ');
            push_printable(&mut text, m);
        }
        text.push('\n');
    }
    text
}

fn push_printable(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// One session in `--json`'s array.
#[derive(Serialize)]
struct JsonSession<'a> {
    name: &'a str,
    methods: &'a [String],
}

fn listing_json(sessions: &[SessionInfo]) -> String {
    let list: Vec<JsonSession<'_>> = sessions
        .iter()
        .map(|s| JsonSession {
            name: &s.name,
            methods: &s.methods,
        })
        .collect();
    let mut text = serde_json::to_string(&list).expect("names always serialize to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_prints_as_text_and_escaped_json() {
        let sessions = vec![
            SessionInfo {
                name: "Foo".into(),
                methods: vec!["a".into(), "b".into()],
            },
            SessionInfo {
                name: "q\"\\\n".into(),
                methods: vec![],
            },
        ];
        assert_eq!(listing_text(&sessions), "Foo a b\nq\"\\\\n\n");
        assert_eq!(
            listing_json(&sessions),
            "[{\"name\":\"Foo\",\"methods\":[\"a\",\"b\"]},{\"name\":\"q\\\"\\\\\\n\",\"methods\":[]}]\n"
        );
        assert_eq!(listing_json(&[]), "[]\n");
    }
}
