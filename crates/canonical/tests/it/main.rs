//! lkg-canonical against real processes, a real file system and the real
//! Docker engine of the test environment.

mod child;
mod lock;
mod presence;
mod report;
mod store;
