//! Brokers federated over a NATS cluster (design: `FEDERATION.md`,
//! issue 19). Clients do not change: they speak the stagebus protocol to
//! their local broker, and a call to a session published on another
//! broker is the same code as a call to a local one.
//!
//! Hidden from the API docs: the layers below are public for the tests,
//! and free to change. The public entry is
//! [`FederationConfig`](crate::FederationConfig) in
//! [`BrokerConfig::federation`](crate::BrokerConfig::federation) (and
//! `stagebus broker --federate URLS --broker-id ID [--namespace NS]
//! [--hb-interval D --hb-timeout D]`, the config file's `[federation]`
//! table, `sb_broker_options_set_federation` and
//! `_set_federation_heartbeat` from C, C++ and Perl).
//!
//! # Layers
//!
//! * [`nats`]: a NATS client for the broker's own loop, with no thread
//!   and no async runtime. [`nats::proto`]: parser (tested split at every
//!   byte and with random input) and encoder. [`nats::conn`]: `CONNECT`
//!   with user and password, a token or a user's NKey ([`nats::nkey`]:
//!   the server's nonce signed; a `.creds` file's JWT passed on), TLS
//!   after the server's `INFO` (`tls://` servers, TLS settings given,
//!   or a server that requires it; rustls, the server's certificate
//!   checked against the host of its URL), `SUB`/`UNSUB`/`PUB`/`HPUB`,
//!   request inboxes with no-responders statuses, `PING`/`PONG`
//!   keepalive, `max_payload` from `INFO`, reconnect across the server
//!   list and the servers the cluster announces, with back-off; every
//!   connection is an *epoch* its owner sees begin and end, and nothing
//!   is buffered across a disconnect. [`nats::js`]: the JetStream KV
//!   requests the directory needs (bucket stream, create-if-absent and
//!   compare-and-set puts, direct get, delete and purge markers, an
//!   ordered push consumer with flow control and gap detection).
//! * [`link`]: per pair of brokers, messages with incarnations, link
//!   generations and sequence numbers; a gap, a sync that does not match,
//!   a new incarnation or a reset from the peer resets the link; a reset
//!   lost on the way is sent again on the next stray.
//! * `node`: the broker's membership. Each peer broker is a *stand-in
//!   connection* in the broker's core, which publishes the peer's
//!   sessions and makes its clients' calls; what the core writes to it
//!   goes over the link. A link reset ends every call across the link
//!   exactly once (`publisher_gone` to callers, a cancel to publishers)
//!   and keeps the peer's sessions: local subscribers hear nothing. The
//!   peer's death closes the stand-in connection: its sessions leave
//!   (`SessionGone`, `publisher_gone`). Liveness: heartbeats every
//!   `hb_interval` (a peer silent for `hb_timeout` is declared dead, its
//!   incarnation remembered; a broker whose own loop stalled declares
//!   nobody dead for it), syncs on links with calls in flight, NATS
//!   no-responders (503) on link messages, and a sync to every peer
//!   after each NATS reconnect. The start-up sweep: a broker known only
//!   from directory entries (killed while no broker was there to declare
//!   it dead) is probed with a sync each `hb_interval`; two
//!   no-responders answers at least `hb_interval` apart with no
//!   heartbeat between declare it dead at once, so its entries go
//!   without waiting `hb_timeout` (stat `peers_swept`). A live broker
//!   that is itself reconnecting to NATS for longer than that when this
//!   one starts is swept too: its entries go, and, never heard from, it
//!   is not told; it claims its names again from the deletions its
//!   watch sees, as a broker wrongly declared dead does. Optionally
//!   (`sys_events`, off by default; the NATS account must import the
//!   system account's `$SYS.ACCOUNT.*.DISCONNECT`), a peer whose NATS
//!   connection the servers report closed is probed the same way until
//!   its next heartbeat: a killed broker is declared dead in about one
//!   `hb_interval`. A broker heard from after it was
//!   declared dead is told so (`DeclaredDead`): it takes a new
//!   incarnation, ends its calls across every link once, and claims its
//!   names again as their deletions reach its watch. Limits
//!   (`node/limits.rs`): a frame over the server's `max_payload`, calls
//!   past `max-pending-per-link`, or data past `max-nats-queued-bytes`
//!   fail their own call with `limit_exceeded`; the link stays up.
//! * `directory`: names in a JetStream KV bucket. A client's publish of
//!   an `exclusive` name is held until its create-if-absent claim is
//!   answered (one winner cluster-wide; the others get
//!   `already_exists`); a rescind or disconnect deletes the claim; every
//!   broker watches the bucket and publishes other brokers' sessions in
//!   its core through their stand-in connections, so listings,
//!   subscriptions, `SessionGone` and `no_such_method` work as for local
//!   sessions. A dead broker's entries are deleted by whoever declares it
//!   dead; a broker deletes its own entries of an earlier incarnation.
//!   The bucket has `kv_replicas` copies, at most one per server the
//!   cluster announces; after a NATS reconnect the whole bucket is read
//!   again.
//! * `queue` and `balance` names (`directory/shared.rs`, where the
//!   semantics are defined): one entry per name listing its mode and
//!   publishers cluster-wide in join order, changed by compare-and-set;
//!   each core mirrors the list in that order (other brokers by their
//!   stand-ins), so a queue's owner is the same everywhere and the next
//!   in line takes over everywhere; a balanced name's calls are spread
//!   over the brokers, and a call from a peer goes to the receiving
//!   broker's own publishers only. The first publisher fixes the mode
//!   cluster-wide (`name_mode_conflict` otherwise).
//! * Who calls (`node/identity.rs`, with the trust model): a call from
//!   another broker's client reaches the publisher stamped with that
//!   caller's identity as its broker made it (client name marked
//!   `(via broker <id>)`), and the publisher's broker judges it by its
//!   policy as that caller's; a one-way post crosses as `PostFrom` and is
//!   judged the same way (its publisher gets a plain post, as locally).
//!   A federated broker is trusted to stamp its own clients.
//! * Signals (`node/signals.rs`): each broker announces the distinct
//!   matches of its own clients to every peer (a diff on each change; all
//!   again, after a clearing marker, whenever the link reset or the peer
//!   restarted), held there on its stand-in connection. A signal then
//!   crosses to a broker only when one of its clients listens, once per
//!   broker however many listen, and fans out there to local listeners
//!   only (never on to a third broker); one emitter's signals keep their
//!   order across the link.
//!
//! The broker's core knows none of this beyond a few queries and
//! operations on stand-in connections (`broker/links.rs`); the shell's glue is `broker/federate.rs`.
//!
//! # What does not exist yet
//!
//! * `queue` and `balance` names: a publisher's methods on other
//!   brokers are its broker's first member's (a broker's stand-in
//!   publishes the name once); a `balance` broker counts as one
//!   publisher in another broker's choice, however many of its clients
//!   publish the name. A member a peer removed (it thought this broker
//!   dead) is not added again while its client still publishes: it
//!   serves this broker's callers only until it publishes again. A
//!   broker's close removes its members best effort; what is left goes
//!   when the broker is declared dead. nats-server before 2.9.21 (Debian
//!   ships 2.9.10) may accept two concurrent writes of one key expecting
//!   the same revision in a clustered stream: each broker then compares
//!   its own members with the list it reads and leaves or joins again,
//!   so the list converges, but a join lost to a concurrent delete of the
//!   whole name is not made again, and for a moment the list may show a
//!   member that has gone (its calls get `no_such_session`).
//! * Brokers of this version and earlier ones do not mix: calls cross
//!   as `DeliverFrom` and posts as `PostFrom`, which an earlier broker
//!   refuses from a stand-in.
//! * A match added on one broker takes effect on the others when its
//!   announcement arrives (one NATS hop): a signal emitted elsewhere in
//!   between is not seen.
//! * A broker wrongly declared dead claims its names again through the
//!   deletions its watch sees; a name taken meanwhile stays local to it,
//!   with a warning in the log (no notice to its publisher, no stat).
//!   Its new incarnation is not itself announced in the directory before
//!   the deletions arrive, so its listings elsewhere converge within
//!   about `hb_timeout` plus a few KV round trips (measured in
//!   `tests/federation_faults.rs`).
//! * A link reset fails every call across the link (phase 1 of the
//!   design); the `Sync` refinement that would keep calls whose frames
//!   all arrived is not written.
//! * Bytes queued toward NATS: results may still go past
//!   `max-nats-queued-bytes` (they end calls), up to the NATS
//!   connection's own 64 MiB; past that a link resets.
//! * Lame-duck mode is followed by moving to another server at once;
//!   the links then check themselves with syncs.
//! * Without `sys_events`, the start-up sweep only judges brokers never
//!   heard from; a broker heard once and then killed is declared dead by
//!   `hb_timeout` (or sooner by a 503 on a busy link). `sys_events` is
//!   tested against kill -9 of a broker and a broker moving off a
//!   lame-duck server (reported disconnected while it moves: the
//!   two-probe rule keeps it alive); a broker whose server dropped its
//!   connection (stopped past the server's ping timeout) is declared dead
//!   then, even if `hb_timeout` is longer.
//! * A broker policy applies to the stand-in connections as to any
//!   client without identity for publishing (`own`): a policy that
//!   limits who may own names also refuses remote sessions. (Calls are
//!   judged as their remote caller's, listening and watching at the
//!   listener's own broker.)

pub mod config;
pub(crate) mod directory;
pub mod link;
pub mod nats;
pub(crate) mod node;
