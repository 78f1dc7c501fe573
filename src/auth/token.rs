//! JWT access tokens: HS256, short-lived; `exp`, `iat`, `sub`, `iss` and `aud` are all checked.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
}

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
        }
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

    /// A new access token for `user_id`.
    pub fn issue(&self, user_id: Uuid, role: Role) -> Result<AccessToken> {
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
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::internal)?;
        Ok(AccessToken { token, expires_at })
    }

    /// The claims of a valid token; any flaw (signature, algorithm, expiry, issuer, audience) is
    /// UNAUTHENTICATED, with no detail of which check failed.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| {
                tracing::debug!(reason = %err, "access token rejected");
                Error::Unauthenticated("invalid or expired access token")
            })
    }
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
        let token = keys().issue(id, Role::Admin).unwrap();
        let claims = keys().verify(&token.token).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.role, "ADMIN");
    }

    #[test]
    fn another_secret_is_refused() {
        let token = keys().issue(Uuid::now_v7(), Role::User).unwrap();
        let other = TokenKeys::new(&[8u8; 32], Duration::from_secs(60));
        assert!(matches!(
            other.verify(&token.token),
            Err(Error::Unauthenticated(_))
        ));
    }
}
