//! `stagebus call`: call a method of a session, print each response as a
//! JSON line, and optionally answer the first emit with a recall.

use crate::command_line::Parsed;
use crate::connect::connect;
use crate::Failure;
use stagebus::{Args, CallEvent, Client, EventLoop, Value};
use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

/// `key=value` words as args; values parse as null, bools, numbers or
/// else strings.
fn parse_args(parsed: &Parsed, words: &[String]) -> Result<Args, Failure> {
    let mut args = Args::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| parsed.usage(format!("'{word}' is not key=value")))?;
        args.insert(key, Value::parse_word(value));
    }
    Ok(args)
}

/// One response as a JSON line.
fn response_line(kind: &str, args: &Args) -> String {
    format!(
        "{{\"type\":{},\"args\":{}}}",
        Value::from(kind).to_json(),
        args.to_json()
    )
}

pub(crate) fn cmd_call(args: &Parsed) -> Result<(), Failure> {
    let address = args.address(args.required("broker")?)?;
    let timeout = args.timeout()?;
    let (session, method, rest) = match args.positionals.as_slice() {
        [session, method, rest @ ..] => (session, method, rest),
        _ => return Err(args.usage("SESSION and METHOD are required".into())),
    };
    let call_args = parse_args(args, rest)?;
    let recall = match args.get("recall") {
        None => None,
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            let (m, rest) = words
                .split_first()
                .ok_or_else(|| args.usage("--recall needs a method".into()))?;
            Some((m.clone(), parse_args(args, rest)?))
        }
    };
    let wait = args.wait()?;
    let (lp, client) = connect(&address, args.client_config()?, timeout)?;
    if let Some(wait) = wait {
        wait_for(&lp, &client, session, wait, timeout)?;
    }
    let outcome: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::default();
    let o = outcome.clone();
    let caller = client.clone();
    let mut recall = recall;
    // The publisher learns how long the call is waited for.
    let call = client.call_within(
        None,
        Some(timeout),
        session,
        method,
        &call_args,
        move |id, event| {
            let line = match &event {
                CallEvent::Emit { kind, args } | CallEvent::Return { kind, args } => {
                    response_line(kind, args)
                }
                CallEvent::Error(e) => {
                    *o.borrow_mut() = Some(Err(Failure::Failed(e.to_string())));
                    return;
                }
            };
            let mut out = io::stdout().lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                *o.borrow_mut() =
                    Some(Err(Failure::Failed(format!("cannot write to stdout: {e}"))));
            } else if matches!(event, CallEvent::Return { .. }) {
                *o.borrow_mut() = Some(Ok(()));
            } else if let Some((method, args)) = recall.take() {
                if let Err(e) = caller.recall(id, &method, &args) {
                    *o.borrow_mut() = Some(Err(e.into()));
                }
            }
        },
    )?;
    let finished = lp
        .run_until(timeout, || outcome.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if !finished {
        // Tell the publisher to stop working on it, and let that leave.
        client.cancel(call);
        let _ = lp.run_until(Duration::from_millis(100), || false);
    }
    client.close();
    lp.shutdown();
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: {session}.{method} did not return within {} s (cancelled)",
            timeout.as_secs_f64()
        )));
    }
    let result = outcome.borrow_mut().take();
    result.expect("checked above")
}

/// Waits up to `wait` for `session` to be published (subscribing to it),
/// so that a caller may start before its service. The broker times the
/// wait and answers once; `timeout` more bounds a broker that does not
/// answer.
fn wait_for(
    lp: &EventLoop,
    client: &Client,
    session: &str,
    wait: Duration,
    timeout: Duration,
) -> Result<(), Failure> {
    let answer: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::default();
    let a = answer.clone();
    client.subscribe_waiting(session, wait, move |result| {
        *a.borrow_mut() = Some(
            result
                .map(|_| ())
                .map_err(|e| Failure::Failed(e.to_string())),
        );
    });
    let finished = lp
        .run_until(wait + timeout, || answer.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: the broker did not answer the wait for '{session}'"
        )));
    }
    let result = answer.borrow_mut().take();
    result.expect("checked above")
}
