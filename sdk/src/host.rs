//! The browser, as `js/host.js` offers it: one import per operation, all keyed by the connection's
//! id. Strings go out as pointer and length into this instance's memory; the host decodes them
//! before it returns.
//!
//! Nothing here calls back into the instance: the host queues the events it is given and
//! dispatches them to the app's handlers after the export that produced them has returned, so
//! handlers may call `publish` or `close` freely.

use roomcast_protocol::client::{State, Status};

mod imports {
    #[link(wasm_import_module = "host")]
    extern "C" {
        pub fn now() -> f64;
        /// Opens the connection's socket (resuming when `since >= 0`); 0 if the browser refused
        /// (an invalid URL throws synchronously).
        pub fn ws_open(conn: u32, epoch: *const u8, epoch_len: usize, since: f64) -> u32;
        pub fn ws_send(conn: u32, text: *const u8, len: usize);
        /// Sends a `refresh` frame with the token the host fetched last.
        pub fn ws_refresh(conn: u32);
        /// Closes the socket with a code and reason and detaches its handlers.
        pub fn ws_close(conn: u32, code: u32, reason: *const u8, len: usize);
        /// Replaces the connection's one timer.
        pub fn timer_set(conn: u32, delay_ms: f64);
        pub fn timer_clear(conn: u32);
        /// `online` on the window and `visibilitychange` on the document.
        pub fn wake_listen(conn: u32);
        pub fn wake_unlisten(conn: u32);
        pub fn fetch_token(conn: u32);
        pub fn emit_status(conn: u32, state: u32, attempt: u32, delay_ms: f64, code: u32, reason: *const u8, len: usize);
        pub fn emit_gap(conn: u32, reason: *const u8, len: usize, since: f64);
        pub fn emit_out_of_order(conn: u32, expected: f64, received: f64);
        /// An ack (`code_len == 0`, `seq < 0` when none) or a rejection with its code.
        pub fn emit_settled(conn: u32, id: *const u8, id_len: usize, seq: f64, code: *const u8, code_len: usize);
        /// Hands a string back as the result of the export that is running.
        pub fn give(text: *const u8, len: usize);
    }
}

// SAFETY (every `unsafe` below): the imports take plain numbers, or a pointer and length of a
// live `&str`, which the host only reads before returning.

pub fn now() -> u64 {
    unsafe { imports::now() as u64 }
}

pub fn fetch_token(conn: u32) {
    unsafe { imports::fetch_token(conn) }
}

pub fn send_refresh(conn: u32) {
    unsafe { imports::ws_refresh(conn) }
}

pub fn give(text: &str) {
    unsafe { imports::give(text.as_ptr(), text.len()) }
}

pub fn emit_status(conn: u32, s: &Status) {
    let state = match s.state {
        State::Connecting => 0,
        State::Open => 1,
        State::Reconnecting => 2,
        State::Closed => 3,
    };
    let r = &s.reason;
    unsafe { imports::emit_status(conn, state, s.attempt, s.delay_ms as f64, s.code.into(), r.as_ptr(), r.len()) }
}

pub fn emit_gap(conn: u32, reason: &str, since: u64) {
    unsafe { imports::emit_gap(conn, reason.as_ptr(), reason.len(), since as f64) }
}

pub fn emit_out_of_order(conn: u32, expected: u64, received: u64) {
    unsafe { imports::emit_out_of_order(conn, expected as f64, received as f64) }
}

/// `code` empty: acknowledged (with the seq a publish got); otherwise rejected with that code.
pub fn emit_settled(conn: u32, id: &str, seq: Option<u64>, code: &str) {
    let seq = seq.map_or(-1.0, |s| s as f64);
    unsafe { imports::emit_settled(conn, id.as_ptr(), id.len(), seq, code.as_ptr(), code.len()) }
}

/// The connection's WebSocket. Dropping it closes it (1000) and detaches its handlers.
pub struct Socket(u32);

impl Socket {
    /// `None` if the browser refused to create it.
    pub fn open(conn: u32, resume: Option<(&str, u64)>) -> Option<Socket> {
        let (epoch, since) = resume.map_or(("", -1.0), |(e, s)| (e, s as f64));
        let ok = unsafe { imports::ws_open(conn, epoch.as_ptr(), epoch.len(), since) };
        (ok != 0).then_some(Socket(conn))
    }

    pub fn send(&self, text: &str) {
        unsafe { imports::ws_send(self.0, text.as_ptr(), text.len()) }
    }

    pub fn close(self, code: u16, reason: &str) {
        unsafe { imports::ws_close(self.0, code.into(), reason.as_ptr(), reason.len()) }
        core::mem::forget(self);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        unsafe { imports::ws_close(self.0, 1000, "".as_ptr(), 0) }
    }
}

/// The connection's timer, due at `at` (ms since the epoch). Dropping it cancels it.
pub struct Timer {
    conn: u32,
    pub at: u64,
}

impl Timer {
    pub fn start(conn: u32, at: u64) -> Timer {
        unsafe { imports::timer_set(conn, at.saturating_sub(now()) as f64) }
        Timer { conn, at }
    }

    /// The timer fired: nothing is left to cancel.
    pub fn fired(self) {
        core::mem::forget(self);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        unsafe { imports::timer_clear(self.conn) }
    }
}

/// The `online` and `visibilitychange` listeners. Dropping them removes them.
pub struct WakeListeners(u32);

impl WakeListeners {
    pub fn add(conn: u32) -> WakeListeners {
        unsafe { imports::wake_listen(conn) }
        WakeListeners(conn)
    }
}

impl Drop for WakeListeners {
    fn drop(&mut self) {
        unsafe { imports::wake_unlisten(self.0) }
    }
}
