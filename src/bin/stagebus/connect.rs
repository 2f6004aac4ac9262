//! A client connected to a broker, for the commands that talk to one.

use crate::Failure;
use stagebus::{Address, Client, ClientConfig, EventLoop};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// A loop and a client on it, starting to connect (see
/// [`Client::connect`]): nothing has been waited for.
pub(crate) fn start_client(
    address: &Address,
    config: ClientConfig,
) -> Result<(EventLoop, Client), Failure> {
    let lp =
        EventLoop::new().map_err(|e| Failure::Failed(format!("cannot create the loop: {e}")))?;
    let client = Client::connect(&lp, address, config);
    Ok((lp, client))
}

/// Connects and waits for the handshake, at most `timeout`.
pub(crate) fn connect(
    address: &Address,
    config: ClientConfig,
    timeout: Duration,
) -> Result<(EventLoop, Client), Failure> {
    let (lp, client) = start_client(address, config)?;
    let connected = Rc::new(RefCell::new(None));
    let c = connected.clone();
    client.on_connect(move |r| *c.borrow_mut() = Some(r.map(|_| ())));
    let finished = lp
        .run_until(timeout, || connected.borrow().is_some())
        .map_err(|e| Failure::Failed(format!("the event loop failed: {e}")))?;
    if !finished {
        return Err(Failure::Failed(format!(
            "timeout: no answer from {address} within {} s",
            timeout.as_secs_f64()
        )));
    }
    let outcome = connected.borrow_mut().take();
    outcome.expect("checked above")?;
    Ok((lp, client))
}
