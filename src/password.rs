//! Console passwords: the account password policy and a CSPRNG generator.

use std::fmt;

use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng};

/// A generated credential. It has no `Display` and its `Debug` is redacted, so it
/// cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value, for the one place that must send it to AWS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The parts of IAM's account password policy that shape a new password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
}

impl Default for PasswordPolicy {
    /// Used when the account has no policy: strong on every axis.
    fn default() -> Self {
        PasswordPolicy {
            min_length: 20,
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
        }
    }
}

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
/// IAM's accepted symbols, less quote and backslash-like characters that break
/// copy-paste and shells.
const SYMBOLS: &[u8] = b"!@#$%^&*()_+-=[]{}|";
/// Never shorter than this, whatever the policy says; IAM's maximum is 128.
const FLOOR: usize = 20;
const CEILING: usize = 128;

impl PasswordPolicy {
    /// Whether `p` satisfies this policy (used by tests and as a self-check).
    pub fn accepts(&self, p: &str) -> bool {
        let has = |set: &[u8]| p.bytes().any(|b| set.contains(&b));
        p.len() >= self.min_length
            && p.len() <= CEILING
            && (!self.require_lowercase || p.bytes().any(|b| b.is_ascii_lowercase()))
            && (!self.require_uppercase || p.bytes().any(|b| b.is_ascii_uppercase()))
            && (!self.require_numbers || p.bytes().any(|b| b.is_ascii_digit()))
            && (!self.require_symbols || has(SYMBOLS))
    }
}

/// Generates a password that satisfies `policy` whatever it requires: every class is
/// always present, and the length is the policy's minimum or [`FLOOR`], whichever is
/// larger. `rng` must be a CSPRNG (the type bound says so).
pub fn generate<R: Rng + CryptoRng>(policy: &PasswordPolicy, rng: &mut R) -> Secret {
    let len = policy.min_length.clamp(FLOOR, CEILING);
    let classes: [&[u8]; 4] = [LOWER, UPPER, DIGITS, SYMBOLS];
    let all: Vec<u8> = classes.concat();
    let mut bytes: Vec<u8> = classes
        .iter()
        .map(|set| set[rng.random_range(0..set.len())])
        .collect();
    while bytes.len() < len {
        bytes.push(all[rng.random_range(0..all.len())]);
    }
    bytes.shuffle(rng);
    // Every byte comes from the ASCII tables above.
    Secret(bytes.into_iter().map(char::from).collect())
}

/// A password from the operating system's CSPRNG via the thread-local generator
/// (ChaCha, reseeded from the OS).
pub fn generate_default(policy: &PasswordPolicy) -> Secret {
    generate(policy, &mut rand::rng())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_policy_is_met_over_many_draws() {
        let strict = PasswordPolicy {
            min_length: 40,
            ..PasswordPolicy::default()
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            let p = generate_default(&strict);
            assert!(strict.accepts(p.expose()), "policy not met");
            assert_eq!(p.expose().len(), 40);
            assert!(seen.insert(p.expose().to_owned()), "repeated password");
        }
    }

    #[test]
    fn floor_and_ceiling_hold() {
        let weak = PasswordPolicy {
            min_length: 6,
            require_symbols: false,
            require_numbers: false,
            require_uppercase: false,
            require_lowercase: false,
        };
        assert_eq!(generate_default(&weak).expose().len(), FLOOR);
        let huge = PasswordPolicy {
            min_length: 500,
            ..PasswordPolicy::default()
        };
        assert_eq!(generate_default(&huge).expose().len(), CEILING);
    }

    #[test]
    fn characters_are_spread_across_the_alphabet() {
        // A crude uniformity check: over 2,000 passwords every symbol of the
        // alphabet shows up, so no class is starved.
        let mut counts = std::collections::HashMap::new();
        for _ in 0..2_000 {
            for b in generate_default(&PasswordPolicy::default())
                .expose()
                .bytes()
            {
                *counts.entry(b).or_insert(0u32) += 1;
            }
        }
        assert_eq!(
            counts.len(),
            LOWER.len() + UPPER.len() + DIGITS.len() + SYMBOLS.len()
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let p = generate_default(&PasswordPolicy::default());
        let shown = format!("{p:?} {:?}", Some(&p));
        assert!(!shown.contains(p.expose()));
    }
}
