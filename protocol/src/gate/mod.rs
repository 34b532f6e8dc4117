//! The durability gate: the order in which an object's events reach its state machine, when
//! what they queued may leave, and when the object's one alarm moves. Pure: the adapter (the
//! Room Durable Object today; session and shard objects next) only carries out the [`Step`]s it
//! is given and reports what happened.
//!
//! Why it exists. A frame that writes must not be acknowledged or fanned out before the write is
//! durable. Waiting for that once per event (`storage.sync()`), rather than letting the runtime's
//! output gate hold every send on its own, is much cheaper (bench/README.md); and frames that
//! arrive during the wait are not run one by one, each with its own commit, but queued and run
//! together after it, in one transaction (group commit). That makes the order of events a
//! decision, and this module is where it is made:
//!
//! - **Arrival order.** A frame that arrives while a write is in flight is queued; every event
//!   runs the queued frames before itself, and the waiting events run them after their wait. So
//!   the state machine sees frames, and every other event, in the order they arrived.
//! - **Nothing leaves before it is durable.** An event that wrote waits ([`Step::Sync`]) before
//!   it carries out what the machine queued ([`Step::Flush`]); frames run after a wait wait again.
//!   An event that wrote nothing while another waits leaves the flush to the waiting one. A flush
//!   right after an event's own wait carries out everything queued, which may include sends of
//!   newer writes (events that ran during the wait, each waiting in turn): the runtime's output
//!   gate holds those until their writes are durable (a platform guarantee), so nothing reaches a
//!   client early, and every wait that ends is followed by a flush, so no pattern of overlapping
//!   writes can starve the room's sends.
//! - **A join gets nothing queued before it.** [`Gate::begin_join`] runs the frames queued before
//!   the join, waits once for what is written, flushes (to the members present then), and runs
//!   the join; frames that arrived during its wait run after it.
//! - **The alarm moves exactly when the earliest deadline does.** Every event ends by comparing
//!   the machine's next deadline with the alarm last set ([`Step::Deadline`]).
//! - **Nothing is lost when a write fails.** A failed wait is reported like a finished one (the
//!   runtime then resets the object; the gate does not drop or re-run anything on its own).
//!
//! How an adapter drives one event:
//!
//! ```text
//! let mut task = gate.begin();                 // or begin_join(), or handle_frame(f)
//! loop {
//!     match gate.poll_step(&mut task) {
//!         Step::Run(frames) => { run frames, then the event's own work (first time only);
//!                                gate.handle_ran(&mut task, wrote) }
//!         Step::Sync => { await durability; gate.handle_durable(&mut task) }
//!         Step::Flush => carry out the machine's queued actions,
//!         Step::Deadline => if let Some(change) = gate.handle_deadline(&mut task, machine.poll_timeout())
//!                               { await setting or deleting the alarm }
//!         Step::Done => break,
//!     }
//! }
//! ```
//!
//! Every step up to the first `Sync` or alarm change is synchronous, so an event that writes
//! nothing and moves no alarm (a broadcast, a refusal) finishes without an await.

use alloc::collections::VecDeque;

#[cfg(test)]
mod tests;

/// The gate of one object. `F` is a frame as the adapter receives it.
#[derive(Debug)]
pub struct Gate<F> {
    /// Frames that arrived while a write was in flight, in arrival order.
    queued: VecDeque<F>,
    /// Runs that wrote to storage so far (a generation: each such run is one more).
    written: u64,
    /// The generation known durable: every write up to it is.
    durable: u64,
    /// How many waits for durability are in flight.
    in_flight: u32,
    /// The alarm the adapter last set (`None`: no alarm).
    alarm_at: Option<u64>,
}

/// What the adapter does next for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<F> {
    /// Run these frames on the machine, in order, and then, if `event`, the event's own work
    /// (a frame task's own frame is the last of `frames`). Then report with
    /// [`Gate::handle_ran`] whether storage was written.
    Run { frames: VecDeque<F>, event: bool },
    /// Wait until every write so far is durable, then call [`Gate::handle_durable`].
    Sync,
    /// Carry out what the machine has queued (send its frames, close its sockets) now: every
    /// write before it is durable.
    Flush,
    /// Read the machine's next deadline and pass it to [`Gate::handle_deadline`].
    Deadline,
    /// This event is finished.
    Done,
}

/// A change of the object's alarm: `Some(t)` sets it for `t`, `None` deletes it.
pub type AlarmChange = Option<u64>;

/// One event's way through the gate; see the module docs.
#[derive(Debug)]
pub struct Task<F> {
    phase: Phase,
    /// A frame task's own frame, run after the frames queued before it.
    own: Option<F>,
    /// The generation this task's wait covers, while it waits.
    covers: u64,
    /// This task's own wait ended since its last flush: what it queued is durable.
    waited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A joining member, before its own work: run what is queued, make it durable, carry it out.
    JoinPrepare,
    /// `Run` (without the event) was given to a joining member; waiting for `handle_ran`.
    JoinRunning,
    /// A joining member waits for durability before its flush.
    JoinSyncing,
    /// A joining member's wait ended: flush, then run the join itself.
    JoinFlush,
    /// Run the join itself (the frames that arrived while it waited stay queued: after it).
    JoinEvent,
    /// Run the queued frames and the event.
    Run,
    /// `Run` was given; waiting for [`Gate::handle_ran`].
    Running,
    /// Wait for durability, then flush.
    Sync,
    /// `Sync` was given; waiting for [`Gate::handle_durable`].
    Syncing,
    /// Carry out what the machine queued, once it is durable.
    Flush,
    /// After a flush: run what was queued meanwhile, or finish.
    AfterFlush,
    /// `Deadline` was given; waiting for [`Gate::handle_deadline`].
    Deadlining,
    Done,
}

impl<F> Default for Gate<F> {
    fn default() -> Self {
        Gate { queued: VecDeque::new(), written: 0, durable: 0, in_flight: 0, alarm_at: None }
    }
}

impl<F> Gate<F> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many waits for durability are in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// How many frames wait to be run.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Whether every write so far is known durable.
    pub fn is_durable(&self) -> bool {
        self.durable == self.written
    }

    /// The alarm the adapter last set, as far as the gate knows.
    pub fn alarm_at(&self) -> Option<u64> {
        self.alarm_at
    }

    /// An event other than a frame or a join (an HTTP call, a close, an alarm): runs after the
    /// frames that arrived before it.
    pub fn begin(&mut self) -> Task<F> {
        Task { phase: Phase::Run, own: None, covers: 0, waited: false }
    }

    /// A member joins. What the machine queued before is carried out first, once durable, to
    /// the members present when it was queued (a fanout's recipients are resolved when it is
    /// sent); then the join runs like [`Gate::begin`]'s event.
    pub fn begin_join(&mut self) -> Task<F> {
        Task { phase: Phase::JoinPrepare, own: None, covers: 0, waited: false }
    }

    /// A frame arrives. While a write is in flight it is queued behind it (`None`: a waiting
    /// event runs it after its wait, with the others that arrive meanwhile, in one transaction);
    /// otherwise it becomes a task of its own, to run at once.
    pub fn handle_frame(&mut self, frame: F) -> Option<Task<F>> {
        if self.in_flight > 0 {
            self.queued.push_back(frame);
            return None;
        }
        Some(Task { phase: Phase::Run, own: Some(frame), covers: 0, waited: false })
    }

    /// The alarm fired: the deadline it was set for has passed, so the next one is set afresh.
    pub fn handle_alarm(&mut self) {
        self.alarm_at = None;
    }

    /// What to do next for `task`. A step that waits for an answer (`Run`, `Sync`, `Deadline`)
    /// comes back unchanged until it is answered.
    pub fn poll_step(&mut self, task: &mut Task<F>) -> Step<F> {
        loop {
            match task.phase {
                Phase::JoinPrepare => {
                    if !self.queued.is_empty() {
                        task.phase = Phase::JoinRunning;
                        return Step::Run { frames: core::mem::take(&mut self.queued), event: false };
                    }
                    if !self.is_durable() {
                        self.start_wait(task);
                        task.phase = Phase::JoinSyncing;
                        return Step::Sync;
                    }
                    task.phase = Phase::JoinFlush;
                }
                Phase::JoinFlush => {
                    // Nothing can arrive between this flush and the join's run: both happen
                    // before the adapter's next await. (Writes newer than this join's wait, by
                    // events that ran during it, are held by the runtime's output gate.)
                    task.phase = Phase::JoinEvent;
                    task.waited = false;
                    return Step::Flush;
                }
                Phase::JoinEvent => {
                    task.phase = Phase::Running;
                    return Step::Run { frames: VecDeque::new(), event: true };
                }
                Phase::JoinRunning | Phase::Running => return Step::Run { frames: VecDeque::new(), event: false },
                Phase::JoinSyncing | Phase::Syncing => return Step::Sync,
                Phase::Run => {
                    task.phase = Phase::Running;
                    // Frames queued earlier run first; a frame task's own frame after them.
                    let mut frames = core::mem::take(&mut self.queued);
                    let event = match task.own.take() {
                        Some(own) => {
                            frames.push_back(own);
                            false
                        }
                        None => true,
                    };
                    return Step::Run { frames, event };
                }
                Phase::Sync => {
                    self.start_wait(task);
                    task.phase = Phase::Syncing;
                    return Step::Sync;
                }
                Phase::Flush => {
                    // After its own wait a task flushes whatever is queued: its own writes are
                    // durable, and the sends of writes newer than its wait (by events that ran
                    // meanwhile, each waiting in turn) are held by the runtime's output gate until
                    // those are. So every wait that ends is followed by a flush: nothing can
                    // starve, however the waits overlap.
                    if self.is_durable() || task.waited {
                        task.phase = Phase::AfterFlush;
                        task.waited = false;
                        return Step::Flush;
                    }
                    if self.in_flight > 0 {
                        // Another event is waiting; it flushes after its wait, this event's
                        // actions included.
                        task.phase = Phase::AfterFlush;
                        continue;
                    }
                    task.phase = Phase::Sync;
                }
                Phase::AfterFlush => {
                    if self.queued.is_empty() {
                        task.phase = Phase::Deadlining;
                        return Step::Deadline;
                    }
                    // Frames that arrived during the wait: all of them now, in one transaction.
                    task.phase = Phase::Running;
                    return Step::Run { frames: core::mem::take(&mut self.queued), event: false };
                }
                Phase::Deadlining => return Step::Deadline,
                Phase::Done => return Step::Done,
            }
        }
    }

    fn start_wait(&mut self, task: &mut Task<F>) {
        task.covers = self.written;
        self.in_flight += 1;
    }

    /// The last [`Step::Run`] ran; `wrote` says whether it wrote to storage.
    pub fn handle_ran(&mut self, task: &mut Task<F>, wrote: bool) {
        if wrote {
            self.written += 1;
        }
        task.phase = match task.phase {
            Phase::JoinRunning => Phase::JoinPrepare,
            Phase::Running if wrote => Phase::Sync,
            Phase::Running => Phase::Flush,
            other => other,
        };
    }

    /// The wait of the last [`Step::Sync`] ended. A failed wait is reported the same way: the
    /// runtime resets an object whose write failed, and nothing is dropped here because of it.
    pub fn handle_durable(&mut self, task: &mut Task<F>) {
        let next = match task.phase {
            Phase::JoinSyncing => Phase::JoinFlush,
            Phase::Syncing => Phase::Flush,
            _ => return,
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        self.durable = self.durable.max(task.covers);
        task.waited = true;
        task.phase = next;
    }

    /// The machine's next deadline after this event. Returns the alarm change to carry out, if
    /// the deadline is earlier than the alarm last set, or there is none any more; the task is
    /// done either way.
    ///
    /// A deadline that moved later leaves the alarm where it is: it fires early, the machine finds
    /// nothing due, and the alarm's own event sets the next one. Each move is a storage write (a
    /// commit and an fsync), and a room that feeds sessions moved its deadline later with nearly
    /// every event (each feed call's timeout, then the next probe): that was several writes per
    /// message (docs/SESSIONS.md, *Measured*). At most one early wake per burst replaces them.
    pub fn handle_deadline(&mut self, task: &mut Task<F>, next: Option<u64>) -> Option<AlarmChange> {
        if task.phase != Phase::Deadlining {
            return None;
        }
        task.phase = Phase::Done;
        let keep = match (next, self.alarm_at) {
            (Some(next), Some(at)) => at <= next,
            (next, at) => next == at,
        };
        if keep {
            return None;
        }
        // Nothing due any more (e.g. a webhook batch came back and nothing else waits): the
        // alarm is deleted, so the object need not wake again.
        self.alarm_at = next;
        Some(next)
    }
}
