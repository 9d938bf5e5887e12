use crate::{Exit, Failure};

/// Runs a job's async body to its end on a current-thread tokio runtime.
///
/// The jobs that talk to the Docker engine (`lkg-swarm`, `lkg-snap`,
/// `lkg-canonical check`, `lkg-reconcile`) wait on one engine at a time, so
/// one thread is enough; a runtime that cannot start is an environment
/// failure (exit 5), reported like any other.
#[cfg(feature = "async")]
pub fn block_on<F: Future>(future: F) -> Result<F::Output, Failure> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| runtime_failure(&e))?;
    Ok(runtime.block_on(future))
}

/// The failure of an async runtime that could not start (exit 5), for a job
/// that builds its own runtime (a multi-thread one, say).
pub fn runtime_failure(error: &std::io::Error) -> Failure {
    Failure::new(Exit::Environment, format!("cannot start the async runtime: {error}"))
}
