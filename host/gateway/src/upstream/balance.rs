//! Balancing policies: which of an upstream's endpoints gets a request.
//!
//! Pure functions over candidate indexes, so they are tested alone. The
//! caller says which candidates may be picked (available, not tried yet)
//! and gives a starting point that turns with every request (a shared
//! counter), which spreads ties.
//!
//! - `round_robin`: the first eligible endpoint from the starting point.
//! - `least_request`: the eligible endpoint with the fewest tries waiting
//!   for their response headers; ties go to the first from the start.
//! - `hash`: rendezvous hashing (highest score of key and endpoint wins):
//!   a key keeps its endpoint while that endpoint is eligible, and when it
//!   leaves only its keys move.

use crate::config::Balance;

/// What the policies read of a candidate.
pub(super) trait Candidate {
    /// Tries waiting for their response headers.
    fn active(&self) -> u64;
    /// A stable number for the endpoint (from its address).
    fn seed(&self) -> u64;
}

/// The index of the chosen candidate among those `eligible` says may be
/// picked; `None` when none may. `key` is the hashed header value (`hash`;
/// without one, round robin).
pub(super) fn pick<C: Candidate>(
    policy: Balance,
    candidates: &[C],
    start: usize,
    key: Option<u64>,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = candidates.len();
    let from_start = (0..n).map(|i| start.wrapping_add(i) % n);
    match (policy, key) {
        (Balance::LeastRequest, _) => from_start
            .filter(|&i| eligible(i))
            .min_by_key(|&i| candidates[i].active()),
        (Balance::Hash, Some(key)) => (0..n)
            .filter(|&i| eligible(i))
            .max_by_key(|&i| mix(key ^ candidates[i].seed())),
        (Balance::RoundRobin | Balance::Hash, _) => from_start.into_iter().find(|&i| eligible(i)),
    }
}

/// FNV-1a: a stable hash of a header value or an address.
pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads the bits of a combined key and seed.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C {
        eligible: bool,
        active: u64,
        seed: u64,
    }

    impl Candidate for C {
        fn active(&self) -> u64 {
            self.active
        }
        fn seed(&self) -> u64 {
            self.seed
        }
    }

    fn endpoints(n: usize) -> Vec<C> {
        (0..n)
            .map(|i| C {
                eligible: true,
                active: 0,
                seed: hash_bytes(format!("10.0.0.{i}:8443").as_bytes()),
            })
            .collect()
    }

    #[test]
    fn round_robin_turns_and_skips_the_ineligible() {
        let mut c = endpoints(3);
        let picks: Vec<_> = (0..6)
            .map(|s| pick(Balance::RoundRobin, &c, s, None, |i| c[i].eligible))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
        c[1].eligible = false;
        assert_eq!(
            pick(Balance::RoundRobin, &c, 1, None, |i| c[i].eligible),
            Some(2)
        );
        c.iter_mut().for_each(|c| c.eligible = false);
        assert_eq!(
            pick(Balance::RoundRobin, &c, 1, None, |i| c[i].eligible),
            None
        );
    }

    #[test]
    fn least_request_prefers_the_idle() {
        let mut c = endpoints(3);
        c[0].active = 4;
        c[1].active = 1;
        c[2].active = 2;
        assert_eq!(
            pick(Balance::LeastRequest, &c, 0, None, |i| c[i].eligible),
            Some(1)
        );
        c[1].eligible = false;
        assert_eq!(
            pick(Balance::LeastRequest, &c, 0, None, |i| c[i].eligible),
            Some(2)
        );
        // Ties go to the first from the start.
        let idle = endpoints(3);
        assert_eq!(
            pick(Balance::LeastRequest, &idle, 2, None, |i| idle[i].eligible),
            Some(2)
        );
        assert_eq!(
            pick(Balance::LeastRequest, &idle, 4, None, |i| idle[i].eligible),
            Some(1)
        );
    }

    #[test]
    fn hash_keeps_keys_and_moves_only_those_of_a_gone_endpoint() {
        let mut c = endpoints(4);
        let keys: Vec<u64> = (0..200)
            .map(|i| hash_bytes(format!("user-{i}").as_bytes()))
            .collect();
        let before: Vec<_> = keys
            .iter()
            .map(|&k| pick(Balance::Hash, &c, 0, Some(k), |i| c[i].eligible))
            .collect();
        // The start does not matter, and every endpoint gets some keys.
        for (s, &k) in keys.iter().enumerate() {
            assert_eq!(
                pick(Balance::Hash, &c, s, Some(k), |i| c[i].eligible),
                before[s]
            );
        }
        for i in 0..4 {
            assert!(before.iter().filter(|&&p| p == Some(i)).count() > 20);
        }
        c[2].eligible = false;
        for (k, was) in keys.iter().zip(&before) {
            let now = pick(Balance::Hash, &c, 0, Some(*k), |i| c[i].eligible);
            if *was == Some(2) {
                assert_ne!(now, Some(2));
            } else {
                assert_eq!(now, *was, "a key of a remaining endpoint moved");
            }
        }
        // Without a key: round robin.
        assert_eq!(pick(Balance::Hash, &c, 1, None, |i| c[i].eligible), Some(1));
    }
}
