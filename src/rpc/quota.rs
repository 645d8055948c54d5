//! Quotas by identity: what one certificate may use of a node's API per
//! second (requests, submitted bytes) and at once (streams), set per role in
//! `[rpc.quota.<role>]`. Counting by certificate rather than by address is
//! what a consortium needs: one partner's application, wherever it runs and
//! however many addresses it comes from, is held to its share; partners
//! behind one proxy do not share theirs. The excess is answered with
//! `RESOURCE_EXHAUSTED` and a message that says which quota.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tonic::Status;

use crate::config::{QuotaConfig, RoleQuota};
use crate::pki::{Identity, Role};

/// Identities whose usage is remembered before idle ones are forgotten.
const REMEMBERED: usize = 4096;

/// A token bucket refilled at `rate` per second, holding at most a second's
/// worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: rate,
            at: now,
        }
    }

    /// Takes `n` tokens if there are that many (a request larger than a
    /// second's worth passes once the bucket is full, so it is not refused
    /// forever).
    fn take(&mut self, n: f64, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
        if self.tokens >= n.min(rate) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// An identity not seen for this long, with nothing open, is forgotten first
/// (its buckets would be full again).
const IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// What one identity has used.
#[derive(Debug)]
struct Usage {
    requests: Bucket,
    bytes: Bucket,
    streams: u32,
}

/// Usage of every identity, and the quota of each role.
#[derive(Clone, Debug)]
pub struct Quotas {
    config: QuotaConfig,
    usage: Arc<Mutex<HashMap<(String, String), Usage>>>,
}

/// A stream an identity holds open, given back on drop.
#[derive(Debug)]
pub struct IdentityStream {
    key: (String, String),
    usage: Arc<Mutex<HashMap<(String, String), Usage>>>,
}

impl Drop for IdentityStream {
    fn drop(&mut self) {
        let mut u = self.usage.lock();
        if let Some(x) = u.get_mut(&self.key) {
            x.streams = x.streams.saturating_sub(1);
        }
    }
}

fn exhausted(id: &Identity, what: String) -> Status {
    Status::resource_exhausted(format!(
        "{} ({} of organization {}): {what}",
        id.name, id.role, id.org
    ))
}

impl Quotas {
    /// Quotas per role as configured.
    pub fn new(config: QuotaConfig) -> Quotas {
        Quotas {
            config,
            usage: Arc::default(),
        }
    }

    fn quota(&self, role: Role) -> &RoleQuota {
        match role {
            Role::Client => &self.config.client,
            Role::Member => &self.config.member,
            Role::Node => &self.config.node,
            Role::Admin => &self.config.admin,
        }
    }

    fn with_usage<T>(&self, id: &Identity, now: Instant, f: impl FnOnce(&mut Usage) -> T) -> T {
        let q = *self.quota(id.role);
        let mut u = self.usage.lock();
        let key = (id.org.clone(), id.serial.clone());
        if u.len() >= REMEMBERED && !u.contains_key(&key) {
            u.retain(|_, x| {
                x.streams > 0 || now.saturating_duration_since(x.requests.at.max(x.bytes.at)) < IDLE
            });
        }
        let usage = u.entry(key).or_insert_with(|| Usage {
            requests: Bucket::full(f64::from(q.requests_per_sec), now),
            bytes: Bucket::full(q.submit_bytes_per_sec as f64, now),
            streams: 0,
        });
        f(usage)
    }

    /// One request of `id` at `now`.
    pub fn request(&self, id: &Identity, now: Instant) -> Result<(), Status> {
        let rate = f64::from(self.quota(id.role).requests_per_sec);
        let ok = self.with_usage(id, now, |u| u.requests.take(1.0, rate, now));
        if ok {
            Ok(())
        } else {
            Err(exhausted(
                id,
                format!("more than {rate} requests per second, the quota of its role"),
            ))
        }
    }

    /// `n` bytes of transactions submitted by `id` at `now`.
    pub fn submit_bytes(&self, id: &Identity, n: usize, now: Instant) -> Result<(), Status> {
        let rate = self.quota(id.role).submit_bytes_per_sec as f64;
        let ok = self.with_usage(id, now, |u| u.bytes.take(n as f64, rate, now));
        if ok {
            Ok(())
        } else {
            Err(exhausted(
                id,
                format!("more than {rate} bytes of transactions per second, the quota of its role"),
            ))
        }
    }

    /// A stream of `id`, held until the returned value is dropped.
    pub fn stream(&self, id: &Identity, now: Instant) -> Result<IdentityStream, Status> {
        let max = self.quota(id.role).streams;
        let ok = self.with_usage(id, now, |u| {
            if u.streams < max {
                u.streams += 1;
                true
            } else {
                false
            }
        });
        if !ok {
            return Err(exhausted(
                id,
                format!("{max} streams open, the quota of its role; close one first"),
            ));
        }
        Ok(IdentityStream {
            key: (id.org.clone(), id.serial.clone()),
            usage: self.usage.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(role: Role, serial: &str) -> Identity {
        Identity {
            org: "org1".into(),
            role,
            name: "app".into(),
            serial: serial.into(),
            not_after: u64::MAX,
        }
    }

    fn quotas() -> Quotas {
        let small = RoleQuota {
            requests_per_sec: 5,
            streams: 2,
            submit_bytes_per_sec: 1000,
        };
        Quotas::new(QuotaConfig {
            client: small,
            member: RoleQuota {
                requests_per_sec: 50,
                ..small
            },
            node: small,
            admin: small,
        })
    }

    #[test]
    fn each_certificate_has_its_own_share_by_role() {
        let q = quotas();
        let t0 = Instant::now();
        let a = id(Role::Client, "a");
        let b = id(Role::Client, "b");
        for _ in 0..5 {
            q.request(&a, t0).unwrap();
        }
        let e = q.request(&a, t0).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("requests per second"), "{e:?}");
        // Another certificate of the same role is not held back by it.
        q.request(&b, t0).unwrap();
        // A member's quota is its role's.
        let m = id(Role::Member, "m");
        for _ in 0..50 {
            q.request(&m, t0).unwrap();
        }
        assert!(q.request(&m, t0).is_err());
        // A fifth of a second refills one request of five a second.
        q.request(&a, t0 + Duration::from_millis(200)).unwrap();
        assert!(q.request(&a, t0 + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn streams_and_bytes() {
        let q = quotas();
        let t0 = Instant::now();
        let a = id(Role::Client, "a");
        let s1 = q.stream(&a, t0).unwrap();
        let _s2 = q.stream(&a, t0).unwrap();
        let e = q.stream(&a, t0).unwrap_err();
        assert!(e.message().contains("streams open"), "{e:?}");
        drop(s1);
        q.stream(&a, t0).unwrap();

        q.submit_bytes(&a, 600, t0).unwrap();
        let e = q.submit_bytes(&a, 600, t0).unwrap_err();
        assert!(e.message().contains("bytes of transactions"), "{e:?}");
        q.submit_bytes(&a, 600, t0 + Duration::from_secs(1))
            .unwrap();
    }
}
