//! Authentication: who is calling, and the guards that say what they may do.
//!
//! Owns password hashing (argon2id, always on the blocking pool), JWT access tokens, opaque refresh
//! tokens (random, stored as hashes), the per-request [`Viewer`] and the login rate limits. It uses
//! only `config` and `error`; the accounts domain stores what it issues, and the GraphQL toolkit's
//! guards enforce it.

mod limits;
mod password;
mod refresh;
mod token;
mod viewer;

pub use limits::AuthLimits;
pub use password::Passwords;
pub use refresh::RefreshToken;
pub use token::{AUDIENCE, AccessToken, Claims, ISSUER, TokenKeys};
pub use viewer::{ClientAddr, Identity, Viewer};
