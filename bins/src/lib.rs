//! The conventions every lkg command-line tool shares.
//!
//! Each `lkg-<job>` binary is thin: it parses its arguments with clap, calls
//! its library crate, prints the result and maps the outcome to an exit code.
//! What would otherwise be copied into every binary lives here:
//!
//! - [`Exit`]: the documented exit codes (`docs/exit-codes.md`);
//! - [`Common`]: the flags every job takes (`--json`, `--state-dir`);
//! - [`Output`]: human or JSON output on stdout, where a closed pipe
//!   (`lkg-x ... | head`) is not an error, and control characters in human
//!   text are shown, not sent ([`Printable`]);
//! - [`Progress`]: progress lines on stderr, only when stderr is a terminal;
//! - [`Failure`] and [`run`]: one way to report an error (what happened, what to
//!   do next) and exit with the right code;
//! - `block_on` (with the `async` feature) and [`runtime_failure`]: the async
//!   runtime of the jobs that wait on the Docker engine or a registry.
//!
//! ```no_run
//! use clap::Parser;
//! use lkg_cli::{Common, Exit, Failure, Output};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: Common,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     lkg_cli::run(|| {
//!         let cli = Cli::parse();
//!         let out = Output::new(cli.common.json);
//!         let state = cli.common.state_dir()?;
//!         out.emit(&serde_json::json!({"state_dir": state}), |w| {
//!             writeln!(w, "state dir: {}", state.display())
//!         })?;
//!         Ok(Exit::Ok)
//!     })
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::print_stderr)] // this crate *is* the place where binaries print

mod exit;
mod output;
mod progress;
mod runtime;
mod state;

pub use exit::{Exit, Failure, run};
pub use output::{Output, Printable};
pub use progress::Progress;
#[cfg(feature = "async")]
pub use runtime::block_on;
pub use runtime::runtime_failure;
pub use state::{Common, default_state_dir};
