//! `stagebus call`: call a method of a session, print each response as a
//! JSON line, and optionally answer the first emit with a recall.
//!
//! Args come as `key=value` words, as one JSON object (`--json-args`), or
//! both; JSON carries what words cannot: lists, maps and bytes
//! (`{"$bytes":"<hex>"}`, the form responses print bytes in).

use crate::command_line::{
    address, positive_seconds, timeout_or_default, usage_error, ClientFlags,
};
use crate::connect::connect;
use crate::Failure;
use stagebus::{Address, Args, CallEvent, Client, EventLoop, Value};
use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

/// `stagebus call`'s flags and words.
#[derive(clap::Args, Debug)]
pub(crate) struct CallArgs {
    /// the broker to call through
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    /// cancel the call after this many seconds (default 10)
    #[arg(long, value_name = "SECS", value_parser = positive_seconds("--timeout"))]
    pub(crate) timeout: Option<Duration>,
    /// first wait up to this many seconds for SESSION to be published
    #[arg(long, value_name = "SECS", value_parser = positive_seconds("--wait"))]
    pub(crate) wait: Option<Duration>,
    /// answer the first emit by recalling method M with those args
    #[arg(long, value_name = "'M k=v…'")]
    pub(crate) recall: Option<String>,
    /// send a one-way call: the publisher runs it and nothing comes back
    #[arg(long, conflicts_with_all = ["recall", "wait"])]
    pub(crate) oneway: bool,
    /// args as one JSON object, e.g. '{"xs":[1,2],"m":{"k":"v"},"b":{"$bytes":"ff00"}}' (bytes as hex); key=value words add to it
    #[arg(long, value_name = "JSON")]
    pub(crate) json_args: Option<String>,
    /// the session to call
    #[arg(value_name = "SESSION")]
    pub(crate) session: String,
    /// the method to call
    #[arg(value_name = "METHOD")]
    pub(crate) method: String,
    /// args as words; a value reads as null, true, false, a number, or else a string
    #[arg(value_name = "key=value")]
    pub(crate) words: Vec<String>,
}

/// `key=value` words added to `args`; values parse as null, bools,
/// numbers or else strings. A name given twice is refused.
fn add_words(mut args: Args, words: &[String]) -> Result<Args, Failure> {
    for word in words {
        let (key, value) = word
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| usage_error("call", format!("'{word}' is not key=value")))?;
        if args.insert(key, Value::parse_word(value)).is_some() {
            return Err(usage_error(
                "call",
                format!("the arg '{key}' is given twice"),
            ));
        }
    }
    Ok(args)
}

/// The call's args: `--json-args`, then the words.
fn call_args(json: Option<&str>, words: &[String]) -> Result<Args, Failure> {
    let args = match json {
        None => Args::new(),
        Some(text) => Args::from_json(text)
            .map_err(|e| usage_error("call", format!("--json-args: {}", e.message)))?,
    };
    add_words(args, words)
}

/// One response as a JSON line: `{"type":KIND,"args":{…}}`.
fn response_line(kind: &str, args: &Args) -> String {
    format!(
        "{{\"type\":{},\"args\":{}}}",
        Value::from(kind).to_json(),
        args.to_json()
    )
}

pub(crate) fn cmd_call(args: &CallArgs) -> Result<(), Failure> {
    let address = &args.broker;
    let timeout = timeout_or_default(args.timeout);
    let (session, method) = (&args.session, &args.method);
    let call_args = call_args(args.json_args.as_deref(), &args.words)?;
    let recall = match &args.recall {
        None => None,
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            let (m, rest) = words
                .split_first()
                .ok_or_else(|| usage_error("call", "--recall needs a method"))?;
            Some((m.clone(), add_words(Args::new(), rest)?))
        }
    };
    let (lp, client) = connect(address, args.client.config()?, timeout)?;
    if args.oneway {
        return post(&lp, &client, session, method, &call_args, timeout);
    }
    if let Some(wait) = args.wait {
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

/// Sends a one-way call and waits until it left (the client closed
/// gracefully, its output written); prints nothing, since nothing comes
/// back.
fn post(
    lp: &EventLoop,
    client: &Client,
    session: &str,
    method: &str,
    args: &Args,
    timeout: Duration,
) -> Result<(), Failure> {
    client.post_within(None, Some(timeout), session, method, args)?;
    let sent: Rc<RefCell<Option<Result<(), stagebus::Error>>>> = Rc::default();
    let s = sent.clone();
    client.close_gracefully(move |r| *s.borrow_mut() = Some(r));
    let finished = lp
        .run_until(timeout, || sent.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    lp.shutdown();
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: the one-way call did not leave within {} s",
            timeout.as_secs_f64()
        )));
    }
    let result = sent.borrow_mut().take();
    Ok(result.expect("checked above")?)
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
