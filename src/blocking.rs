//! Blocking work (file writes with a flush or fsync, compression) called from async code.

/// Run `f` where blocking is allowed: on a worker of the multi-threaded runtime through
/// `tokio::task::block_in_place` (the worker's other tasks move to another thread meanwhile), elsewhere (a
/// blocking thread, the `block_on` thread, a current-thread runtime, no runtime) as it is.
pub fn run<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
