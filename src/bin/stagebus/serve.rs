//! `stagebus serve`: publish the demo stage on a broker until SIGINT or
//! SIGTERM, or until the broker goes away.

use crate::command_line::{address, ClientFlags, DEFAULT_TIMEOUT_SECS};
use crate::connect::connect;
use crate::{say, stop_signals, Failure};
use stagebus::{Address, Error};
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
    #[command(flatten)]
    pub(crate) client: ClientFlags,
}

pub(crate) fn cmd_serve(args: &ServeArgs) -> Result<(), Failure> {
    let address = &args.broker;
    let name = &args.name;
    let signals = stop_signals::block()?;
    let (lp, client) = connect(
        address,
        args.client.config()?,
        Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
    )?;
    let stage = stagebus::demo::stage(&lp, say);
    let published = Rc::new(RefCell::new(None));
    let p = published.clone();
    stage.publish(&client, name, &stagebus::demo::METHODS, move |r| {
        *p.borrow_mut() = Some(r)
    });
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
    stop_signals::stop_loop_on(&lp, signals)?;
    say(&format!(
        "serving {name} on {address}: {}",
        stagebus::demo::METHODS.join(" ")
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
