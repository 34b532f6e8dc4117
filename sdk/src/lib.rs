//! roomcast's browser SDK, the Rust half: a thin adapter that feeds browser events (socket open,
//! frames, close, timers, `online`, page visibility) into `roomcast_protocol::client::Client` and
//! carries out what it returns. The JavaScript half (`js/index.js`) gives it the API of
//! `docs/PROTOCOL.md`'s clients: `connect`, `on`, `publish`, and the rest.
//!
//! Resources are values that clean up on drop (gloo's `Timeout` and `EventListener`, the
//! socket's closures), so `close()` drops them and nothing keeps running.

// A free-list allocator of a few hundred bytes instead of dlmalloc's several kilobytes: the SDK
// allocates little and briefly, and its size budget is 13 KiB gzipped for everything.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: wasm32-unknown-unknown without the atomics feature runs one thread.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

mod adapter;
mod options;

pub use adapter::Connection;
