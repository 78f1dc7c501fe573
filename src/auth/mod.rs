//! Authentication: who is calling, with what credentials.
//!
//! Owns password hashing (argon2id, always on the blocking pool), JWT access tokens, opaque refresh
//! tokens (random, stored as hashes), the set of ended sessions their access tokens are checked
//! against, secrets derived from the server's (calendar feed tokens, cup codes), the per-request
//! [`Viewer`] and the rate limits. It uses `config`, `error` and the user entity's
//! role; the accounts domain stores what it issues, and the GraphQL toolkit's guards enforce it.

mod limits;
mod password;
mod refresh;
mod revoked;
mod token;
mod viewer;

pub use limits::{AuthLimits, LimitStore, PerUserLimit};
pub use password::Passwords;
pub use refresh::{RefreshToken, token_hash};
pub use revoked::Revocations;
pub use token::{AUDIENCE, AccessToken, Claims, ISSUER, TokenKeys};
pub use viewer::{ClientAddr, Identity, Viewer};
