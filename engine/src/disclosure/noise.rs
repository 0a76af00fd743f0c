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

    /// A standard normal draw determined by the key, the layer and `parts`.
    fn normal(&self, layer: &str, parts: &[&[u8]]) -> f64 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(layer.as_bytes());
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
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

    /// The noise to add to one released value.
    pub fn sticky(
        &self,
        scale: NoiseScale,
        aggregate: &str,
        people_digest: i64,
        question: &[u8],
        group_key: &[u8],
    ) -> f64 {
        let people = self.normal("people", &[aggregate.as_bytes(), &people_digest.to_le_bytes()]);
        let asked = self.normal("question", &[aggregate.as_bytes(), question, group_key]);
        scale.0 * std::f64::consts::FRAC_1_SQRT_2 * (people + asked)
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
