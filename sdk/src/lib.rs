//! roomcast's browser SDK, the Rust half: the connection logic is `roomcast_protocol::client`'s
//! pure state machine; this crate runs one per connection and bridges it to the browser through
//! `js/host.js`, which owns the WebSocket, the timers and the listeners.
//!
//! The bridge is plain wasm imports and exports (numbers, and strings as pointer and length)
//! rather than wasm-bindgen: the SDK's size budget is 13 KiB gzipped for wasm and glue together,
//! and wasm-bindgen's closures and generated glue alone took more than that (sdk/README.md).
//!
//! The browser resources are still Rust values that release on drop ([`host::Socket`],
//! [`host::Timer`], [`host::WakeListeners`]), each holding the host's id for that one resource,
//! so a connection that closes drops them and leaves nothing running.
//!
//! Natively the crate holds only its allocator ([`heap`]), for its tests (scripts/build-sdk.sh runs
//! them before every build): the state machine is tested in `roomcast-protocol`, this bridge
//! through its raw imports and exports and with host.js in Node (sdk/test/), and end to end in
//! Chromium (tests/e2e/sdk.test.mjs).

#![cfg_attr(target_arch = "wasm32", no_std)]

#[cfg(target_arch = "wasm32")]
extern crate alloc;

#[cfg(target_arch = "wasm32")]
mod conn;
#[cfg(target_arch = "wasm32")]
mod exports;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(any(target_arch = "wasm32", test))]
mod heap;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: heap::Heap<heap::Wasm> = heap::Heap::new(heap::Wasm);

/// Nothing here panics on input (no indexing by input, no unwraps); should a bug panic anyway,
/// the instance traps and the call into it throws in JavaScript. Formatting the message would
/// cost several kilobytes of `core::fmt`.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
