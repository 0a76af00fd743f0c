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

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A standard normal draw determined by `key` and `parts`.
fn normal(key: &[u8], layer: &str, parts: &[&[u8]]) -> f64 {
    // `new_from_slice` accepts any key length for HMAC, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return 0.0,
    };
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

/// The noise to add to one released value, with standard deviation `sd`.
pub fn sticky(key: &[u8], sd: f64, aggregate: &str, people_digest: i64, question: &[u8], group_key: &[u8]) -> f64 {
    if sd == 0.0 {
        return 0.0;
    }
    let people = normal(key, "people", &[aggregate.as_bytes(), &people_digest.to_le_bytes()]);
    let asked = normal(key, "question", &[aggregate.as_bytes(), question, group_key]);
    sd * std::f64::consts::FRAC_1_SQRT_2 * (people + asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_question_gets_the_same_noise() {
        let a = sticky(b"k", 2.0, "count(*)", 42, b"plan", b"F1");
        assert_eq!(a, sticky(b"k", 2.0, "count(*)", 42, b"plan", b"F1"));
        assert_ne!(a, sticky(b"k", 2.0, "count(*)", 43, b"plan", b"F1"));
        assert_ne!(a, sticky(b"k", 2.0, "count(*)", 42, b"plan2", b"F1"));
        assert_ne!(a, sticky(b"other key", 2.0, "count(*)", 42, b"plan", b"F1"));
    }

    #[test]
    fn noise_has_the_stated_spread() {
        // Different people and different questions: both layers vary.
        let draws: Vec<f64> = (0..20_000)
            .map(|i| sticky(b"k", 2.0, "count(*)", i, format!("plan {i}").as_bytes(), b""))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((sd - 2.0).abs() < 0.06, "sd {sd}");
    }

    #[test]
    fn the_people_layer_alone_carries_half_the_variance() {
        // Same question, different people: only the people layer varies.
        let draws: Vec<f64> = (0..20_000)
            .map(|i| sticky(b"k", 2.0, "count(*)", i, b"plan", b""))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!((sd - 2.0 * std::f64::consts::FRAC_1_SQRT_2).abs() < 0.05, "sd {sd}");
    }
}
