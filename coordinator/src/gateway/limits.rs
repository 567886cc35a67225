//! Rate limits on what devices send: token buckets per device, so a
//! reconnect does not refill them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the last "over the limit" warning was logged.
    warned: Option<Instant>,
}

/// Per-device buckets of one kind (alerts, frames).
pub struct PerDevice {
    capacity: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

/// What a device may have of what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub allowed: u64,
    pub refused: u64,
    /// Log the refusal (at most once a minute per device).
    pub warn: bool,
}

impl PerDevice {
    /// `per_minute` tokens a minute, as many at once at most.
    pub fn per_minute(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self { capacity, per_sec: capacity / 60.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Take up to `n` tokens for `device`.
    pub fn take(&self, device: Uuid, n: u64) -> Granted {
        self.take_at(device, n, Instant::now())
    }

    fn take_at(&self, device: Uuid, n: u64, now: Instant) -> Granted {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(device).or_insert(Bucket { tokens: self.capacity, at: now, warned: None });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.capacity);
        b.at = now;
        let allowed = (b.tokens.floor() as u64).min(n);
        b.tokens -= allowed as f64;
        let refused = n - allowed;
        let warn = refused > 0 && b.warned.is_none_or(|w| now.saturating_duration_since(w).as_secs() >= 60);
        if warn {
            b.warned = Some(now);
        }
        Granted { allowed, refused, warn }
    }

    /// Forget a device (offboarded, purged).
    pub fn forget(&self, device: &Uuid) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_grants_its_capacity_then_refills_over_time() {
        let limit = PerDevice::per_minute(60);
        let (d, other) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        let g = limit.take_at(d, 100, t0);
        assert_eq!((g.allowed, g.refused, g.warn), (60, 40, true));
        let g = limit.take_at(d, 5, t0 + Duration::from_secs(2));
        assert_eq!((g.allowed, g.refused, g.warn), (2, 3, false), "one a second; warned once a minute");
        assert_eq!(limit.take_at(other, 10, t0).allowed, 10, "each device has its own");
        let g = limit.take_at(d, 100, t0 + Duration::from_secs(600));
        assert_eq!((g.allowed, g.warn), (60, true), "full again, never above capacity");
    }
}

/// Connections that have not authenticated yet (in the TLS handshake, or
/// an enrollment), counted per source address: past the cap a new one is
/// closed at once, so stalled handshakes from one address cannot take the
/// connection slots real agents need.
pub struct PreAuth {
    per_ip: usize,
    open: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Connections closed for being over the cap.
    pub refused: std::sync::atomic::AtomicU64,
}

/// One admitted unauthenticated connection; dropping it (the connection
/// authenticated or ended) frees its place.
pub struct PreAuthGuard {
    owner: std::sync::Arc<PreAuth>,
    ip: std::net::IpAddr,
}

impl PreAuth {
    pub fn new(per_ip: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            per_ip: per_ip.max(1),
            open: Mutex::new(HashMap::new()),
            refused: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A place for a connection from `ip`, if it has one left.
    pub fn admit(self: &std::sync::Arc<Self>, ip: std::net::IpAddr) -> Option<PreAuthGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            drop(open);
            self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(PreAuthGuard { owner: self.clone(), ip })
    }

    /// Unauthenticated connections open from `ip` now.
    pub fn open_from(&self, ip: std::net::IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PreAuthGuard {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The frames one session may send: `per_sec` a second, twice that at
/// once. Past it the session's reader waits — the device is slowed down,
/// its frames are not dropped — so a device flooding frames costs the
/// coordinator no more than its rate.
pub struct FrameRate {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl FrameRate {
    pub fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self { capacity: per_sec * 2.0, per_sec, tokens: per_sec * 2.0, at: tokio::time::Instant::now() }
    }

    /// Wait until one more frame may be read.
    pub async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.per_sec;
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
            self.at = tokio::time::Instant::now();
            self.tokens = 1.0;
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod pre_auth_tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_places_and_a_dropped_guard_frees_one() {
        let p = PreAuth::new(2);
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.2".parse().expect("ip"), "127.0.0.3".parse().expect("ip"));
        let g1 = p.admit(a).expect("first");
        let _g2 = p.admit(a).expect("second");
        assert!(p.admit(a).is_none(), "over the cap");
        assert!(p.admit(b).is_some(), "another address is not affected");
        drop(g1);
        assert!(p.admit(a).is_some(), "a place came free");
        assert_eq!(p.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flooding_session_is_slowed_to_its_rate() {
        let mut r = FrameRate::new(10);
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            r.wait().await;
        }
        assert!(start.elapsed() < std::time::Duration::from_millis(10), "the burst goes at once");
        for _ in 0..50 {
            r.wait().await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((4.9..=5.2).contains(&took), "50 more frames at 10 a second: {took} s");
    }
}
