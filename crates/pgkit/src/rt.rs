//! Running work outside the caller's tokio runtime. The local cluster and the
//! test harness do blocking process and file work, and each `#[tokio::test]`
//! has a runtime of its own, whose threads that work must not block and whose
//! clock (paused in some tests) must not bound it. So the work runs on a plain
//! thread of its own ([`off_runtime`]), and async work that blocking code needs
//! runs on a current-thread runtime of its own ([`block_on_own_runtime`]).

use std::io;

/// Runs `f` on a thread of its own and awaits its result, so the work
/// belongs to no caller's runtime: it neither blocks the caller's threads nor
/// depends on its clock (a test with paused time still gets a real 30 s
/// start-up bound). A panic in `f` resumes in the caller.
pub(crate) async fn off_runtime<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgkit-local".to_owned())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = send.send(outcome);
        })?;
    match receive.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(io::Error::other("the worker thread ended without a result")),
    }
}

/// Runs `future` to completion on a current-thread runtime of its own.
pub(crate) fn block_on_own_runtime<T>(
    future: impl std::future::Future<Output = T>,
) -> io::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}
