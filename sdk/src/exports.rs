//! What `js/host.js` calls. Connections live in a table keyed by ids the host assigns (never
//! reused, so a late callback for a freed connection finds nothing). Strings come in as buffers
//! the host filled after [`alloc`]; the export takes them over and frees them.
//!
//! The table is taken out of its cell only to take a connection out or put one back, never while
//! the connection calls out to the host: an exception thrown through the instance (an import that
//! throws despite the host's guard, or a trap) then costs at most the connection it happened in,
//! never the table, and every other connection keeps working. No export is ever re-entered (the
//! host dispatches events only after an export returned); should one be, it finds its connection
//! out of the table and does nothing.

use crate::conn::{Conn, Relay};
use crate::host;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use roomcast_protocol::client::abi::{self, Event};
use roomcast_protocol::client::backoff::Backoff;
use roomcast_protocol::client::{push_u64, session, CallId, Client, ClientConfig, QueueError, Resumed, Welcome};

// Boxed: taking a connection out and putting it back moves a pointer, not the whole connection
// (which in every export cost more wasm than the box).
#[allow(clippy::vec_box)]
struct Table(Cell<Vec<Box<Conn>>>);
// SAFETY: wasm32-unknown-unknown without the atomics feature runs one thread.
unsafe impl Sync for Table {}

static CONNS: Table = Table(Cell::new(Vec::new()));

/// Runs `f` on the table, taken out of its cell meanwhile (nothing in `f` calls the host).
fn table<R>(f: impl FnOnce(&mut Vec<Box<Conn>>) -> R) -> R {
    let mut conns = CONNS.0.take();
    let result = f(&mut conns);
    // (what the cell held meanwhile is the empty vector `take` left, which owns no memory)
    core::mem::forget(CONNS.0.replace(conns));
    result
}

/// Takes connection `id` out of the table.
fn take_out(id: u32) -> Option<Box<Conn>> {
    table(|conns| conns.iter().position(|c| c.id == id).map(|i| conns.swap_remove(i)))
}

fn put_back(conn: Box<Conn>) {
    table(|conns| conns.push(conn));
}

/// Runs `f` on connection `id` and carries out what it caused, with the connection out of the
/// table meanwhile; `R::default()` if there is no such connection.
fn with<R: Default>(id: u32, f: impl FnOnce(&mut Conn) -> R) -> R {
    let Some(mut conn) = take_out(id) else { return R::default() };
    let result = f(&mut conn);
    conn.pump();
    put_back(conn);
    result
}

/// A buffer of `len` bytes for the host to write a string into (every byte of it: it is not
/// zeroed first).
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(len)).cast()
}

/// Takes over a buffer from [`alloc`].
///
/// SAFETY: `ptr` and `len` must come from one `alloc(len)`, filled with UTF-8 (the host writes
/// `TextEncoder` output, which always is), and not used again.
unsafe fn take(ptr: *mut u8, len: usize) -> String {
    let bytes = Box::from_raw(core::ptr::slice_from_raw_parts_mut(ptr, len));
    String::from_utf8_unchecked(bytes.into_vec())
}

/// A number from JavaScript that may be absent: `None` for NaN (undefined, not a number) or a
/// negative one; `Infinity` is `u64::MAX` (casts saturate).
fn optional(v: f64) -> Option<u64> {
    (v >= 0.0).then_some(v as u64)
}

/// A setting from JavaScript: a non-negative number, or the default.
fn setting(v: f64, default: u64) -> u64 {
    optional(v).unwrap_or(default)
}

/// Creates connection `id` and starts it. Settings the app left out arrive as NaN.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn conn_new(
    id: u32,
    seed: f64,
    fetches_token: u32,
    min_delay: f64,
    max_delay: f64,
    factor: f64,
    jitter: u32,
    min_uptime: f64,
    connect_timeout: f64,
    ping_interval: f64,
    pong_timeout: f64,
    queue_max: f64,
    max_token_failures: f64,
    room: *mut u8,
    room_len: usize,
    rewind: f64,
    echo: u32,
) {
    // SAFETY: `room` comes from `alloc`, filled by the host (see `take`).
    let room = unsafe { take(room, room_len) };
    // A room of a session socket (its name given, as JSON): no pings (the session's socket has
    // them), no token (the session's), acks that move nothing (see ClientConfig::relayed).
    let relay = (!room.is_empty()).then(|| Relay { room, rewind: optional(rewind), echo: echo != 0 });
    let d = ClientConfig::default();
    let config = ClientConfig {
        backoff: Backoff {
            min_ms: setting(min_delay, d.backoff.min_ms),
            max_ms: setting(max_delay, d.backoff.max_ms),
            factor: if factor.is_finite() && factor >= 1.0 { factor } else { d.backoff.factor },
            jitter: jitter != 0,
        },
        min_uptime_ms: setting(min_uptime, d.min_uptime_ms),
        connect_timeout_ms: setting(connect_timeout, d.connect_timeout_ms),
        ping_interval_ms: setting(ping_interval, d.ping_interval_ms),
        pong_timeout_ms: setting(pong_timeout, d.pong_timeout_ms),
        queue_max: setting(queue_max, d.queue_max as u64) as usize,
        max_token_failures: setting(max_token_failures, d.max_token_failures.into()).min(u32::MAX.into()) as u32,
        relayed: relay.is_some(),
        // (the visible-page interval and the check's timeout: the machine's; sdk/README.md)
        ..d
    };
    let config = if relay.is_some() { ClientConfig { ping_interval_ms: u64::MAX / 4, ..config } } else { config };
    let fetches_token = fetches_token != 0 && relay.is_none();
    put_back(Box::new(Conn::start(id, config, setting(seed, 0), fetches_token, relay)));
}

/// A `welcome` frame. `resumed`: 0 no resume asked, 1 recovered, 2 not (with `reason`), as
/// [`abi::RESUMED`] numbers them. `expires` (when the connection's token expires),
/// `ping_interval` (`heartbeat.interval`), `max_frame` (`limits.maxFrameBytes`) and `rewound`
/// (`rewind.replayed`: how many stored messages follow), `broadcast_max` (`limits.broadcastMaxBytes`)
/// and `meta_max` (`limits.presenceMetaMax`): NaN or negative when the frame has none.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn conn_welcome(
    id: u32,
    epoch: *mut u8,
    epoch_len: usize,
    seq: f64,
    resumed: u32,
    reason: *mut u8,
    reason_len: usize,
    expires: f64,
    ping_interval: f64,
    max_frame: f64,
    rewound: f64,
    broadcast_max: f64,
    meta_max: f64,
) {
    let epoch = take(epoch, epoch_len);
    let reason = take(reason, reason_len);
    let resumed = match resumed {
        0 => None,
        1 => Some(Resumed::Recovered),
        _ => Some(Resumed::NotRecovered(reason)),
    };
    let welcome = Welcome {
        epoch: &epoch,
        seq: setting(seq, 0),
        resumed,
        expires: optional(expires),
        ping_interval: optional(ping_interval),
        max_frame_bytes: optional(max_frame),
        rewound: optional(rewound),
        broadcast_max_bytes: optional(broadcast_max),
        presence_meta_max: optional(meta_max),
    };
    with(id, |c| c.client.handle_welcome_frame(welcome, host::now(c.id)));
}

/// Event `event` of connection `id` ([`abi::EVENTS`] numbers them), with UTF-8 texts `a` and `b`
/// and numbers `x`, `y`, `z` (NaN or negative when absent):
///
/// - the calls the room answers: publish (`a` the data), send_to (`a` the target, `{"user":…}` or
///   `{"clientId":…}`, `b` the data; `x` 1: a shared terminal's `input`, which needs the `input`
///   right, instead of a direct message), history (`x` limit, `y` before, `z` since), broadcast (`a`
///   the data, `x` 1 when the room answers it), presence (`a` the meta, a JSON object). Each
///   returns the call's number (which its settlement names; 0 for a broadcast nobody answers) and
///   gives its id as its frames carry it (see `host::give`), or returns why not, negated (a
///   [`abi::QUEUE_FAILURES`] number: the queue is full, closed, offline (calls that are not
///   queued), or the frame is over the room's limit, when it gives `"<size> <limit>"`);
/// - token: the token function's result is ready (`x` 1, `a` the token as a JSON string), or it
///   failed (`x` 0; `x` 2 when its server could not be reached, which does not count). The host keeps the token to connect with; the machine puts it in a `refresh`
///   frame when it asked for one, and keeps nothing;
/// - refreshed: the room took the fresh token, which expires at `x` (ms);
/// - message: a `message` frame with seq `x`; returns 1 to deliver it, 0 not to (a replayed
///   duplicate, or a seq out of order, which the machine reports and resumes from);
/// - settled: an answer to id `a`: an `ack` (seq `x`, negative when none) or a `history` page (no
///   seq), or an `error` frame (`b` its code, non-empty);
/// - pong; closed: socket `x` closed (or failed to open) with code `y` and reason `a` (only the
///   connection's current socket counts; `z` the wait the reason names, `; retryAfterMs=<n>`); timer: timer `x` fired; wake: back online, or the page
///   visible again; close: the app closed the room;
/// - last_seq: returns the last seq delivered;
/// - network: online (`x` 1) or offline (`x` 0); visibility: visible (`x` 1) or hidden (`x` 0);
///   nudge: another connection of the page reconnected after an outage.
/// - expired: a session socket's room left with 4002 (its token expired): refresh the token now.
///
/// A connection that is gone (closed and freed) answers a call with `closed`, anything else with
/// 0.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn conn_event(
    id: u32,
    event: u32,
    a: *mut u8,
    a_len: usize,
    b: *mut u8,
    b_len: usize,
    x: f64,
    y: f64,
    z: f64,
) -> f64 {
    let a = take(a, a_len);
    let b = take(b, b_len);
    let closed = -f64::from(abi::queue_failure_code(QueueError::Closed));
    let Some(event) = abi::event(event) else { return 0.0 };
    with(id, |c| {
        let client = &mut c.client;
        let call = match event {
            Event::Publish => client.publish(&a),
            Event::SendTo if x > 0.0 => client.input(&a, &b),
            Event::SendTo => client.direct(&a, &b),
            Event::History => client.history(optional(x), optional(y), optional(z)),
            Event::Broadcast => client.broadcast(&a, x > 0.0).map(Option::unwrap_or_default),
            Event::Presence => client.set_presence(&a),
            _ => {
                match event {
                    Event::Token if x == 2.0 => client.handle_token_unreachable(host::now(c.id)),
                    Event::Token => client.handle_token((x > 0.0).then_some(&a), host::now(c.id)),
                    Event::Refreshed => client.handle_refreshed(setting(x, 0), host::now(c.id)),
                    Event::Message => return Some(f64::from(u8::from(client.handle_message(setting(x, 0), host::now(c.id))))),
                    Event::Settled if b.is_empty() => client.handle_ack(&a, optional(x), host::now(c.id)),
                    Event::Settled => client.handle_error(&a, &b),
                    Event::Pong => client.handle_pong(),
                    Event::Closed => c.on_closed(x as u32, y.min(u16::MAX.into()) as u16, &a, optional(z)),
                    Event::Timer => c.on_timer(x as u32),
                    Event::Wake => client.handle_wake(host::now(c.id)),
                    Event::Close => client.close(),
                    Event::LastSeq => return Some(client.last_seq() as f64),
                    Event::Mark => client.handle_mark(&a),
                    Event::Gap => client.handle_gap(setting(x, 0)),
                    Event::MarkRead => c.send_own(|room| session::mark_read_frame(room.unwrap_or_default(), setting(x, 0))),
                    Event::Watch => c.send_own(|_| session::watch_frame(&a)),
                    Event::Network => client.handle_network(x > 0.0, host::now(c.id)),
                    Event::Visibility => client.handle_visibility(x > 0.0, host::now(c.id)),
                    Event::Nudge => client.handle_nudge(host::now(c.id)),
                    Event::Expired => client.handle_expired(),
                    _ => {}
                }
                return Some(0.0);
            }
        };
        Some(answer(client, call))
    })
    .unwrap_or(if event.is_call() { closed } else { 0.0 })
}

/// A call's result for the host (see [`conn_event`]).
#[allow(clippy::single_char_add_str)] // `push` of a char would bring a UTF-8 encoder into the wasm
fn answer(client: &Client, result: Result<CallId, QueueError>) -> f64 {
    match result {
        Ok(id) => {
            host::give(&client.wire_id(id));
            id as f64
        }
        Err(e) => {
            let (size, limit) = client.refused();
            let mut text = String::new();
            push_u64(&mut text, size);
            text.push_str(" ");
            push_u64(&mut text, limit);
            host::give(&text);
            -f64::from(abi::queue_failure_code(e))
        }
    }
}

/// Drops a connection and everything it holds (after its `closed` status, or on `close()`); the
/// handles release their resources after the connection left the table.
#[no_mangle]
pub extern "C" fn conn_free(id: u32) {
    drop(take_out(id));
}
