//! Accounts: sign-up, login, sessions (refresh-token families) and profiles.
//!
//! Owns the `users` and `refresh_tokens` tables. Uses `auth` for hashing and tokens, `media` for
//! avatars, `db` for transactions. Other domains reach users only through [`service`]'s public
//! functions (and the schema through [`graphql::User`] and [`graphql::UserLoader`]).

pub mod graphql;
pub mod model;
pub mod service;
