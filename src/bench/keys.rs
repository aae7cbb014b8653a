//! Key generators: which key of the key space an operation touches.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How keys are drawn from `[0, key_space)`.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// A few hot keys (Zipf with exponent --zipf-s).
    Zipf,
}

/// Draws key indexes; one per client, seeded.
pub enum KeyGen {
    /// Operation i touches key i (wrapping at the key space), whichever
    /// client runs it.
    Sequential {
        space: u64,
    },
    Uniform {
        rng: StdRng,
        space: u64,
    },
    Zipf {
        rng: StdRng,
        zipf: Zipf,
    },
}

impl KeyGen {
    pub fn new(dist: Distribution, sequential: bool, space: u64, zipf_s: f64, seed: u64, client: u64) -> KeyGen {
        let space = space.max(1);
        let rng = StdRng::seed_from_u64(seed ^ client.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match (sequential, dist) {
            (true, _) => KeyGen::Sequential { space },
            (false, Distribution::Uniform) => KeyGen::Uniform { rng, space },
            (false, Distribution::Zipf) => KeyGen::Zipf { rng, zipf: Zipf::new(space, zipf_s) },
        }
    }

    /// The key index for operation `op` (the run's global sequence number).
    pub fn next_index(&mut self, op: u64) -> u64 {
        match self {
            KeyGen::Sequential { space } => op % *space,
            KeyGen::Uniform { rng, space } => rng.random_range(0..*space),
            KeyGen::Zipf { rng, zipf } => zipf.sample(rng),
        }
    }
}

/// The key for index `i`: a fixed prefix plus the zero-padded index, padded
/// to `size` bytes (longer if the index needs it), so keys sort by index.
pub fn key_of(prefix: &str, i: u64, size: usize) -> Vec<u8> {
    let digits = format!("{i}");
    let width = size.saturating_sub(prefix.len()).max(digits.len());
    format!("{prefix}{i:0width$}").into_bytes()
}

/// Zipf over `[0, n)` by inverting the CDF (precomputed, n up to millions).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_size_and_sort_by_index() {
        assert_eq!(key_of("", 42, 8), b"00000042");
        assert_eq!(key_of("k", 7, 4), b"k007");
        assert!(key_of("k", 9, 6) < key_of("k", 10, 6));
        assert_eq!(key_of("", 123456, 3), b"123456", "never truncated");
    }

    #[test]
    fn sequential_wraps_and_uniform_stays_in_space() {
        let mut g = KeyGen::new(Distribution::Uniform, true, 3, 0.99, 1, 1);
        let seq: Vec<u64> = (0..5).map(|i| g.next_index(i)).collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1]);
        let mut g = KeyGen::new(Distribution::Uniform, false, 10, 0.99, 7, 0);
        assert!((0..1000).all(|i| g.next_index(i) < 10));
    }

    #[test]
    fn zipf_prefers_small_indexes_and_is_seeded() {
        let draw = |seed| {
            let mut g = KeyGen::new(Distribution::Zipf, false, 1000, 1.1, seed, 0);
            (0..10_000).map(|i| g.next_index(i)).collect::<Vec<_>>()
        };
        let a = draw(5);
        assert_eq!(a, draw(5), "same seed, same keys");
        let hot = a.iter().filter(|i| **i < 10).count();
        let cold = a.iter().filter(|i| (500..510).contains(*i)).count();
        assert!(hot > 20 * cold.max(1), "hot {hot} cold {cold}");
        assert!(a.iter().all(|i| *i < 1000));
    }
}
