//! Moving bytes between the async side (engine requests, progress) and the
//! blocking side (files, hashing): bounded channels, so that a volume is
//! never held in memory, and progress polled from the caller's task.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lkg_core::Progress;
use sha2::{Digest, Sha256};

use crate::progress::{Event, Phase};
use lkg_core::hex;

/// How often progress is reported while a volume is being copied.
const TICK: Duration = Duration::from_millis(200);

/// Reports one volume's progress in one phase, rate-limited.
pub(crate) struct Reporter<'a> {
    progress: &'a dyn for<'e> Progress<Event<'e>>,
    phase: Phase,
    volume: &'a str,
    index: usize,
    count: usize,
    total: Option<u64>,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(
        progress: &'a dyn for<'e> Progress<Event<'e>>,
        phase: Phase,
        volume: &'a str,
        (index, count): (usize, usize),
        total: Option<u64>,
    ) -> Reporter<'a> {
        Reporter { progress, phase, volume, index: index + 1, count, total, last: None }
    }

    fn event(&self, bytes: u64, done: bool) -> Event<'a> {
        Event {
            phase: self.phase,
            volume: self.volume,
            index: self.index,
            count: self.count,
            bytes,
            total: self.total,
            done,
        }
    }

    pub(crate) fn bytes(&mut self, bytes: u64) {
        let now = Instant::now();
        if self.last.is_none_or(|last| now.duration_since(last) >= TICK) {
            self.last = Some(now);
            self.progress.report(&self.event(bytes, false));
        }
    }

    pub(crate) fn done(&self, bytes: u64) {
        self.progress.report(&self.event(bytes, true));
    }
}

/// Runs blocking `work` on tokio's blocking pool; while it runs, reports the
/// byte count it publishes in its counter.
pub(crate) async fn blocking_with_progress<T: Send + 'static>(
    work: impl FnOnce(&AtomicU64) -> T + Send + 'static,
    reporter: &mut Reporter<'_>,
) -> Result<T, tokio::task::JoinError> {
    let counter = Arc::new(AtomicU64::new(0));
    let published = Arc::clone(&counter);
    let mut handle = tokio::task::spawn_blocking(move || work(&published));
    let mut ticks = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            result = &mut handle => return result,
            _ = ticks.tick() => reporter.bytes(counter.load(Ordering::Relaxed)),
        }
    }
}

/// Runs blocking `work` on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(work).await
}

/// A writer that sends what it is given, in chunks of [`CHUNK`], to another
/// thread: producing bytes (walking a volume) overlaps hashing and writing
/// them. A send fails once the receiving thread has stopped.
pub(crate) struct ChunkWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
}

/// The size of the chunks a [`ChunkWriter`] sends.
pub(crate) const CHUNK: usize = 1024 * 1024;

impl ChunkWriter {
    pub(crate) fn new(tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> ChunkWriter {
        ChunkWriter { tx, buffer: Vec::with_capacity(CHUNK) }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx.send(chunk).map_err(|_| io::Error::other("the archive writer stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + data.len() > CHUNK {
            self.send()?;
        }
        let n = data.len().min(CHUNK);
        self.buffer.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<'c, W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    counter: Option<&'c AtomicU64>,
}

impl<'c, W: Write> HashingWriter<'c, W> {
    pub(crate) fn new(inner: W, counter: Option<&'c AtomicU64>) -> HashingWriter<'c, W> {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0, counter }
    }

    /// The inner writer, the byte count and the SHA-256 (hex).
    pub(crate) fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if let Some(counter) = self.counter {
            counter.store(self.bytes, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_sha256sum() {
        let counter = AtomicU64::new(0);
        let mut writer = HashingWriter::new(Vec::new(), Some(&counter));
        writer.write_all(b"abc").unwrap();
        let (inner, bytes, sha) = writer.finish();
        assert_eq!((inner.as_slice(), bytes, counter.load(Ordering::Relaxed)), (&b"abc"[..], 3, 3));
        // sha256sum <<< -n abc
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
