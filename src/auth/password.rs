//! argon2id password hashing, run on the blocking pool so hashing never stalls the async workers,
//! and at most a few at once (by default half the cores), so a login rush leaves CPU for every
//! other request.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

/// Hashes and verifies passwords with the configured argon2id cost.
#[derive(Clone)]
pub struct Passwords {
    hasher: Arc<Argon2<'static>>,
    /// Hashes allowed to run at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// A hash of a random password, verified against when a login names nobody, so that an unknown
    /// login costs the same time as a wrong password.
    decoy: Arc<str>,
}

impl Passwords {
    /// argon2id with `memory_kib` of memory and `iterations` passes, one lane, at most
    /// `concurrency` hashes at once (0: half the cores, at least one).
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let decoy = hasher
            .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2 self-test failed: {e}"))?
            .to_string();
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1),
            n => n,
        };
        Ok(Self {
            hasher: Arc::new(hasher),
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            decoy: decoy.into(),
        })
    }

    /// The PHC string of `password` (salted, argon2id).
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: String) -> Result<String> {
        let hasher = self.hasher.clone();
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            hasher
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| Error::internal(anyhow::anyhow!("argon2 hash failed: {e}")))
        })
        .await?
    }

    /// Whether `password` matches `stored`; `None` verifies against the decoy and is always false.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let hasher = self.hasher.clone();
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.to_string());
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| Error::internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
            let matches = hasher.verify_password(password.as_bytes(), &parsed).is_ok();
            Ok(known && matches)
        })
        .await?
    }

    /// Waits for a hashing slot.
    /// Owned, so a hash whose request was cancelled keeps its slot until the hash really ends.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("hashing slots closed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let passwords = Passwords::new(1024, 1, 1).unwrap();
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            passwords
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
    }

    /// A login that names nobody is verified against the decoy: a real argon2id hash with the same
    /// algorithm and cost (memory, passes, lanes) as a stored password's, so it takes the same
    /// work as a wrong password, which answers alike.
    #[tokio::test]
    async fn the_decoy_costs_what_a_stored_hash_costs() {
        let passwords = Passwords::new(2048, 2, 1).unwrap();
        let stored = passwords.hash("correct horse".into()).await.unwrap();
        let stored = PasswordHash::new(&stored).unwrap();
        let decoy = PasswordHash::new(&passwords.decoy).unwrap();
        assert_eq!(decoy.algorithm, stored.algorithm);
        assert_eq!(decoy.version, stored.version);
        let cost = |hash: &PasswordHash| Params::try_from(hash).unwrap();
        let (decoy_cost, stored_cost) = (cost(&decoy), cost(&stored));
        assert_eq!(
            (
                decoy_cost.m_cost(),
                decoy_cost.t_cost(),
                decoy_cost.p_cost()
            ),
            (
                stored_cost.m_cost(),
                stored_cost.t_cost(),
                stored_cost.p_cost()
            )
        );
        assert_eq!((stored_cost.m_cost(), stored_cost.t_cost()), (2048, 2));
    }
}
