//! Login IDs: the key of every session. Format rules from DESIGN.md.

use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// Longest Login ID accepted.
pub const MAX_LEN: usize = 64;
/// Length of generated Login IDs.
pub const GENERATED_LEN: usize = 20;

/// A Login ID: ASCII letters and digits only, unique across the gateway. It names a person.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoginId(Arc<str>);

/// Why a string is not a valid Login ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoginIdError {
    /// Empty string.
    #[error("a Login ID must not be empty")]
    Empty,
    /// Longer than [`MAX_LEN`].
    #[error("a Login ID is at most {MAX_LEN} characters (got {0})")]
    TooLong(usize),
    /// A character other than ASCII letters and digits.
    #[error(
        "a Login ID holds only ASCII letters and digits; found {0:?} (an e-mail or CRM user name belongs in `user_name`)"
    )]
    BadChar(char),
}

impl LoginId {
    /// Validates and wraps a Login ID.
    pub fn parse(s: &str) -> Result<LoginId, LoginIdError> {
        if s.is_empty() {
            return Err(LoginIdError::Empty);
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(LoginIdError::BadChar(c));
        }
        if s.len() > MAX_LEN {
            return Err(LoginIdError::TooLong(s.len()));
        }
        Ok(LoginId(Arc::from(s)))
    }

    /// A fresh Login ID: 20 uppercase letters and digits from the OS CSPRNG.
    pub fn generate() -> LoginId {
        use rand::{Rng, TryRngCore};
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        // The OS CSPRNG; failing to read it on Linux means the system is broken beyond repair.
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let s: String = (0..GENERATED_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        LoginId(Arc::from(s))
    }

    /// The Login ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: the first four characters and the length.
    pub fn redacted(&self) -> String {
        let head: String = self.0.chars().take(4).collect();
        format!("{head}…({})", self.0.len())
    }
}

impl fmt::Debug for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginId({})", self.redacted())
    }
}

impl fmt::Display for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for LoginId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for LoginId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_rules() {
        assert!(LoginId::parse("A1B2C3D4E5F6G7H8J9K0").is_ok());
        assert_eq!(LoginId::parse(""), Err(LoginIdError::Empty));
        assert_eq!(LoginId::parse("a b"), Err(LoginIdError::BadChar(' ')));
        assert_eq!(LoginId::parse("x@y.com"), Err(LoginIdError::BadChar('@')));
        assert_eq!(LoginId::parse("a-b"), Err(LoginIdError::BadChar('-')));
        assert_eq!(
            LoginId::parse(&"A".repeat(65)),
            Err(LoginIdError::TooLong(65))
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = LoginId::generate();
        let b = LoginId::generate();
        assert_eq!(a.as_str().len(), GENERATED_LEN);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert!(LoginId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
        assert_eq!(
            a.redacted().chars().take(4).collect::<String>(),
            a.as_str()[..4]
        );
    }
}
