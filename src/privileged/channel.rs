//! The helper's channel back to its caller, which the helper does not
//! trust to keep reading.
//!
//! Frames are queued and written by a thread of their own, so the work
//! never waits on the caller: a caller that stops reading cannot hold a
//! snapshot. If one frame write stays blocked longer than the stall bound
//! ([`STALL`]), or the caller hangs up, the run is cancelled (snapshot
//! removed, nothing kept). Progress frames that pile up are merged, so
//! the queue stays small whatever the caller does.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::history::{Recorder, Run};
use crate::progress::{CancelToken, Level, Phase, Progress};
use crate::protocol::{self, Event, Reply};

/// How long one frame write may block before the run is cancelled.
pub const STALL: Duration = Duration::from_secs(30);
/// Most frames queued for the caller (progress frames merge, so a run has
/// a handful at a time); beyond it the run is cancelled, so no flood of
/// frames — a worker's logs, say — can grow the helper's memory.
pub const MAX_QUEUED: usize = 256;

#[derive(Default)]
struct State {
    frames: VecDeque<Event>,
    writing_since: Option<Instant>,
    broken: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    cancel: CancelToken,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Give up on the caller: nothing more is sent, and the run is
    /// cancelled (its snapshot removed).
    fn break_off(&self, state: &mut State) {
        state.broken = true;
        state.frames.clear();
        self.cancel.cancel();
        self.changed.notify_all();
    }
}

/// Events to the caller; cloning shares the queue.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
    /// Where the final frame goes instead of the caller, for a step of a
    /// request that goes on after it (see [`Events::holding_final`]).
    held: Option<Arc<Mutex<Option<Event>>>>,
}

impl Events {
    /// Start writing to `out`; `stall` is how long a write may block.
    pub fn new(out: Box<dyn Write + Send>, cancel: CancelToken, stall: Duration) -> Events {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            cancel,
        });
        let writer = Arc::clone(&inner);
        std::thread::spawn(move || write_frames(&writer, out));
        let watchdog = Arc::clone(&inner);
        std::thread::spawn(move || watch(&watchdog, stall));
        Events { inner, held: None }
    }

    /// The same channel, except that the final frame (`Done` or `Error`)
    /// is held back for the caller of this step to take with
    /// [`Held::take`], so that one request can go on after it: a restore,
    /// then its protection. Progress, logs and run records go out as ever.
    pub fn holding_final(&self) -> (Events, Held) {
        let slot = Arc::new(Mutex::new(None));
        let events = Events {
            inner: Arc::clone(&self.inner),
            held: Some(Arc::clone(&slot)),
        };
        (events, Held(slot))
    }

    pub fn cancel(&self) -> &CancelToken {
        &self.inner.cancel
    }

    /// Queue a frame; never blocks on the caller.
    pub fn send(&self, event: Event) {
        if let Some(held) = &self.held
            && matches!(event, Event::Done { .. } | Event::Error { .. })
        {
            *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(event);
            return;
        }
        let mut state = self.inner.lock();
        if state.broken {
            return;
        }
        let merge = matches!(
            (state.frames.back(), &event),
            (Some(Event::Progress { phase: a, .. }), Event::Progress { phase: b, .. }) if a == b
        );
        if merge {
            state.frames.pop_back();
        }
        if state.frames.len() >= MAX_QUEUED {
            self.inner.break_off(&mut state);
            return;
        }
        state.frames.push_back(event);
        self.inner.changed.notify_all();
    }

    /// Wait (at most `limit`) until every queued frame is written.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.inner.lock();
        while !state.broken && (!state.frames.is_empty() || state.writing_since.is_some()) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state = self
                .inner
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The final frame of a request that succeeded; exit code 0.
    pub fn done(&self, reply: Reply) -> i32 {
        self.send(Event::Done {
            result: Box::new(reply),
        });
        0
    }

    /// The final frame of a request that failed; its exit code.
    pub fn fail(&self, error: &crate::Error, step: Option<Phase>) -> i32 {
        self.send(Event::Error {
            kind: error.kind(),
            step,
            message: error.to_string(),
        });
        error.kind().exit_code()
    }
}

/// The final frame of a step, held back (see [`Events::holding_final`]).
pub struct Held(Arc<Mutex<Option<Event>>>);

impl Held {
    /// The step's final frame: its reply, or the error as it would have
    /// been sent (kind, step, message); `None` if it sent none.
    pub fn take(&self) -> Option<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn write_frames(inner: &Inner, mut out: Box<dyn Write + Send>) {
    loop {
        let event = {
            let mut state = inner.lock();
            loop {
                if let Some(event) = state.frames.pop_front() {
                    state.writing_since = Some(Instant::now());
                    break event;
                }
                state = inner.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let written = protocol::write_frame(&mut out, &event);
        let mut state = inner.lock();
        state.writing_since = None;
        if written.is_err() {
            inner.break_off(&mut state);
        }
        inner.changed.notify_all();
        if state.broken {
            return;
        }
    }
}

/// Cancel the run when a write has been blocked longer than `stall`.
fn watch(inner: &Inner, stall: Duration) {
    loop {
        std::thread::sleep(Duration::from_millis(200).min(stall));
        let mut state = inner.lock();
        if state.writing_since.is_some_and(|t| t.elapsed() > stall) {
            inner.break_off(&mut state);
        }
        if state.broken {
            return;
        }
    }
}

impl Progress for Events {
    fn phase(&mut self, phase: Phase) {
        self.send(Event::Phase { phase });
    }
    fn bytes(&mut self, phase: Phase, bytes: u64, total: u64) {
        self.send(Event::Progress {
            phase,
            bytes,
            total,
        });
    }
    fn log(&mut self, level: Level, message: &str) {
        self.send(Event::Log {
            level,
            message: message.to_owned(),
        });
    }
}

impl Recorder for Events {
    fn record(&mut self, run: &Run) -> crate::Result<()> {
        self.send(Event::Run {
            run: Box::new(run.clone()),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks for ever after `n` frames, like a caller that
    /// stopped reading a full pipe.
    struct Stuck(usize);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                loop {
                    std::thread::park();
                }
            }
            self.0 -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_caller_that_stops_reading_cancels_the_run_and_never_blocks_it() {
        let cancel = CancelToken::new();
        let mut events = Events::new(
            Box::new(Stuck(3)),
            cancel.clone(),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        for i in 0..100_000u64 {
            events.bytes(Phase::Copy, i, 100_000);
            events.log(Level::Info, "x");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sending never waits on the caller"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cancel.is_cancelled() {
            assert!(
                Instant::now() < deadline,
                "the stalled caller cancels the run"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_flood_of_frames_cancels_the_run_instead_of_growing() {
        let cancel = CancelToken::new();
        let mut events = Events::new(Box::new(Stuck(0)), cancel.clone(), STALL);
        for _ in 0..MAX_QUEUED * 4 {
            events.log(Level::Info, &"x".repeat(60_000));
        }
        assert!(cancel.is_cancelled(), "the flood cancels the run");
        assert!(events.inner.lock().frames.len() <= MAX_QUEUED);
    }

    #[test]
    fn progress_frames_merge_while_the_caller_is_slow() {
        let events = Events::new(Box::new(Stuck(0)), CancelToken::new(), STALL);
        for i in 0..1000 {
            events.send(Event::Progress {
                phase: Phase::Copy,
                bytes: i,
                total: 1000,
            });
        }
        let queued = events.inner.lock().frames.len();
        assert!(queued <= 2, "{queued} frames queued");
    }
}
