//! Ended sessions: the in-process set of revoked session ids that access tokens are checked against.
//!
//! An access token names its session (`sid`, the refresh-token family it came from). Logging out, or
//! presenting a used refresh token (which revokes its family), ends the session; its access tokens
//! must stop working before their `exp`. The database keeps the truth (the family's `revoked_at`);
//! this set keeps the check off the database on every request. Each entry lives only as long as a
//! token of that session could (the access-token lifetime), so the set stays small. The accounts
//! domain fills it: at once on the instance that revoked, through the broker on every other, and from
//! the database at start-up and after the broker reconnects.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use tokio::sync::watch;
use uuid::Uuid;

/// Revoked session ids, each until the last moment a token of it could still be valid.
pub struct Revocations {
    /// Session id -> until when (seconds since the epoch) it must stay listed.
    revoked: RwLock<HashMap<Uuid, i64>>,
    /// Bumped on every new revocation: open websockets watch it and check their own session.
    changed: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            revoked: RwLock::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// Lists `session` as revoked until `until` (seconds since the epoch), forgetting entries whose
    /// time has passed, and wakes the watchers.
    pub fn revoke(&self, session: Uuid, until: i64) {
        self.revoke_many([(session, until)]);
    }

    /// Lists every `(session, until)` at once (one lock, one wake-up, and none when nothing was
    /// new): what a reload from the database does.
    pub fn revoke_many(&self, sessions: impl IntoIterator<Item = (Uuid, i64)>) {
        let now = chrono::Utc::now().timestamp();
        let mut added = false;
        {
            let mut revoked = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
            revoked.retain(|_, listed_until| *listed_until > now);
            for (session, until) in sessions {
                if until <= now {
                    continue;
                }
                let entry = revoked.entry(session).or_insert_with(|| {
                    added = true;
                    until
                });
                *entry = (*entry).max(until);
            }
        }
        if added {
            self.changed.send_modify(|generation| *generation += 1);
        }
    }

    /// Whether `session` was revoked.
    pub fn is_revoked(&self, session: Uuid) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        !revoked.is_empty() && revoked.contains_key(&session)
    }

    /// Changes with every revocation (websockets re-check their session on each).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_session_is_listed_until_its_tokens_are_gone() {
        let revocations = Revocations::default();
        let (ended, other, old) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let now = chrono::Utc::now().timestamp();
        let mut watcher = revocations.watch();
        revocations.revoke(ended, now + 60);
        revocations.revoke(old, now - 1);
        assert!(revocations.is_revoked(ended));
        assert!(!revocations.is_revoked(other));
        assert!(
            !revocations.is_revoked(old),
            "a session whose tokens have all expired needs no entry"
        );
        assert!(watcher.has_changed().unwrap());
        watcher.mark_unchanged();
        revocations.revoke(other, now + 60);
        assert!(watcher.has_changed().unwrap());
    }
}
