//! Publishing a stage: a publication's deliveries become requests the
//! stage serves, answered up through the remote link. The export rule is
//! checked here, at the publisher, whatever the broker checked before.

use super::call::Reply;
use crate::client::{Client, Delivery, Inbound, NameMode, Publication};
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
use crate::request::callee::Served;
use crate::request::dispatch::{next_id, run_method};
use crate::request::link::Up;
use crate::request::names::{method_name, strip_on};
use crate::request::stage::{HandlerKind, Stage, Withdraw};
use std::cell::RefCell;
use std::rc::Rc;

impl Stage {
    /// Publishes this stage on a broker as `session`, exporting `methods`,
    /// or when it is empty the stage's request methods
    /// ([`Stage::method_names`]: handlers of kind
    /// [`HandlerKind::Method`], never `on_cancel`, `on_my_<type>` or a
    /// handler marked [`HandlerKind::Internal`]). Calls from other
    /// programs then run its handlers exactly as local requests do.
    ///
    /// Other programs reach only what is exported: a request for any other
    /// name is refused with `no_such_method` (by the broker, and again
    /// here); a recall reaches the exported methods and those marked
    /// [`HandlerKind::RecallOnly`] (as marked when the recall arrives),
    /// and any other name ends the request with `no_such_method`.
    ///
    /// The publication does not keep the stage alive: it is served while
    /// the program (or a request it serves) holds it, and when the stage
    /// goes away its sessions are rescinded (a call arriving meanwhile
    /// gets `no_such_session`). So a handler may hold the client, or a
    /// [`RemoteStage`](super::RemoteStage) on it, without keeping the client open forever
    /// (see the crate docs' ownership rules).
    pub fn publish(
        &self,
        client: &Client,
        session: &str,
        methods: &[&str],
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        self.publish_as(client, session, methods, NameMode::Exclusive, done);
    }

    /// [`Stage::publish`] in `mode` (see [`Client::publish_as`]): with
    /// `queue` this stage stands by until the name's owner goes; with
    /// `balance` it serves a share of the calls, each call (its emits,
    /// recalls and cancel) staying with the stage that took it.
    pub fn publish_as(
        &self,
        client: &Client,
        session: &str,
        methods: &[&str],
        mode: NameMode,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let names = if methods.is_empty() {
            self.method_names()
        } else {
            methods.iter().map(|m| m.to_string()).collect()
        };
        // Sorted, for a binary search per call: a stage exports few
        // methods, and a search costs less than hashing the name.
        let mut exported: Vec<String> = names.iter().map(|m| strip_on(m).to_string()).collect();
        exported.sort_unstable();
        exported.dedup();
        let exports = move |method: &str| {
            exported
                .binary_search_by(|m| m.as_str().cmp(strip_on(method)))
                .is_ok()
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // Weakly: the program's handles keep the stage served (see the
        // crate docs' ownership rules).
        let stage = self.downgrade();
        let serving: Rc<Serving> = Rc::default();
        let unexported = |stage: &Stage, method: &str| {
            Error::new(
                ErrorCode::NoSuchMethod,
                format!(
                    "Session of stage '{}' does not export method '{method}'",
                    stage.name()
                ),
            )
        };
        let serve = move |delivery: &Delivery, inbound| match inbound {
            Inbound::Call { method, args } => {
                let Some(stage) = Stage::from_weak(&stage) else {
                    // Between the stage's end and its rescind.
                    let e = Error::new(
                        ErrorCode::NoSuchSession,
                        format!("Session '{}' is no longer served", delivery.session()),
                    );
                    let _ = delivery.fail(e);
                    return;
                };
                if !exports(&method) {
                    // The broker checks this already; a publisher does not
                    // rely on it for what it exposes.
                    let _ = delivery.fail(unexported(&stage, &method));
                    return;
                }
                // Ids seen in this process come from its own counter; the
                // caller's id of the request is kept apart.
                let served = Served::new(
                    next_id(),
                    delivery.origin(),
                    stage,
                    method_name(&method),
                    Up::Remote(Reply::new(delivery.clone())),
                    delivery.deadline(),
                );
                let route = delivery.id();
                serving.0.borrow_mut().insert(route, served.clone());
                run_method(&served, served.method(), &args);
                if served.is_open() {
                    // Answered later (a slow method, or an emit waiting
                    // for a recall): it leaves the table when it ends.
                    let table = Rc::downgrade(&serving);
                    served.set_on_end(move || {
                        if let Some(t) = table.upgrade() {
                            t.0.borrow_mut().remove(&route);
                        }
                    });
                } else {
                    // Answered at once, the usual case: no hook to make.
                    // (Its own entry only: a handler that ran the loop
                    // inside itself may have seen another call begin.)
                    let ended = {
                        let mut table = serving.0.borrow_mut();
                        let own = table.get(&route).is_some_and(|s| s.is(&served));
                        own.then(|| table.remove(&route)).flatten()
                    };
                    drop(ended);
                }
                served.let_go();
            }
            Inbound::Recall { method, args } => {
                let served = serving.0.borrow().get(&delivery.id()).cloned();
                let Some(served) = served else { return };
                let Some(stage) = Stage::from_weak(&stage) else {
                    return;
                };
                let reachable = exports(&method) || stage.kind(&method) == HandlerKind::RecallOnly;
                if reachable {
                    run_method(&served, &method, &args);
                } else {
                    let _ = served.fail(unexported(&stage, &method));
                }
            }
            Inbound::Cancel => {
                let served = serving.0.borrow_mut().remove(&delivery.id());
                if let Some(served) = served {
                    served.cancelled();
                }
            }
        };
        let publication =
            client.publish_serving(session, &names, mode, Rc::new(RefCell::new(serve)), done);
        self.add_publication(Box::new(publication));
    }
}

/// The requests a publication is serving, by the broker's route id (an
/// id the broker assigns, kept in an [`IdMap`] as the client's own table
/// of deliveries keeps it).
///
/// The client drops it with the publication, once no delivery of it is
/// left. A client that closes, or whose last handle is dropped, cancels
/// every delivery on a later turn; if the loop is shut down before that
/// turn, whatever is still served is cancelled here, at once (as a local
/// caller's cancel is): the callee hears of every request it started.
#[derive(Default)]
struct Serving(RefCell<IdMap<u64, Served>>);

impl Drop for Serving {
    fn drop(&mut self) {
        let left: Vec<Served> = self.0.get_mut().drain().map(|(_, s)| s).collect();
        for served in left {
            served.cancelled();
        }
    }
}

/// A stage withdraws its publications when it goes (it knows them only
/// as something to withdraw).
impl Withdraw for Publication {
    fn is_live(&self) -> bool {
        Publication::is_live(self)
    }

    fn withdraw(self: Box<Self>) {
        Publication::withdraw(*self);
    }
}

#[cfg(test)]
mod tests {
    //! Requests through a broker on the test's loop.

    use crate::request::{callee, caller, RemoteStage, Request, Stage};
    use crate::{Broker, BrokerConfig, Client, ClientConfig, EventLoop};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;

    fn wait(lp: &EventLoop, what: &str, mut done: impl FnMut() -> bool) {
        let ok = lp.run_until(Duration::from_secs(10), &mut done).unwrap();
        assert!(ok, "timed out waiting for {what}");
    }

    /// The next request of the sequence, sent from the last one's return
    /// handler, where it replaces (and so drops) the last one's handle.
    fn send_next(remote: &RemoteStage, left: Rc<Cell<u32>>, held: Rc<RefCell<Option<Request>>>) {
        if left.get() == 0 {
            return;
        }
        left.set(left.get() - 1);
        let (r, l, h) = (remote.clone(), left.clone(), held.clone());
        let request = Request::to(remote, "echo")
            .on("return", move |_| {
                send_next(&r, l.clone(), h.clone());
                Ok(())
            })
            .send()
            .unwrap();
        let last = held.borrow_mut().replace(request);
        drop(last);
    }

    #[test]
    fn a_sequence_of_remote_requests_reuses_both_records() {
        let lp = EventLoop::new().unwrap();
        let any = ["tcp://127.0.0.1:0".parse().unwrap()];
        let broker = Broker::new(&lp, BrokerConfig::listening(any)).unwrap();
        let address = broker.local_addresses()[0].clone();
        let publisher = Client::connect(&lp, &address, ClientConfig::default());
        let calling = Client::connect(&lp, &address, ClientConfig::default());
        let stage = Stage::new(&lp, "svc");
        stage.on("echo", |ctx| ctx.ret("return", ctx.args()));
        let published = Rc::new(Cell::new(false));
        let p = published.clone();
        stage.publish(&publisher, "Svc", &[], move |r| p.set(r.is_ok()));
        wait(&lp, "the publish", || published.get());
        let remote = Rc::new(RefCell::new(None));
        let r = remote.clone();
        RemoteStage::subscribe(&calling, "Svc", move |s| *r.borrow_mut() = s.ok());
        wait(&lp, "the subscribe", || remote.borrow().is_some());
        let remote = remote.borrow_mut().take().unwrap();

        caller::kept_records(true);
        callee::kept_records(true);
        let left = Rc::new(Cell::new(20));
        let held: Rc<RefCell<Option<Request>>> = Rc::default();
        send_next(&remote, left.clone(), held.clone());
        wait(&lp, "the sequence", || {
            left.get() == 0 && held.borrow().as_ref().is_some_and(|r| !r.is_open())
        });
        // Each ended record went back to its pool, and the next request
        // took it: one of each is kept, where every request used to
        // allocate both.
        assert_eq!(caller::kept_records(false), 1, "caller's records");
        assert_eq!(callee::kept_records(false), 1, "callee's records");
        held.borrow_mut().take();
        assert_eq!(caller::kept_records(false), 2, "the last one's too");
    }
}
