//! Account newtypes and their rules, parsed from raw input ("parse, don't validate"), and the one
//! live payload accounts publish (an ended session). No IO here.
//!
//! Each `parse` takes the argument path the client wrote (`input.handle`), so a refusal names it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::Topic;

/// Ended sessions, for every instance's set of revoked sessions: `sessions:ended`.
pub fn sessions_ended() -> Topic<SessionEnded> {
    Topic::single("sessions", "ended")
}

/// The payload of [`sessions_ended`] (wire v1): a session (refresh-token family) was revoked, by
/// logout or by the reuse of a spent refresh token; its access tokens must stop working.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The session id (`sid` of its access tokens).
    pub session: Uuid,
}

/// A handle: 3-30 of `[a-z0-9_]`, stored lower-case so comparison ignores case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle(String);

impl Handle {
    /// Lower-cases and checks `raw`.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        let handle = raw.trim().to_ascii_lowercase();
        if !(3..=30).contains(&handle.len()) {
            return Err(Error::bad_input(field, "a handle has 3 to 30 characters"));
        }
        if !handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::bad_input(
                field,
                "a handle has only letters a-z, digits and _",
            ));
        }
        Ok(Self(handle))
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lower-cased; a deliberately plain check (one `@`, a dotted domain, no spaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Lower-cases and checks `raw`.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid {
            Ok(Self(email))
        } else {
            Err(Error::bad_input(field, "not an email address"))
        }
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8 to 128 characters.
pub struct Password(String);

impl Password {
    /// Checks the length of `raw` (kept as typed: spaces count).
    pub fn parse(raw: String, field: &str) -> Result<Self> {
        let length = raw.chars().count();
        if !(8..=128).contains(&length) {
            return Err(Error::bad_input(
                field,
                "a password has 8 to 128 characters",
            ));
        }
        Ok(Self(raw))
    }

    /// The password, to hash.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A name shown to others: 1-80 characters, trimmed, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and checks `raw`.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        crate::model::name(raw, field, 1, 80).map(Self)
    }

    /// The name.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Free text about a user: at most 500 characters; empty clears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bio(Option<String>);

impl Bio {
    /// Trims and checks `raw`.
    pub fn parse(raw: &str, field: &str) -> Result<Self> {
        crate::model::optional_text(Some(raw), field, 500).map(Self)
    }

    /// The bio, `None` when cleared.
    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

/// Body weight for the blood alcohol estimate: 20-400 kg.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyWeightKg(f64);

impl BodyWeightKg {
    /// Checks `raw`.
    pub fn parse(raw: f64, field: &str) -> Result<Self> {
        if raw.is_finite() && (20.0..=400.0).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(Error::bad_input(field, "body weight is 20 to 400 kg"))
        }
    }

    /// Kilograms.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// What a login names: a handle or an email, in canonical form (the rate-limit key too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// Contains `@`.
    Email(String),
    /// Anything else.
    Handle(String),
}

impl Login {
    /// Canonicalises `raw` without judging it: an unknown login must fail like a wrong password.
    pub fn parse(raw: &str) -> Self {
        let login = raw.trim().to_lowercase();
        if login.contains('@') {
            Self::Email(login)
        } else {
            Self::Handle(login)
        }
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Email(s) | Self::Handle(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> String {
        match err {
            Error::BadInput { field, .. } => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn handles_are_lower_case_words() {
        assert_eq!(Handle::parse(" Alice_1 ", "h").unwrap().as_str(), "alice_1");
        assert_eq!(
            field_of(Handle::parse("al", "input.handle").unwrap_err()),
            "input.handle"
        );
        assert!(Handle::parse(&"a".repeat(31), "h").is_err());
        assert!(Handle::parse("al-ice", "h").is_err());
        assert!(Handle::parse("élodie", "h").is_err());
        assert!(Handle::parse(&"a".repeat(30), "h").is_ok());
    }

    #[test]
    fn emails_need_a_dotted_domain() {
        assert_eq!(
            Email::parse("A@Example.COM", "e").unwrap().as_str(),
            "a@example.com"
        );
        for bad in ["", "a", "a@b", "@b.c", "a@.b", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(Email::parse(bad, "e").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn passwords_have_8_to_128_characters() {
        assert!(Password::parse("1234567".into(), "p").is_err());
        assert!(Password::parse("12345678".into(), "p").is_ok());
        assert!(Password::parse("é".repeat(128), "p").is_ok());
        assert!(Password::parse("x".repeat(129), "p").is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret123".into(), "p").unwrap()),
            "Password(<redacted>)"
        );
    }

    #[test]
    fn profile_fields_are_bounded() {
        assert!(DisplayName::parse("  ", "n").is_err());
        assert!(DisplayName::parse("a\u{7}b", "n").is_err());
        assert_eq!(
            DisplayName::parse(" Ann ", "n").unwrap().into_inner(),
            "Ann"
        );
        assert_eq!(Bio::parse("  ", "b").unwrap().into_inner(), None);
        assert!(Bio::parse(&"x".repeat(501), "b").is_err());
        assert!(BodyWeightKg::parse(f64::NAN, "w").is_err());
        assert!(BodyWeightKg::parse(19.9, "w").is_err());
        assert_eq!(BodyWeightKg::parse(70.0, "w").unwrap().get(), 70.0);
    }

    #[test]
    fn logins_are_emails_or_handles() {
        assert_eq!(Login::parse(" Bob@X.io "), Login::Email("bob@x.io".into()));
        assert_eq!(Login::parse("Bob"), Login::Handle("bob".into()));
    }
}
