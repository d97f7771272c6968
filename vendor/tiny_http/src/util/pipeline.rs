//! kci-lite patch: the requests of one connection that were handed out and
//! not yet answered. Answers go out in request order, so "every earlier
//! request is answered" tells whether an answer can be written at once; the
//! count bounds how many requests one connection may have in flight, and
//! keeps a request with an unsafe method from running beside any other
//! (RFC 9112 §9.3.2: only pipelined requests with safe methods may be
//! processed in parallel); the moment the last one was answered starts the
//! connection's idle time.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The in-flight requests of one connection.
pub(crate) struct Pipeline {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// Requests handed out so far; the next one gets `handed + 1`.
    handed: u64,
    /// Requests answered (and dropped) so far. Answers are written in
    /// order, so these are requests `1..=done`.
    done: u64,
    /// Requests in flight whose method is not safe (at most one, alone).
    unsafe_in_flight: u64,
    /// When `done` last caught up with `handed`.
    idle_since: Instant,
}

/// The place of one request in its connection's order; dropping it (with
/// its request) counts the request as answered.
pub(crate) struct Turn {
    pipeline: Arc<Pipeline>,
    seq: u64,
    safe: bool,
}

impl Pipeline {
    pub(crate) fn new() -> Arc<Pipeline> {
        Arc::new(Pipeline {
            state: Mutex::new(State {
                handed: 0,
                done: 0,
                unsafe_in_flight: 0,
                idle_since: Instant::now(),
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters and an instant: always consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn of the next request handed out; `safe` when its method is
    /// (GET, HEAD, OPTIONS, TRACE). Call [`Pipeline::wait_to_run`] first.
    pub(crate) fn hand_out(self: &Arc<Self>, safe: bool) -> Turn {
        let mut state = self.lock();
        state.handed += 1;
        if !safe {
            state.unsafe_in_flight += 1;
        }
        Turn {
            pipeline: Arc::clone(self),
            seq: state.handed,
            safe,
        }
    }

    fn wait_while(&self, busy: impl Fn(&State) -> bool) {
        let mut state = self.lock();
        while busy(&state) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits while `max` or more requests are in flight.
    pub(crate) fn wait_for_room(&self, max: u64) {
        self.wait_while(|state| state.handed - state.done >= max);
    }

    /// Waits until a request may run beside those in flight: a safe one
    /// beside safe ones only, an unsafe one alone.
    pub(crate) fn wait_to_run(&self, safe: bool) {
        if safe {
            self.wait_while(|state| state.unsafe_in_flight > 0);
        } else {
            self.wait_while(|state| state.handed > state.done);
        }
    }

    /// How long no request has been in flight; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let state = self.lock();
        (state.done == state.handed).then(|| state.idle_since.elapsed())
    }
}

impl Turn {
    /// True when every earlier request of the connection is answered, so
    /// an answer to this one is written without waiting.
    pub(crate) fn is_next(&self) -> bool {
        self.pipeline.lock().done + 1 >= self.seq
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.pipeline.lock();
        state.done = state.done.max(self.seq);
        if !self.safe {
            state.unsafe_in_flight -= 1;
        }
        if state.done == state.handed {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.pipeline.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Pipeline;

    #[test]
    fn turns_follow_the_order_of_the_requests() {
        let pipeline = Pipeline::new();
        assert!(pipeline.idle_for().is_some());
        let first = pipeline.hand_out(true);
        let second = pipeline.hand_out(true);
        assert!(first.is_next());
        assert!(!second.is_next());
        assert!(pipeline.idle_for().is_none());
        drop(first);
        assert!(second.is_next());
        assert!(pipeline.idle_for().is_none());
        drop(second);
        assert!(pipeline.idle_for().is_some());
    }

    #[test]
    fn room_is_made_by_answers() {
        let pipeline = Pipeline::new();
        let first = pipeline.hand_out(true);
        let waiter = {
            let pipeline = std::sync::Arc::clone(&pipeline);
            std::thread::spawn(move || pipeline.wait_for_room(1))
        };
        drop(first);
        waiter.join().expect("waiter");
        pipeline.wait_for_room(1);
    }

    #[test]
    fn an_unsafe_request_runs_alone() {
        let pipeline = Pipeline::new();
        let read = pipeline.hand_out(true);
        pipeline.wait_to_run(true);
        let (ran, run) = std::sync::mpsc::channel();
        let waiter = {
            let pipeline = std::sync::Arc::clone(&pipeline);
            std::thread::spawn(move || {
                pipeline.wait_to_run(false);
                let write = pipeline.hand_out(false);
                ran.send(()).expect("send");
                drop(write);
            })
        };
        assert!(run.recv_timeout(std::time::Duration::from_millis(100)).is_err());
        drop(read);
        run.recv().expect("the unsafe request ran once the safe one was answered");
        waiter.join().expect("waiter");
        pipeline.wait_to_run(true);
    }
}
