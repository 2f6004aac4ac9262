//! What other threads may do with a loop: wake it, or post a closure to
//! it ([`LoopRemote`]), and the thread check that tells the loop's own
//! thread from the others.

use super::wakeup::Wakeup;
use super::EventLoop;
use crate::error::{Error, ErrorCode};
use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A closure posted from another thread.
pub(super) type RemoteTask = Box<dyn FnOnce(&EventLoop) + Send>;

/// The closures posted from other threads, shared with every
/// [`LoopRemote`].
#[derive(Default)]
pub(super) struct RemoteQueue {
    pub(super) tasks: Vec<RemoteTask>,
    /// The loop was shut down or dropped: nothing will run a task again,
    /// so a post is refused rather than kept.
    pub(super) closed: bool,
}

/// A number naming the calling thread, distinct for every thread the
/// process ever ran (unlike a thread-local's address, which a later
/// thread may reuse): comparing two is the whole thread check.
pub(super) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// The thread-safe handle of a loop: wake it or post closures to it.
#[derive(Clone)]
pub struct LoopRemote {
    waker: Arc<Wakeup>,
    remote: Arc<Mutex<RemoteQueue>>,
}

impl fmt::Debug for LoopRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopRemote").finish_non_exhaustive()
    }
}

impl LoopRemote {
    pub(super) fn new(waker: Arc<Wakeup>, remote: Arc<Mutex<RemoteQueue>>) -> LoopRemote {
        LoopRemote { waker, remote }
    }

    /// Makes the loop's fd readable so that a blocked `run` returns from
    /// its poll, or an embedding host calls `dispatch`.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    /// Runs `task` on the loop thread during its next turn.
    ///
    /// Once the loop was shut down ([`EventLoop::shutdown`]) or dropped,
    /// nothing would ever run `task`: the post fails with
    /// `invalid_state` and `task` is dropped at once, on the calling
    /// thread, so that nothing posted to a gone loop is kept. A task
    /// accepted before the shutdown is dropped by the shutdown, on the
    /// loop's thread. `io` if the wake-up fails (the task then still
    /// runs on the loop's next turn).
    pub fn post(&self, task: impl FnOnce(&EventLoop) + Send + 'static) -> Result<(), Error> {
        {
            let mut queue = self
                .remote
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !queue.closed {
                queue.tasks.push(Box::new(task));
                drop(queue);
                return self
                    .waker
                    .wake()
                    .map_err(|e| Error::io("cannot wake the loop", &e));
            }
        }
        // Outside the lock: dropping the task runs the caller's code.
        drop(task);
        Err(Error::new(
            ErrorCode::InvalidState,
            "cannot post to the loop: it was freed (shut down), so the function would never run",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remote_post_runs_on_the_loop_and_stops_run() {
        let lp = EventLoop::new().unwrap();
        let remote = lp.remote();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.post(|lp| lp.stop()).unwrap();
        });
        lp.run().unwrap();
        t.join().unwrap();
    }

    /// Counts its drops: a posted task's captured state.
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_post_to_a_freed_loop_fails_and_keeps_nothing() {
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let lp = EventLoop::new().unwrap();
        let remote = lp.remote();
        let before = Counted(drops.clone());
        remote.post(move |_| drop(before)).unwrap();
        lp.shutdown();
        // Accepted before the shutdown: dropped by it, unrun.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        for i in 0..1000 {
            let c = Counted(drops.clone());
            let e = remote
                .post(move |_| {
                    drop(c);
                    panic!("a task posted to a freed loop ran");
                })
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidState);
            assert!(e.message.contains("freed"), "{e}");
            // Dropped at once, on this thread: nothing is kept.
            assert_eq!(drops.load(Ordering::SeqCst), i + 2);
        }
        assert_eq!(remote.remote.lock().unwrap().tasks.len(), 0);

        // A loop dropped without a shutdown refuses posts the same way.
        let lp = EventLoop::new().unwrap();
        let remote = lp.remote();
        let c = Counted(drops.clone());
        remote.post(move |_| drop(c)).unwrap();
        drop(lp);
        assert_eq!(drops.load(Ordering::SeqCst), 1002);
        let c = Counted(drops.clone());
        let e = remote.post(move |_| drop(c)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState);
        assert_eq!(drops.load(Ordering::SeqCst), 1003);
    }

    #[test]
    fn only_the_creating_thread_is_the_loops_own() {
        let lp = EventLoop::new().unwrap();
        assert!(lp.is_own_thread());
        // A shared reference to the loop cannot cross threads (it is not
        // Sync), so the check is read through the raw address, as the C
        // API reads it.
        let addr = &lp as *const EventLoop as usize;
        let other = std::thread::spawn(move || {
            // SAFETY: the loop outlives the join below, and is_own_thread
            // reads only a field that never changes.
            unsafe { &*(addr as *const EventLoop) }.is_own_thread()
        })
        .join()
        .unwrap();
        assert!(!other);
        assert!(!lp.is_shut_down());
        lp.shutdown();
        assert!(lp.is_shut_down());
    }
}
