//! [`DetRng`]: a small, seeded, reproducible PRNG (xoshiro256** seeded through splitmix64).
//!
//! Every random number in a simulation comes from a `DetRng` derived from the simulation
//! seed, so a run is a pure function of its seed and inputs. Not cryptographically secure.

use std::ops::{Range, RangeInclusive};

/// Added to the splitmix64 state at every step (2^64 / golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Salt mixed into fork stream ids so that `fork(0)` is not the parent stream.
const FORK_SALT: u64 = 0xD1B5_4A32_D192_ED03;

/// One splitmix64 output for `state + GOLDEN_GAMMA`; a good 64-bit mixer.
#[inline]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic pseudo-random generator: xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetRng {
    s: [u64; 4],
    /// The seed this stream was built from; forks derive from it, not from the current state.
    key: u64,
}

impl DetRng {
    /// Creates a generator from a 64-bit seed; equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        // xoshiro's one forbidden state; splitmix64 cannot produce it in practice, but be exact.
        if s == [0; 4] {
            s[0] = GOLDEN_GAMMA;
        }
        DetRng { s, key: seed }
    }

    /// The seed this generator (or fork) was created from.
    pub fn seed(&self) -> u64 {
        self.key
    }

    /// Next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Next 32 uniformly distributed bits (the high half, which is the better half).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform `f64` in `[0, 1)` with 53 bits of precision. For sampling only, never for money.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `numerator / denominator`, computed exactly in integers.
    ///
    /// Returns `false` when `denominator` is zero and `true` when `numerator >= denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        if denominator == 0 {
            return false;
        }
        if numerator >= denominator {
            return true;
        }
        self.below(denominator) < numerator
    }

    /// A uniform value in `range` (`lo..hi` or `lo..=hi`, for `u64`, `i64`, `u32`, `usize`).
    ///
    /// # Panics
    /// If the range is empty; use [`DetRng::try_gen_range`] when the bounds come from data.
    #[inline]
    pub fn gen_range<R: SampleRange>(&mut self, range: R) -> R::Output {
        match range.sample(self) {
            Some(v) => v,
            None => panic!("DetRng::gen_range called with an empty range"),
        }
    }

    /// A uniform value in `range`, or `None` if the range is empty.
    #[inline]
    pub fn try_gen_range<R: SampleRange>(&mut self, range: R) -> Option<R::Output> {
        range.sample(self)
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // i + 1 <= len fits in u64 on every supported platform.
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// An independent child stream identified by `stream_id`.
    ///
    /// The child depends only on this generator's seed and `stream_id`, not on how many numbers
    /// have been drawn, and forking does not advance the parent: adding draws in one place
    /// does not shift the numbers seen anywhere else.
    pub fn fork(&self, stream_id: u64) -> DetRng {
        let mut id = stream_id ^ FORK_SALT;
        let mut k = self.key ^ splitmix64(&mut id);
        DetRng::new(splitmix64(&mut k))
    }

    /// Uniform in `0..span` (span > 0) with Lemire's multiply-and-reject method: no modulo bias.
    #[inline]
    fn below(&mut self, span: u64) -> u64 {
        debug_assert!(span > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(span);
        let mut low = m as u64;
        if low < span {
            // Reject the first (2^64 mod span) low values so every output is equally likely.
            let threshold = span.wrapping_neg() % span;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(span);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// Uniform in `0..=max_offset`, handling the full 64-bit span.
    #[inline]
    fn up_to(&mut self, max_offset: u64) -> u64 {
        match max_offset.checked_add(1) {
            Some(span) => self.below(span),
            None => self.next_u64(),
        }
    }
}

/// A range [`DetRng::gen_range`] can sample from.
pub trait SampleRange {
    /// The sampled value type.
    type Output;
    /// A uniform value in the range, or `None` if the range is empty.
    fn sample(self, rng: &mut DetRng) -> Option<Self::Output>;
}

impl SampleRange for Range<u64> {
    type Output = u64;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<u64> {
        (self.start < self.end).then(|| self.start + rng.below(self.end - self.start))
    }
}

impl SampleRange for RangeInclusive<u64> {
    type Output = u64;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<u64> {
        let (lo, hi) = self.into_inner();
        (lo <= hi).then(|| lo + rng.up_to(hi - lo))
    }
}

impl SampleRange for Range<i64> {
    type Output = i64;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<i64> {
        // Work in two's complement offsets so spans wider than i64::MAX are handled.
        (self.start < self.end).then(|| {
            let span = self.end.wrapping_sub(self.start) as u64;
            self.start.wrapping_add(rng.below(span) as i64)
        })
    }
}

impl SampleRange for RangeInclusive<i64> {
    type Output = i64;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<i64> {
        let (lo, hi) = self.into_inner();
        (lo <= hi).then(|| lo.wrapping_add(rng.up_to(hi.wrapping_sub(lo) as u64) as i64))
    }
}

impl SampleRange for Range<u32> {
    type Output = u32;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<u32> {
        // The offset is below end - start, which fits in u32.
        (self.start < self.end)
            .then(|| self.start + rng.below(u64::from(self.end - self.start)) as u32)
    }
}

impl SampleRange for Range<usize> {
    type Output = usize;
    #[inline]
    fn sample(self, rng: &mut DetRng) -> Option<usize> {
        // usize is at most 64 bits on supported targets, so the casts are lossless.
        (self.start < self.end)
            .then(|| self.start + rng.below((self.end - self.start) as u64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_xoshiro256starstar() {
        // Reference vector: xoshiro256** from state [1, 2, 3, 4] (from the authors' C code).
        let mut r = DetRng {
            s: [1, 2, 3, 4],
            key: 0,
        };
        let expected = [11520u64, 0, 1509978240, 1215971899390074240];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
    }

    #[test]
    fn known_answer_splitmix64() {
        // Reference values for splitmix64 seeded with 1234567.
        let mut s = 1_234_567u64;
        assert_eq!(splitmix64(&mut s), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(&mut s), 3_203_168_211_198_807_973);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = DetRng::new(42);
        let mut b = DetRng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = DetRng::new(43);
        let diff = (0..100).filter(|_| a.next_u64() != c.next_u64()).count();
        assert!(diff > 90);
    }

    #[test]
    fn fork_is_independent_of_parent_progress() {
        let parent = DetRng::new(7);
        let mut advanced = parent.clone();
        for _ in 0..10 {
            advanced.next_u64();
        }
        assert_eq!(parent.fork(3), advanced.fork(3));
        assert_ne!(parent.fork(3), parent.fork(4));
        assert_ne!(parent.fork(0).s, parent.s);
    }

    #[test]
    fn full_ranges_do_not_overflow() {
        let mut r = DetRng::new(1);
        let _ = r.gen_range(0..=u64::MAX);
        let _ = r.gen_range(i64::MIN..=i64::MAX);
        let v = r.gen_range(i64::MIN..i64::MAX);
        assert!(v < i64::MAX);
        assert_eq!(r.gen_range(5u64..=5), 5);
        assert_eq!(r.try_gen_range(5u64..5), None);
    }

    #[test]
    fn next_f64_in_unit_interval() {
        let mut r = DetRng::new(9);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn gen_range_is_roughly_uniform() {
        // Chi-square-ish sanity check on a small range: each bucket within 10% of its mean.
        let mut r = DetRng::new(2024);
        let mut buckets = [0u32; 6];
        for _ in 0..60_000 {
            buckets[r.gen_range(0usize..6)] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn chance_edges() {
        let mut r = DetRng::new(3);
        assert!(!r.chance(1, 0));
        assert!(r.chance(5, 5));
        assert!(!r.chance(0, 5));
        let hits = (0..10_000).filter(|_| r.chance(1, 4)).count();
        assert!((2_200..2_800).contains(&hits));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = DetRng::new(11);
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
