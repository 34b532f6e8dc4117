//! The browser, as `js/host.js` offers it: one import per operation. Strings go out as pointer and
//! length into this instance's memory; the host decodes them before it returns.
//!
//! Every browser resource a connection asks for (its WebSocket, its timer, its wake listeners) gets
//! its own id from the host, and the Rust value holding that id ([`Socket`], [`Timer`],
//! [`WakeListeners`]) releases exactly that resource when dropped: replacing a timer with a new one
//! cancels the old one only, whatever the order.
//!
//! Nothing here calls back into the instance: the host queues the events it is given and
//! dispatches them to the app's handlers after the export that produced them has returned, so
//! handlers may call `publish` or `close` freely. No import throws either: the host catches what
//! the browser (or an injected WebSocket or clock) throws and reports it as an `error` event.

use roomcast_protocol::client::{abi, CallId, Status};
use roomcast_protocol::close::CloseCode;

mod imports {
    #[link(wasm_import_module = "host")]
    extern "C" {
        /// The connection's clock (ms since the epoch).
        pub fn now(conn: u32) -> f64;
        /// Opens a socket for the connection (resuming when `since >= 0`): its id, or 0 if the
        /// browser refused to create it (the constructor threw).
        pub fn ws_open(conn: u32, epoch: *const u8, epoch_len: usize, since: f64) -> u32;
        pub fn ws_send(socket: u32, text: *const u8, len: usize);
        /// A room of a session socket joins: `text` is its `join` frame, which the host sends on
        /// the session's socket (now, or once that socket is open); the join's id, like a socket's.
        pub fn ws_join(conn: u32, text: *const u8, len: usize) -> u32;
        /// Detaches the socket's handlers and closes it with a code and reason.
        pub fn ws_close(socket: u32, code: u32, reason: *const u8, len: usize);
        /// Starts a timer for the connection: its id.
        pub fn timer_set(conn: u32, delay_ms: f64) -> u32;
        /// `online` on the window and `visibilitychange` on the document: the listeners' id.
        pub fn wake_listen(conn: u32) -> u32;
        /// Releases resource `id`: cancels a timer, removes listeners, or closes a socket (1000).
        /// An id already released (a timer that fired, a socket that closed) is a no-op.
        pub fn release(id: u32);
        pub fn fetch_token(conn: u32);
        pub fn emit_status(conn: u32, state: u32, attempt: u32, delay_ms: f64, code: u32, reason: *const u8, len: usize);
        pub fn emit_gap(conn: u32, reason: *const u8, len: usize, since: f64);
        pub fn emit_out_of_order(conn: u32, expected: f64, received: f64);
        /// Call `id` was acknowledged (`code_len == 0`, `seq < 0` when none) or rejected with a code
        /// (`id` 0: a refusal naming an id that is not one of the connection's calls).
        pub fn emit_settled(conn: u32, id: f64, seq: f64, code: *const u8, code_len: usize);
        /// Hands a string back as the result of the export that is running.
        pub fn give(text: *const u8, len: usize);
    }
}

// Every `unsafe` below calls an import, which takes plain numbers, or a pointer and length of a
// live `&str` that the host only reads before returning.

pub fn now(conn: u32) -> u64 {
    // SAFETY: an import taking and returning plain numbers.
    unsafe { imports::now(conn) as u64 }
}

pub fn fetch_token(conn: u32) {
    // SAFETY: an import taking and returning plain numbers.
    unsafe { imports::fetch_token(conn) }
}

pub fn give(text: &str) {
    // SAFETY: an import; the string is live and only read before it returns.
    unsafe { imports::give(text.as_ptr(), text.len()) }
}

pub fn emit_status(conn: u32, s: &Status) {
    let r = &s.reason;
    // SAFETY: an import; the string is live and only read before it returns.
    unsafe { imports::emit_status(conn, abi::state_code(s.state), s.attempt, s.delay_ms as f64, s.code.into(), r.as_ptr(), r.len()) }
}

pub fn emit_gap(conn: u32, reason: &str, since: u64) {
    // SAFETY: an import; the string is live and only read before it returns.
    unsafe { imports::emit_gap(conn, reason.as_ptr(), reason.len(), since as f64) }
}

pub fn emit_out_of_order(conn: u32, expected: u64, received: u64) {
    // SAFETY: an import taking and returning plain numbers.
    unsafe { imports::emit_out_of_order(conn, expected as f64, received as f64) }
}

/// `code` empty: acknowledged (with the seq a publish got); otherwise rejected with that code.
pub fn emit_settled(conn: u32, id: CallId, seq: Option<u64>, code: &str) {
    let seq = seq.map_or(-1.0, |s| s as f64);
    // SAFETY: an import; the string is live and only read before it returns.
    unsafe { imports::emit_settled(conn, id as f64, seq, code.as_ptr(), code.len()) }
}

/// One WebSocket. Dropping it closes it (1000) and detaches its handlers.
#[must_use = "dropping a Socket closes it"]
pub struct Socket(u32);

impl Socket {
    /// `None` if the browser refused to create it.
    pub fn open(conn: u32, resume: Option<(&str, u64)>) -> Option<Socket> {
        let (epoch, since) = resume.map_or(("", -1.0), |(e, s)| (e, s as f64));
        // SAFETY: an import; the string is live and only read before it returns.
        let id = unsafe { imports::ws_open(conn, epoch.as_ptr(), epoch.len(), since) };
        (id != 0).then_some(Socket(id))
    }

    /// A room's join on its session's socket (see `ws_join`).
    pub fn join(conn: u32, frame: &str) -> Socket {
        // SAFETY: an import; the string is live and only read before it returns.
        Socket(unsafe { imports::ws_join(conn, frame.as_ptr(), frame.len()) })
    }

    pub fn id(&self) -> u32 {
        self.0
    }

    pub fn send(&self, text: &str) {
        // SAFETY: an import; the string is live and only read before it returns.
        unsafe { imports::ws_send(self.0, text.as_ptr(), text.len()) }
    }

    pub fn close(self, code: CloseCode) {
        // SAFETY: an import; the string is live and only read before it returns.
        unsafe { imports::ws_close(self.0, code.code.into(), code.reason.as_ptr(), code.reason.len()) }
        core::mem::forget(self);
    }

    /// The socket closed by itself: the host already let it go.
    pub fn closed(self) {
        core::mem::forget(self);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: an import taking and returning plain numbers.
        unsafe { imports::release(self.0) }
    }
}

/// One timer, due at `at` (ms since the epoch). Dropping it cancels it.
#[must_use = "dropping a Timer cancels it"]
pub struct Timer {
    id: u32,
    pub at: u64,
}

impl Timer {
    pub fn start(conn: u32, at: u64) -> Timer {
        // SAFETY: an import taking and returning plain numbers.
        let id = unsafe { imports::timer_set(conn, at.saturating_sub(now(conn)) as f64) };
        Timer { id, at }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The timer fired: nothing is left to cancel.
    pub fn fired(self) {
        core::mem::forget(self);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: an import taking and returning plain numbers.
        unsafe { imports::release(self.id) }
    }
}

/// The `online` and `visibilitychange` listeners. Dropping them removes them.
#[must_use = "dropping WakeListeners removes them"]
pub struct WakeListeners(u32);

impl WakeListeners {
    pub fn add(conn: u32) -> WakeListeners {
        // SAFETY: an import taking and returning plain numbers.
        WakeListeners(unsafe { imports::wake_listen(conn) })
    }
}

impl Drop for WakeListeners {
    fn drop(&mut self) {
        // SAFETY: an import taking and returning plain numbers.
        unsafe { imports::release(self.0) }
    }
}
