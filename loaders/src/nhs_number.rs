//! NHS numbers: normalisation and the modulus 11 check (NHS Data Dictionary).
//!
//! A valid NHS number is ten digits whose first nine, weighted 10 down to 2 and summed,
//! leave a check digit `11 - (sum mod 11)` (11 becomes 0; 10 means the number is invalid)
//! equal to the tenth digit.

/// A ten-digit NHS number that passed the modulus 11 check.
///
/// Deliberately has no `Display` or `Debug` that shows the digits, so that it cannot end up
/// in a log line or an error message by accident.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NhsNumber([u8; 10]);

impl std::fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

/// Why a value is not a usable NHS number. Carries no digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NhsNumberProblem {
    Missing,
    WrongLength,
    NotDigits,
    FailsCheckDigit,
}

impl NhsNumber {
    /// Normalise (strip spaces and hyphens, as people and systems write them: `943 476 5919`,
    /// `943-476-5919`) and validate.
    pub fn parse(raw: &str) -> Result<Self, NhsNumberProblem> {
        let mut digits = [0u8; 10];
        let mut count = 0usize;
        for ch in raw.chars() {
            match ch {
                ' ' | '-' | '\t' => continue,
                '0'..='9' => {
                    if count == 10 {
                        return Err(NhsNumberProblem::WrongLength);
                    }
                    digits[count] = ch as u8 - b'0';
                    count += 1;
                }
                _ => return Err(NhsNumberProblem::NotDigits),
            }
        }
        match count {
            0 => Err(NhsNumberProblem::Missing),
            10 => {
                if check_digit(&digits[..9]) == Some(digits[9]) {
                    Ok(Self(digits))
                } else {
                    Err(NhsNumberProblem::FailsCheckDigit)
                }
            }
            _ => Err(NhsNumberProblem::WrongLength),
        }
    }

    /// Build the valid NHS number whose first nine digits are `stem` (0..1e9), if the stem
    /// has a check digit at all (one stem in eleven does not).
    pub fn from_stem(stem: u32) -> Option<Self> {
        let mut digits = [0u8; 10];
        let mut rest = stem;
        for slot in digits[..9].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        digits[9] = check_digit(&digits[..9])?;
        Some(Self(digits))
    }

    /// The normalised ten digits, for hashing and for writing synthetic extracts only.
    pub fn digits(&self) -> [u8; 10] {
        self.0.map(|d| d + b'0')
    }

    /// The normalised ten digits as text (for synthetic extracts; never log this).
    pub fn to_digit_string(&self) -> String {
        self.digits().iter().map(|&b| b as char).collect()
    }
}

/// The modulus 11 check digit for nine digits, or `None` when the stem cannot be valid.
fn check_digit(nine: &[u8]) -> Option<u8> {
    let sum: u32 = nine.iter().zip((2..=10).rev()).map(|(&d, w)| u32::from(d) * w).sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_data_dictionary_example_in_any_spacing() {
        for raw in ["9434765919", "943 476 5919", "943-476-5919", " 9434765919 "] {
            let n = NhsNumber::parse(raw).expect("valid");
            assert_eq!(n.to_digit_string(), "9434765919");
        }
    }

    #[test]
    fn rejects_each_kind_of_bad_number() {
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberProblem::Missing));
        assert_eq!(NhsNumber::parse("   "), Err(NhsNumberProblem::Missing));
        assert_eq!(NhsNumber::parse("943476591"), Err(NhsNumberProblem::WrongLength));
        assert_eq!(NhsNumber::parse("94347659190"), Err(NhsNumberProblem::WrongLength));
        assert_eq!(NhsNumber::parse("94347659l9"), Err(NhsNumberProblem::NotDigits));
        assert_eq!(NhsNumber::parse("9434765918"), Err(NhsNumberProblem::FailsCheckDigit));
    }

    #[test]
    fn stems_round_trip_and_one_in_eleven_has_no_check_digit() {
        let mut valid = 0;
        for stem in 400_000_000..400_011_000u32 {
            if let Some(n) = NhsNumber::from_stem(stem) {
                valid += 1;
                let parsed = NhsNumber::parse(&n.to_digit_string()).expect("round trip");
                assert_eq!(parsed, n);
            }
        }
        assert_eq!(valid, 10_000);
    }

    #[test]
    fn debug_never_shows_digits() {
        let n = NhsNumber::parse("9434765919").expect("valid");
        assert!(!format!("{n:?}").contains("943"));
    }
}
