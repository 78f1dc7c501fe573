//! JWT access tokens: HS256, short-lived; `exp`, `iat`, `sub`, `iss` and `aud` are all checked, and a
//! token of an ended session (`sid`, see [`Revocations`]) is refused.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lru::LruCache;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use uuid::Uuid;

use super::Revocations;
use crate::entity::user::Role;
use crate::error::{Error, Result};

/// `iss` of every Rally token.
pub const ISSUER: &str = "rally";
/// `aud` of every Rally access token.
pub const AUDIENCE: &str = "rally-api";

/// What an access token says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// `USER` or `ADMIN` at issue time.
    pub role: String,
    /// Issuer, always [`ISSUER`].
    pub iss: String,
    /// Audience, always [`AUDIENCE`].
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The session (refresh-token family) the token belongs to; logging out ends it. Absent from
    /// tokens of releases before sessions could end; those live until `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// A signed access token and when it expires.
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks access tokens with one HS256 secret, and derives other secrets from it.
#[derive(Clone)]
pub struct TokenKeys {
    secret: std::sync::Arc<[u8]>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    revocations: std::sync::Arc<Revocations>,
    verified: std::sync::Arc<Mutex<LruCache<[u8; 32], Claims>>>,
}

/// Tokens kept with their checked claims, by the SHA-256 of their text (the tokens themselves are not
/// kept). An app sends the same token with every request until it refreshes it; verifying it
/// (base64, JSON, HMAC, claim checks) was a tenth of an authenticated read's instructions.
const VERIFIED_TOKENS: usize = 10_000;

impl TokenKeys {
    /// Keys for `secret`; tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        Self {
            secret: secret.into(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            revocations: std::sync::Arc::default(),
            verified: std::sync::Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(NonZeroUsize::MIN),
            ))),
        }
    }

    /// The ended sessions this instance knows of.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Ends `session` on this instance: its tokens are refused from now until the last of them
    /// would have expired (its lifetime plus the leeway).
    pub fn revoke(&self, session: Uuid) {
        let lifetime = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        self.revocations
            .revoke(session, Utc::now().timestamp() + lifetime + leeway);
    }

    /// How long after a revocation a token of it could still be presented (lifetime and leeway):
    /// how far back the database is read for revocations.
    pub fn revocation_horizon(&self) -> Duration {
        self.ttl + Duration::from_secs(self.validation.leeway)
    }

    /// A secret derived from the server's for one `purpose` and `message` (HMAC-SHA256,
    /// base64url): unguessable without the server's secret, the same every time it is asked, so it
    /// need not be stored (calendar feed tokens are made this way from a stored random nonce).
    pub fn derive(&self, purpose: &str, message: &str) -> Result<String> {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.secret).map_err(Error::internal)?;
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(message.as_bytes());
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// A new access token for `user_id` in `session`.
    pub fn issue(&self, user_id: Uuid, role: Role, session: Uuid) -> Result<AccessToken> {
        let now = Utc::now();
        // Whole seconds, as in the token itself, so the reported expiry is exactly `exp`.
        let expires_at = (now + self.ttl).trunc_subsecs(0);
        let claims = Claims {
            sub: user_id,
            role: match role {
                Role::User => "USER",
                Role::Admin => "ADMIN",
            }
            .to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            sid: Some(session),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::internal)?;
        Ok(AccessToken { token, expires_at })
    }

    /// The claims of a valid token; any flaw (signature, algorithm, expiry, issuer, audience, an
    /// ended session) is UNAUTHENTICATED, with no detail of which check failed. A token verified
    /// before is known by its text (signature, algorithm, issuer and audience cannot change);
    /// expiry and revocation are checked on every use.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let refused = || Error::Unauthenticated("invalid or expired access token");
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let known = lock(&self.verified).get(&digest).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims =
                    jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
                        .map(|data| data.claims)
                        .map_err(|err| {
                            tracing::debug!(reason = %err, "access token rejected");
                            refused()
                        })?;
                lock(&self.verified).put(digest, claims.clone());
                claims
            }
        };
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if claims.exp.saturating_add(leeway) < Utc::now().timestamp() {
            tracing::debug!("expired access token rejected");
            lock(&self.verified).pop(&digest);
            return Err(refused());
        }
        if claims
            .sid
            .is_some_and(|session| self.revocations.is_revoked(session))
        {
            tracing::debug!("access token of an ended session rejected");
            return Err(refused());
        }
        Ok(claims)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], Duration::from_secs(60))
    }

    #[test]
    fn an_issued_token_verifies() {
        let id = Uuid::now_v7();
        let token = keys().issue(id, Role::Admin, Uuid::now_v7()).unwrap();
        let claims = keys().verify(&token.token).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.role, "ADMIN");
    }

    #[test]
    fn a_token_of_an_ended_session_is_refused() {
        let keys = keys();
        let (ended, kept) = (Uuid::now_v7(), Uuid::now_v7());
        let token = keys.issue(Uuid::now_v7(), Role::User, ended).unwrap();
        let other = keys.issue(Uuid::now_v7(), Role::User, kept).unwrap();
        keys.verify(&token.token).unwrap();
        keys.revoke(ended);
        assert!(matches!(
            keys.verify(&token.token),
            Err(Error::Unauthenticated(_))
        ));
        keys.verify(&other.token).unwrap();
    }

    #[test]
    fn another_secret_is_refused() {
        let token = keys()
            .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
            .unwrap();
        let other = TokenKeys::new(&[8u8; 32], Duration::from_secs(60));
        assert!(matches!(
            other.verify(&token.token),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_known_token_is_still_refused_once_expired() {
        let keys = keys();
        let token = keys
            .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
            .unwrap();
        let mut claims = keys.verify(&token.token).unwrap();
        // As if its lifetime and the leeway had passed since it was first verified.
        claims.exp = Utc::now().timestamp() - 6;
        let digest: [u8; 32] = sha2::Sha256::digest(token.token.as_bytes()).into();
        lock(&keys.verified).put(digest, claims);
        assert!(matches!(
            keys.verify(&token.token),
            Err(Error::Unauthenticated(_))
        ));
        let mut tampered = token.token.clone();
        tampered.pop();
        assert!(
            keys.verify(&tampered).is_err(),
            "another text is verified anew"
        );
    }
}
