//! Sticky noise (rule 5). A released value's noise is a pure function of the deployment's
//! secret and of what was asked, so asking again — or asking the same thing in other
//! words — returns the same answer and averaging repeated answers gains nothing.
//!
//! Two layers, each with half the variance:
//! - the *people* layer is seeded by the set of people in the group (an order-free digest of
//!   their pseudonyms) and the aggregate: every phrasing that selects the same people gets
//!   the same noise, so rewriting a question cannot average it away;
//! - the *question* layer is seeded by the canonical plan of the aggregate's input and the
//!   group key: two questions over the same people but different filters (e.g. counting
//!   events of different kinds) get independent noise, so their difference is not exact.
//!
//! Noise cannot silently be off: a [`NoiseKey`] exists only with at least 32 bytes of
//! secret, and a [`NoiseScale`] only at or above the floor. A role that is not noised
//! never calls in here; it does not get "zero noise".

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::EngineError;

type HmacSha256 = Hmac<Sha256>;

/// Shortest noise key accepted: 256 bits, so the noise cannot be predicted and removed.
pub const MIN_NOISE_KEY_BYTES: usize = 32;
/// Smallest standard deviation of the sticky noise, in people, for the roles that get it.
pub const NOISE_SD_FLOOR: f64 = 1.5;

/// The deployment's secret that seeds the noise.
#[derive(Clone, PartialEq, Eq)]
pub struct NoiseKey(Vec<u8>);

impl std::fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseKey(redacted)")
    }
}

impl NoiseKey {
    pub fn new(secret: Vec<u8>) -> Result<Self, EngineError> {
        if secret.len() < MIN_NOISE_KEY_BYTES {
            return Err(EngineError::Config(format!(
                "the noise key must be at least {MIN_NOISE_KEY_BYTES} bytes"
            )));
        }
        Ok(Self(secret))
    }

    /// A fingerprint that changes when the key does and reveals nothing of it (an HMAC of
    /// a fixed label under the key), for the policy's version.
    pub fn fingerprint(&self) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(b"poplar policy version");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// The MAC under the key with the layer and `parts` already absorbed: the state a draw
    /// continues from.
    fn absorbed(&self, layer: &str, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(layer.as_bytes());
        absorb(&mut mac, parts);
        mac
    }

    /// Noise for one released column of one question: what all its groups share (the key,
    /// the aggregate, the question) is absorbed once here, so each group's draw hashes only
    /// its own people digest and group key. The draws are exactly those of [`Self::sticky`].
    pub fn for_column(&self, scale: NoiseScale, aggregate: &str, question: &[u8]) -> ColumnNoise {
        ColumnNoise {
            scale,
            people: self.absorbed("people", &[aggregate.as_bytes()]),
            asked: self.absorbed("question", &[aggregate.as_bytes(), question]),
        }
    }

    /// The noise to add to one released value.
    pub fn sticky(
        &self,
        scale: NoiseScale,
        aggregate: &str,
        people_digest: i64,
        question: &[u8],
        group_key: &[u8],
    ) -> f64 {
        self.for_column(scale, aggregate, question)
            .draw(people_digest, group_key)
    }
}

/// Feeds length-prefixed parts, so that no two different lists of parts feed the same bytes.
fn absorb(mac: &mut HmacSha256, parts: &[&[u8]]) {
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
}

/// A standard normal draw from the MAC of everything absorbed.
fn standard_normal(mac: HmacSha256) -> f64 {
    let bytes = mac.finalize().into_bytes();
    let u = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        // 53 random bits → (0, 1].
        ((u64::from_le_bytes(word) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    // Box–Muller.
    (-2.0 * u(0).ln()).sqrt() * (std::f64::consts::TAU * u(8)).cos()
}

/// The sticky noise of one released column (see [`NoiseKey::for_column`]).
#[derive(Clone)]
pub struct ColumnNoise {
    scale: NoiseScale,
    people: HmacSha256,
    asked: HmacSha256,
}

impl ColumnNoise {
    /// The noise to add to one group's value: two layers, each half the variance.
    pub fn draw(&self, people_digest: i64, group_key: &[u8]) -> f64 {
        let mut people = self.people.clone();
        absorb(&mut people, &[&people_digest.to_le_bytes()]);
        let mut asked = self.asked.clone();
        absorb(&mut asked, &[group_key]);
        self.scale.0 * std::f64::consts::FRAC_1_SQRT_2 * (standard_normal(people) + standard_normal(asked))
    }
}

/// The standard deviation of the noise, checked against the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseScale(f64);

impl NoiseScale {
    pub fn new(sd: f64) -> Result<Self, EngineError> {
        if sd.is_finite() && sd >= NOISE_SD_FLOOR {
            Ok(Self(sd))
        } else {
            Err(EngineError::Config(format!(
                "noise standard deviation {sd} is below the floor {NOISE_SD_FLOOR}: refusing to release without noise"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> NoiseKey {
        NoiseKey::new(vec![fill; 32]).expect("key")
    }

    fn sd(value: f64) -> NoiseScale {
        NoiseScale::new(value).expect("scale")
    }

    #[test]
    fn the_same_question_gets_the_same_noise() {
        let k = key(1);
        let a = k.sticky(sd(2.0), "count(*)", 42, b"plan", b"F1");
        assert_eq!(a, k.sticky(sd(2.0), "count(*)", 42, b"plan", b"F1"));
        assert_ne!(a, k.sticky(sd(2.0), "count(*)", 43, b"plan", b"F1"));
        assert_ne!(a, k.sticky(sd(2.0), "count(*)", 42, b"plan2", b"F1"));
        assert_ne!(a, key(2).sticky(sd(2.0), "count(*)", 42, b"plan", b"F1"));
    }

    /// Drawn by the code before [`ColumnNoise`] (at 78be895), printed with `{:?}`, which
    /// round-trips an `f64` exactly.
    const PINNED: [f64; 3] = [0.23743062705858875, 1.3569547919426537, 3.303214364871];

    #[test]
    fn the_draws_are_pinned() {
        // A change to how noise is derived would re-draw every released value: an asker who
        // saw both versions would hold two independent draws of the same cell. These
        // values were computed before the per-column state existed.
        let k = key(1);
        let pinned = [
            (k.sticky(sd(2.0), "count(*)", 42, b"plan", b"F1"), PINNED[0]),
            (k.sticky(sd(1.5), "sum(x)", -7, b"", b""), PINNED[1]),
            (
                k.sticky(sd(3.0), "count(*)", i64::MAX, &[b'q'; 300], &[b'g'; 70]),
                PINNED[2],
            ),
        ];
        for (drawn, expected) in pinned {
            assert_eq!(drawn.to_bits(), expected.to_bits(), "{drawn} != {expected}");
        }
    }

    #[test]
    fn a_column_draws_what_sticky_draws() {
        let k = key(4);
        let question = vec![b'p'; 129];
        let column = k.for_column(sd(2.0), "count(*)", &question);
        for digest in [-1, 0, 1, 99, i64::MIN] {
            for group in [&b""[..], b"E1\x1f", &[b'x'; 64]] {
                assert_eq!(
                    column.draw(digest, group).to_bits(),
                    k.sticky(sd(2.0), "count(*)", digest, &question, group).to_bits()
                );
            }
        }
    }

    #[test]
    fn noise_cannot_be_configured_away() {
        for bad in [0.0, 1.0, -2.0, f64::NAN, f64::INFINITY] {
            assert!(NoiseScale::new(bad).is_err(), "scale {bad} accepted");
        }
        assert!(
            NoiseKey::new(Vec::new()).is_err(),
            "an empty key would make noise predictable"
        );
        assert!(NoiseKey::new(vec![0; 31]).is_err());
        assert_eq!(
            format!("{:?}", key(9)),
            "NoiseKey(redacted)",
            "the key never reaches a log"
        );
        // With a valid key and scale, noise is not zero (the draws are continuous).
        let k = key(3);
        let draws: Vec<f64> = (0..1_000)
            .map(|i| k.sticky(sd(NOISE_SD_FLOOR), "count(*)", i, b"q", b""))
            .collect();
        assert!(draws.iter().all(|d| *d != 0.0));
    }

    #[test]
    fn noise_has_the_stated_spread() {
        // Different people and different questions: both layers vary.
        let k = key(1);
        let draws: Vec<f64> = (0..20_000)
            .map(|i| k.sticky(sd(2.0), "count(*)", i, format!("plan {i}").as_bytes(), b""))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let spread = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((spread - 2.0).abs() < 0.06, "sd {spread}");
    }

    #[test]
    fn the_people_layer_alone_carries_half_the_variance() {
        // Same question, different people: only the people layer varies.
        let k = key(1);
        let draws: Vec<f64> = (0..20_000)
            .map(|i| k.sticky(sd(2.0), "count(*)", i, b"plan", b""))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let spread = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!(
            (spread - 2.0 * std::f64::consts::FRAC_1_SQRT_2).abs() < 0.05,
            "sd {spread}"
        );
    }
}
