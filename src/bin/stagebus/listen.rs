//! `stagebus listen`: print every signal matching a session and a signal
//! pattern, one JSON line each, until SIGINT or SIGTERM, or until the
//! broker goes away (with `--reconnect`: it reconnects to the address it
//! was given and adds the match again). Once the broker confirmed the
//! match, a line saying so goes to stderr (stdout holds only the JSON
//! lines), as do the reconnects.

use crate::command_line::{address, ClientFlags, DEFAULT_TIMEOUT_SECS};
use crate::connect::connect;
use crate::{stop_signals, Failure};
use stagebus::{Address, ConnectionEvent, Error, ReconnectPolicy, Signal, Value};
use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

/// `stagebus listen`'s flags and words.
#[derive(clap::Args, Debug)]
pub(crate) struct ListenArgs {
    /// the broker to listen on
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    #[command(flatten)]
    pub(crate) reconnect: ReconnectFlag,
    /// the session pattern: a name, PREFIX* or * (default *)
    #[arg(value_name = "SESSION", default_value = "*")]
    pub(crate) session: String,
    /// the signal pattern: a name, PREFIX* or * (default *)
    #[arg(value_name = "SIGNAL", default_value = "*")]
    pub(crate) signal: String,
}

/// `--reconnect`, of `listen` and `watch`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReconnectFlag {
    /// when the broker goes away, reconnect to it (forever) and register
    /// again, instead of exiting 1
    #[arg(long)]
    pub(crate) reconnect: bool,
}

/// One signal as a JSON line: `{"session":S,"signal":N,"args":{…}}`.
fn signal_line(s: &Signal) -> String {
    format!(
        "{{\"session\":{},\"signal\":{},\"args\":{}}}",
        Value::from(s.session.as_str()).to_json(),
        Value::from(s.signal.as_str()).to_json(),
        s.args.to_json()
    )
}

/// Runs until a stop signal, the broker's loss (an error) or a failed
/// write to stdout (an error), printing with `line`. `start` registers
/// what is listened to on the client and reports its confirmation.
pub(crate) fn run_printing(
    address: &Address,
    flags: &ClientFlags,
    reconnect: &ReconnectFlag,
    what: &str,
    start: impl FnOnce(
        &stagebus::Client,
        Rc<RefCell<Option<Failure>>>,
        Box<dyn FnOnce(Result<(), Error>)>,
    ) -> Result<(), Error>,
) -> Result<(), Failure> {
    let signals = stop_signals::block()?;
    let timeout = Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS);
    let mut config = flags.config()?;
    if reconnect.reconnect {
        config.reconnect = Some(ReconnectPolicy::default());
    }
    let (lp, client) = connect(address, config, timeout)?;
    let failure: Rc<RefCell<Option<Failure>>> = Rc::default();
    let confirmed: Rc<RefCell<Option<Result<(), Error>>>> = Rc::default();
    let c = confirmed.clone();
    start(
        &client,
        failure.clone(),
        Box::new(move |r| *c.borrow_mut() = Some(r)),
    )?;
    let stopper = lp.clone();
    let f = failure.clone();
    client.on_disconnect(move |e| {
        *f.borrow_mut() = Some(Failure::Failed(format!("lost the broker: {e}")));
        stopper.stop();
    });
    let (f, stopper, what_text) = (failure.clone(), lp.clone(), what.to_string());
    client.on_connection_event(move |event| match event {
        ConnectionEvent::Disconnected(e) => {
            eprintln!("stagebus: lost the broker ({e}); reconnecting")
        }
        ConnectionEvent::Reconnected(info) => eprintln!(
            "stagebus: reconnected to {} as connection {}; {what_text} renewed",
            info.address, info.connection_id
        ),
        ConnectionEvent::RestoreFailed { what, error } => {
            *f.borrow_mut() = Some(Failure::Failed(format!(
                "cannot renew the {what} after reconnecting: {error}"
            )));
            stopper.stop();
        }
        other => eprintln!("stagebus: {other:?}"),
    });
    lp.run_until(timeout, || {
        confirmed.borrow().is_some() || failure.borrow().is_some()
    })
    .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if let Some(f) = failure.borrow_mut().take() {
        return Err(f);
    }
    let outcome = confirmed.borrow_mut().take();
    outcome.ok_or_else(|| {
        Failure::Failed(format!("timeout: the broker did not confirm the {what}"))
    })??;
    // On stderr: stdout holds only the JSON lines.
    eprintln!("stagebus: {what} in place on {address}");
    stop_signals::stop_loop_on(&lp, signals)?;
    let outcome = lp.run();
    client.close();
    lp.shutdown();
    outcome.map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let failed = failure.borrow_mut().take();
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// Prints `line` to stdout at once; a failed write is recorded and stops
/// `lp`.
pub(crate) fn print_line(line: &str, failure: &RefCell<Option<Failure>>, lp: &stagebus::EventLoop) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        *failure.borrow_mut() = Some(Failure::Failed(format!("cannot write to stdout: {e}")));
        lp.stop();
    }
}

pub(crate) fn cmd_listen(args: &ListenArgs) -> Result<(), Failure> {
    run_printing(
        &args.broker,
        &args.client,
        &args.reconnect,
        "match",
        |client, failure, done| {
            let lp = client.event_loop().clone();
            client
                .add_match(
                    &args.session,
                    &args.signal,
                    move |s| print_line(&signal_line(s), &failure, &lp),
                    done,
                )
                .map(|_| ())
        },
    )
}
