//! Seeds: a tiny deterministic generator and the environment variables that pick seeds, so a
//! failing random case can be replayed exactly with `STAIRCASE_SEED=<n>`.

/// The environment variable that replays one seed of the random-fault variant.
pub const SEED_VAR: &str = "STAIRCASE_SEED";
/// The environment variable that sets how many random-fault seeds run per scenario.
pub const SEEDS_VAR: &str = "STAIRCASE_EXPLORER_SEEDS";
/// The environment variable that sets how many random-loop seeds run per scenario.
pub const LOOP_SEEDS_VAR: &str = "STAIRCASE_EXPLORER_LOOP_SEEDS";

/// splitmix64: seedable, portable and stable across platforms and crate versions, which a
/// replay-by-seed promise needs (a `rand` upgrade must not change what seed 42 means).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; mixing in `stream` gives independent sequences per purpose.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The seed to replay from `STAIRCASE_SEED`, if set.
pub fn replay_seed() -> Option<u64> {
    std::env::var(SEED_VAR).ok()?.trim().parse().ok()
}

/// The number of random seeds per scenario from `STAIRCASE_EXPLORER_SEEDS`, else `default`.
pub fn seed_count(default: u64) -> u64 {
    count(SEEDS_VAR, default)
}

/// The number of random-loop seeds per scenario from `STAIRCASE_EXPLORER_LOOP_SEEDS`, else
/// `default`.
pub fn loop_seed_count(default: u64) -> u64 {
    count(LOOP_SEEDS_VAR, default)
}

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
