//! The KMS application: configuration, shared state, and the checks every operation shares
//! (key resolution, key policy, key state, rate limit).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use cloister_attestation::{TrustAnchor, Verifier};

use crate::error::{KmsError, Result};
use crate::policy::{Decision, KeyPolicy, RequestContext};
use crate::ratelimit::TokenBucket;
use crate::rootkey::RootKey;
use crate::state::{KeyRecord, KeyState, Principal, State};
use crate::store::{Store, Writer};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// AWS region this KMS answers for (SigV4 scope, ARNs).
    pub region: String,
    /// Account id in ARNs; its root principal is the admin.
    pub account: String,
    /// Oldest attestation document accepted.
    pub max_attestation_age: Duration,
    /// Requests per second per account for cryptographic operations (None: unlimited).
    pub rate: Option<f64>,
    /// Roots trusted for attestation documents besides the AWS Nitro root.
    pub trust_roots: Vec<TrustAnchor>,
}

/// Everything a request handler needs: settings, the in-memory state, the store.
pub struct App {
    /// Settings.
    pub(crate) cfg: Config,
    /// The root key sealing key material at rest.
    pub(crate) root: RootKey,
    /// In-memory view of the store.
    state: RwLock<State>,
    /// The store's writer.
    pub(crate) writer: Writer,
    /// Serializes read-modify-write of keys and aliases.
    pub(crate) mutate: tokio::sync::Mutex<()>,
    /// Attestation verifier: the AWS root plus `--trust-root`s, with a chain cache.
    pub(crate) verifier: Verifier,
    limiter: Option<Mutex<TokenBucket>>,
    /// A read-only connection, for principals added while the server runs.
    reader: Mutex<Store>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application over the store in `data_dir` that [`Store::init`] opened.
    pub fn new(cfg: Config, root: RootKey, store: Store, data_dir: &Path) -> Result<Self> {
        let state = store.load(&root)?;
        let writer = store.start_writer(&root, data_dir)?;
        let reader = Store::open_read_only(data_dir)?;
        let mut anchors = vec![TrustAnchor::aws_nitro_root_g1()];
        anchors.extend(cfg.trust_roots.iter().cloned());
        let limiter = cfg.rate.map(|r| Mutex::new(TokenBucket::new(r)));
        Ok(Self {
            verifier: Verifier::new(anchors).with_chain_cache(1024),
            cfg,
            root,
            state: RwLock::new(state),
            writer,
            mutate: tokio::sync::Mutex::new(()),
            limiter,
            reader: Mutex::new(reader),
        })
    }

    /// Read access to the in-memory state.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change to the in-memory state (after it was persisted).
    pub(crate) fn apply(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub(crate) fn key_arn(&self, key_id: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{key_id}",
            self.cfg.region, self.cfg.account
        )
    }

    /// `arn:aws:kms:<region>:<account>:<alias/name>`.
    pub(crate) fn alias_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:{name}",
            self.cfg.region, self.cfg.account
        )
    }

    /// Finds a principal by access key id: memory first, then the store (for principals added by
    /// `cloister-kms principal add` while the server runs).
    pub(crate) fn principal(&self, access_key_id: &str) -> Result<Option<Principal>> {
        if let Some(p) = self.state().principals.get(access_key_id) {
            return Ok(Some(p.clone()));
        }
        let found = {
            let store = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            store.principals(&self.root)?
        };
        let hit = found
            .iter()
            .find(|p| p.access_key_id == access_key_id)
            .cloned();
        self.apply(|s| {
            for p in found {
                s.principals.insert(p.access_key_id.clone(), p);
            }
        });
        Ok(hit)
    }

    /// Resolves a key id, key ARN, alias name or alias ARN to a key id.
    pub(crate) fn resolve(&self, key_ref: &str) -> Result<String> {
        let not_found = |what: &str| KmsError::NotFound(format!("{what} does not exist"));
        let prefix = format!("arn:aws:kms:{}:{}:", self.cfg.region, self.cfg.account);
        let local = if let Some(rest) = key_ref.strip_prefix(&prefix) {
            rest
        } else if key_ref.starts_with("arn:") {
            let parts: Vec<&str> = key_ref.splitn(6, ':').collect();
            if parts.len() != 6 || parts[1] != "aws" || parts[2] != "kms" {
                return Err(KmsError::InvalidArn(format!(
                    "{key_ref} is not a valid KMS ARN"
                )));
            }
            return Err(not_found(&format!("Key '{key_ref}'")));
        } else {
            key_ref
        };
        let state = self.state();
        if local.starts_with("alias/") {
            return state
                .aliases
                .get(local)
                .map(|a| a.key_id.clone())
                .ok_or_else(|| {
                    KmsError::NotFound(format!("Alias '{}' is not found.", self.alias_arn(local)))
                });
        }
        let id = local.strip_prefix("key/").unwrap_or(local);
        if state.keys.contains_key(id) {
            Ok(id.to_owned())
        } else {
            Err(not_found(&format!("Key '{}'", self.key_arn(id))))
        }
    }

    /// The key record for an id (after [`App::resolve`]).
    pub(crate) fn key(&self, key_id: &str) -> Result<KeyRecord> {
        self.state().keys.get(key_id).cloned().ok_or_else(|| {
            KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(key_id)))
        })
    }

    /// Evaluates `policy` for `principal` doing `action` on key `key_id`, adding the condition
    /// keys every request carries (caller account, principal ARN) to `conditions`.
    fn decide(
        &self,
        policy: &KeyPolicy,
        principal: &Principal,
        action: &str,
        key_id: &str,
        mut conditions: HashMap<String, Vec<String>>,
    ) -> Decision {
        conditions.insert("kms:calleraccount".into(), vec![self.cfg.account.clone()]);
        conditions.insert("aws:principalarn".into(), vec![principal.arn.clone()]);
        let arn = self.key_arn(key_id);
        let req = RequestContext {
            principal_arn: &principal.arn,
            action,
            resource: &arn,
            conditions,
        };
        policy.evaluate(&req)
    }

    /// Checks the key policy for `action` with condition keys `conditions`.
    pub(crate) fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        key: &KeyRecord,
        conditions: HashMap<String, Vec<String>>,
    ) -> Result<()> {
        let arn = self.key_arn(&key.key_id);
        match self.decide(&key.policy, principal, action, &key.key_id, conditions) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {arn} with an explicit deny in a resource-based policy",
                principal.arn
            ))),
            Decision::ImplicitDeny => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {arn} because no resource-based policy allows the {action} action",
                principal.arn
            ))),
        }
    }

    /// Refuses cryptographic use of a key that is not Enabled.
    pub(crate) fn check_usable(&self, key: &KeyRecord) -> Result<()> {
        match key.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!(
                "{} is disabled.",
                self.key_arn(&key.key_id)
            ))),
            KeyState::PendingDeletion => self.refuse_pending(key),
        }
    }

    /// Refuses any change to a key pending deletion (KMSInvalidStateException).
    pub(crate) fn refuse_pending(&self, key: &KeyRecord) -> Result<()> {
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                self.key_arn(&key.key_id)
            )));
        }
        Ok(())
    }

    /// The current key material of a key.
    pub(crate) fn material(
        &self,
        key_id: &str,
        version: u32,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        self.state()
            .material
            .get(&(key_id.to_owned(), version))
            .cloned()
            .ok_or_else(|| KmsError::InvalidCiphertext(String::new()))
    }

    /// Takes a token for a cryptographic operation, or ThrottlingException.
    pub(crate) fn throttle(&self) -> Result<()> {
        if let Some(l) = &self.limiter
            && !l.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            return Err(KmsError::Throttling("Rate exceeded".into()));
        }
        Ok(())
    }

    /// Parses a key policy and, unless bypassed, checks that it still lets the caller manage it.
    pub(crate) fn checked_policy(
        &self,
        text: &str,
        principal: &Principal,
        bypass: bool,
        key_id: &str,
    ) -> Result<KeyPolicy> {
        let policy = KeyPolicy::parse(text)?;
        if !bypass
            && self.decide(
                &policy,
                principal,
                "kms:PutKeyPolicy",
                key_id,
                HashMap::new(),
            ) != Decision::Allow
        {
            return Err(KmsError::MalformedPolicy(
                "The new key policy will not allow you to update the key policy in the future."
                    .into(),
            ));
        }
        Ok(policy)
    }
}
