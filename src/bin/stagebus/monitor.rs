//! `stagebus monitor`: print every frame a broker receives, one line
//! each, until SIGINT or SIGTERM, or until the broker goes away (like
//! `busctl monitor`). The first line (`monitoring ADDR`, or a JSON
//! object of kind `monitoring`) says the broker took the monitor on.

use crate::command_line::{address, ClientFlags, DEFAULT_TIMEOUT_SECS};
use crate::connect::connect;
use crate::{say, stop_signals, Failure};
use stagebus::{Address, Error, TapEvent};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// `stagebus monitor`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct MonitorArgs {
    /// the broker to watch
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    /// only the frames of this session
    #[arg(long, value_name = "NAME")]
    pub(crate) session: Option<String>,
    /// one JSON object per line (time_ms, from, to, kind, session, name, id, size, error, args)
    #[arg(long)]
    pub(crate) json: bool,
    /// show each frame's args
    #[arg(long)]
    pub(crate) payload: bool,
}

pub(crate) fn cmd_monitor(args: &MonitorArgs) -> Result<(), Failure> {
    let signals = stop_signals::block()?;
    let timeout = Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS);
    let (lp, client) = connect(&args.broker, args.client.config()?, timeout)?;
    let answer: Rc<RefCell<Option<Result<(), Error>>>> = Rc::default();
    let a = answer.clone();
    let json = args.json;
    client.monitor(
        args.session.as_deref(),
        args.payload,
        move |event| say(&tap_line(event, json)),
        move |r| *a.borrow_mut() = Some(r),
    );
    lp.run_until(timeout, || answer.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let outcome = answer.borrow_mut().take();
    outcome.ok_or_else(|| Failure::Failed("timeout: the broker did not answer".into()))??;
    let lost: Rc<RefCell<Option<Error>>> = Rc::default();
    let stopper = lp.clone();
    let l = lost.clone();
    client.on_disconnect(move |e| {
        *l.borrow_mut() = Some(e.clone());
        stopper.stop();
    });
    stop_signals::stop_loop_on(&lp, signals)?;
    // The first line says the broker took the monitor on: what follows
    // is every frame from here.
    let session = args.session.as_deref();
    say(&if json {
        let mut start = stagebus::Args::new()
            .with("kind", "monitoring")
            .with("broker", args.broker.to_string());
        if let Some(s) = session {
            start.insert("session", s);
        }
        start.to_json()
    } else {
        match session {
            Some(s) => format!("monitoring {} (session {})", args.broker, s.escape_debug()),
            None => format!("monitoring {}", args.broker),
        }
    });
    let outcome = lp.run();
    client.close();
    lp.shutdown();
    outcome.map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let lost = lost.borrow_mut().take();
    match lost {
        Some(e) => Err(Failure::Failed(format!("lost the broker: {e}"))),
        None => Ok(()),
    }
}

/// One event as a line: JSON, or `TIME FROM -> TO KIND SESSION NAME
/// id=ID size=N [error] [args]` with control characters escaped.
fn tap_line(e: &TapEvent, json: bool) -> String {
    if json {
        return e.to_value().to_json();
    }
    let millis = e.time_ms % 86_400_000;
    let mut line = format!(
        "{:02}:{:02}:{:02}.{:03} {} -> {} {}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
        e.from,
        if e.to == 0 {
            "broker".to_string()
        } else {
            e.to.to_string()
        },
        e.kind
    );
    for part in [&e.session, &e.name] {
        if !part.is_empty() {
            line.push(' ');
            line.push_str(&part.escape_debug().to_string());
        }
    }
    line.push_str(&format!(" id={} size={}", e.id, e.size));
    if let Some(err) = &e.error {
        line.push_str(&format!(" {}: {}", err.code, err.message.escape_debug()));
    }
    match e.args() {
        Some(Ok(args)) => line.push_str(&format!(" {}", args.to_json())),
        Some(Err(err)) => line.push_str(&format!(" (args do not decode: {})", err.message)),
        None => {}
    }
    line
}
