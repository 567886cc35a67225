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
