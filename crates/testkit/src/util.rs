use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A name no other test uses: `lkgt-<prefix>-<8 hex>`. Stacks, volumes and
/// repositories get one each, so tests run in parallel without colliding.
/// Stack names stay short because swarm prefixes every object with them.
pub fn unique_name(prefix: &str) -> String {
    // RandomState is seeded randomly per process and differs per instance.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.write_u32(std::process::id());
    format!("lkgt-{prefix}-{:08x}", hasher.finish() & 0xffff_ffff)
}

/// A TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

/// Polls `probe` every `interval` until it returns `Some`, for at most
/// `timeout`; panics naming `what` when time runs out. Every wait in a test
/// is bounded.
pub fn wait_until<T>(what: &str, timeout: Duration, interval: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_dns_safe() {
        let a = unique_name("smoke");
        let b = unique_name("smoke");
        assert_ne!(a, b);
        assert!(a.starts_with("lkgt-smoke-") && a.len() == "lkgt-smoke-".len() + 8, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    #[should_panic(expected = "timed out after")]
    fn wait_until_is_bounded() {
        wait_until("never", Duration::from_millis(50), Duration::from_millis(10), || None::<()>);
    }
}
