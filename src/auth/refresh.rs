//! Opaque refresh tokens: 256 random bits, handed to the client once, stored only as a SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly generated refresh token and the hash to store.
pub struct RefreshToken {
    /// What the client keeps (never stored).
    pub token: String,
    /// Hex SHA-256 of `token` (what the database keeps).
    pub hash: String,
}

impl RefreshToken {
    /// A new random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = Self::hash(&token);
        Self { token, hash }
    }

    /// The stored form of a presented token.
    pub fn hash(token: &str) -> String {
        token_hash(token)
    }
}

/// The stored form of a secret token (refresh tokens, calendar feed tokens): hex SHA-256.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, RefreshToken::hash(&a.token));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.token));
    }
}
