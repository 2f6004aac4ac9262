//! `stagebus serve`: publish the demo stage on a broker until SIGINT or
//! SIGTERM. When the broker goes away it reconnects to the address it was
//! given and publishes again (unless `--no-reconnect`: then it exits);
//! it exits when its name could not be published again.

use crate::command_line::{address, positive_seconds, ClientFlags, DEFAULT_TIMEOUT_SECS};
use crate::connect::connect;
use crate::{say, stop_signals, Failure};
use stagebus::{Address, ConnectionEvent, Error, NameMode, ReconnectPolicy};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// `stagebus serve`'s flags.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// the broker to publish on
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) broker: Address,
    /// the session name to publish as
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// how the name takes other publishers: exclusive (default), queue (stand by), balance (share the calls)
    #[arg(long, value_name = "MODE", value_parser = mode, default_value = "exclusive")]
    pub(crate) mode: NameMode,
    #[command(flatten)]
    pub(crate) client: ClientFlags,
    /// exit when the broker goes away instead of reconnecting
    #[arg(long, conflicts_with = "reconnect_max_delay")]
    pub(crate) no_reconnect: bool,
    /// the longest wait between reconnect attempts (default 5)
    #[arg(long, value_name = "SECS", value_parser = positive_seconds("--reconnect-max-delay"))]
    pub(crate) reconnect_max_delay: Option<Duration>,
}

impl ServeArgs {
    /// The reconnect policy: on unless `--no-reconnect`, its longest
    /// delay from `--reconnect-max-delay`.
    fn reconnect(&self) -> Option<ReconnectPolicy> {
        if self.no_reconnect {
            return None;
        }
        let mut policy = ReconnectPolicy::default();
        if let Some(max) = self.reconnect_max_delay {
            policy.max_delay = max;
            policy.initial_delay = policy.initial_delay.min(max);
        }
        Some(policy)
    }
}

/// A name mode by its name.
fn mode(text: &str) -> Result<NameMode, String> {
    NameMode::parse(text)
        .ok_or_else(|| format!("'{text}' is no name mode (exclusive, queue or balance)"))
}

pub(crate) fn cmd_serve(args: &ServeArgs) -> Result<(), Failure> {
    let address = &args.broker;
    let name = &args.name;
    let mut config = args.client.config()?;
    config.reconnect = args.reconnect();
    let signals = stop_signals::block()?;
    let (lp, client) = connect(
        address,
        config,
        Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
    )?;
    let stage = stagebus::demo::served_stage(&lp, &client, name, say);
    let published = Rc::new(RefCell::new(None));
    let p = published.clone();
    stage.publish_as(
        &client,
        name,
        &stagebus::demo::SERVED_METHODS,
        args.mode,
        move |r| *p.borrow_mut() = Some(r),
    );
    lp.run_until(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS), || {
        published.borrow().is_some()
    })
    .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    let outcome = published.borrow_mut().take();
    outcome.ok_or_else(|| {
        Failure::Failed("timeout: the broker did not answer the publish".into())
    })??;
    let lost: Rc<RefCell<Option<Error>>> = Rc::default();
    let disconnect_stopper = lp.clone();
    let l = lost.clone();
    client.on_disconnect(move |e| {
        *l.borrow_mut() = Some(e.clone());
        disconnect_stopper.stop();
    });
    let event_stopper = lp.clone();
    let l = lost.clone();
    client.on_connection_event(move |event| match event {
        ConnectionEvent::Disconnected(e) => say(&format!("lost the broker ({e}); reconnecting")),
        ConnectionEvent::Reconnected(info) => say(&format!(
            "reconnected to {} as connection {}",
            info.address, info.connection_id
        )),
        ConnectionEvent::RepublishFailed { session, error } => {
            *l.borrow_mut() = Some(Error::new(
                error.code,
                format!("cannot publish {session} again: {}", error.message),
            ));
            event_stopper.stop();
        }
        other => say(&format!("{other:?}")),
    });
    stop_signals::stop_loop_on(&lp, signals)?;
    say(&format!(
        "serving {name} on {address}: {}",
        stagebus::demo::SERVED_METHODS.join(" ")
    ));
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
