//! The KMS application: configuration, shared state, and the checks every operation shares
//! (key resolution, key policy, key state, rate limit).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cloister_attestation::{TrustAnchor, Verifier};

use crate::audit::AuditEntry;
use crate::error::{KmsError, Result};
use crate::policy::{Decision, KeyPolicy, RequestContext};
use crate::ratelimit::{AuditBudget, TokenBucket, Unaudited};
use crate::rootkey::RootKey;
use crate::state::{Alias, Flaw, KeyRecord, KeyState, Material, Principal, RowId, State};
use crate::store::{Store, Writer, now_ms};
use crate::unknown_keys::{self, UnknownKeys};

/// Unauthenticated requests audited one by one per second, unless configured otherwise.
pub const DEFAULT_UNAUTHENTICATED_AUDIT_RATE: f64 = 10.0;

/// A node of a shared store that has not been seen for this long no longer counts in the
/// division of the rate limit.
pub(crate) const NODE_WINDOW_MS: i64 = 7_000;

/// Longest access key id looked up in the store (AWS's are `\w+`, at most 128 characters).
const MAX_ACCESS_KEY_ID: usize = 128;

/// Whether `id` has the form of a key id: a UUID, or `mrk-` and 32 hex digits (a Multi-Region
/// key).
pub(crate) fn is_key_id(id: &str) -> bool {
    match id.strip_prefix("mrk-") {
        Some(hex) => hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => id.len() == 36 && uuid::Uuid::parse_str(id).is_ok(),
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The home region (SigV4 scope, ARNs): its keys and aliases are stored under their own
    /// ids and names, as before regions other than it were served.
    pub region: String,
    /// The other regions this deployment serves (`serve --replica-region`): a request signed
    /// for one of them sees that region's keys and aliases only.
    pub replica_regions: Vec<String>,
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
    /// Serializes this node's read-modify-write of the state (see [`App::mutate`]).
    mutate: tokio::sync::Mutex<()>,
    /// Coordination with the other nodes of a shared store (None: SQLite, one node).
    shared: Option<SharedNode>,
    /// This process's name among the nodes of a shared store.
    node_id: String,
    /// Attestation verifier: the AWS root plus `--trust-root`s, with a chain cache.
    pub(crate) verifier: Verifier,
    /// Derived SigV4 signing keys, one per principal and day.
    pub(crate) signing_keys: cloister_sigv4::SigningKeyCache,
    limiter: Option<Mutex<TokenBucket>>,
    /// A read-only connection, for principals added while the server runs.
    reader: Mutex<Store>,
    /// Access key ids recently not found in the store.
    unknown_keys: Mutex<UnknownKeys>,
    /// How many unauthenticated requests are audited one by one.
    unauthenticated_audit: Mutex<AuditBudget>,
}

/// A node of a store shared with other nodes (PostgreSQL): see `store/shared.rs`.
struct SharedNode {
    /// The connection that holds the store-wide mutation lock while this node changes the state.
    lock: Mutex<Store>,
    /// Requests that asked for a freshness check, and those a finished check covers: one read of
    /// the store's generation serves every request that arrived before it began.
    tickets: std::sync::atomic::AtomicU64,
    checked: std::sync::atomic::AtomicU64,
    check: tokio::sync::Mutex<()>,
}

/// This node may change the state: its own changes are serialized, and on a shared store no
/// other node changes it until this is dropped (the store-wide lock is released first).
pub(crate) struct Mutation<'a> {
    shared: Option<&'a SharedNode>,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.shared {
            let lock = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = lock.unlock_mutations() {
                // The lock lives in the connection's session: a lost connection released it.
                tracing::warn!("store: cannot release the mutation lock: {e}");
            }
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application over the store in `data_dir` that [`Store::init`] opened. Stored
    /// rows that fail their integrity check are logged and audited (`IntegrityCheck`), and
    /// refused whenever a request names them; the rest is served.
    pub fn new(cfg: Config, root: RootKey, store: Store, data_dir: &Path) -> Result<Self> {
        let state = store.load(&root)?;
        let reader = store.reopen(true)?;
        let shared = match store.is_shared() {
            false => None,
            true => Some(SharedNode {
                lock: Mutex::new(store.reopen(false)?),
                tickets: Default::default(),
                checked: Default::default(),
                check: tokio::sync::Mutex::new(()),
            }),
        };
        let writer = store.start_writer(&root, data_dir)?;
        let mut anchors = vec![TrustAnchor::aws_nitro_root_g1()];
        anchors.extend(cfg.trust_roots.iter().cloned());
        let limiter = cfg.rate.map(|r| Mutex::new(TokenBucket::new(r)));
        let mut tampered: Vec<(RowId, Flaw)> = state
            .tampered
            .iter()
            .map(|(r, f)| (r.clone(), *f))
            .collect();
        tampered.sort_by(|a, b| a.0.cmp(&b.0));
        let app = Self {
            verifier: Verifier::new(anchors).with_chain_cache(1024),
            signing_keys: cloister_sigv4::SigningKeyCache::new(1024),
            cfg,
            root,
            state: RwLock::new(state),
            writer,
            mutate: tokio::sync::Mutex::new(()),
            shared,
            node_id: uuid::Uuid::new_v4().to_string(),
            limiter,
            reader: Mutex::new(reader),
            unknown_keys: Mutex::new(UnknownKeys::new(unknown_keys::CAPACITY, unknown_keys::TTL)),
            unauthenticated_audit: Mutex::new(AuditBudget::new(DEFAULT_UNAUTHENTICATED_AUDIT_RATE)),
        };
        for (row, flaw) in &tampered {
            app.report_tampered(row, *flaw)?;
        }
        Ok(app)
    }

    /// The refusal for a request naming a stored row that failed its integrity check.
    fn tampered(&self, row: &RowId, flaw: Flaw) -> KmsError {
        let what = match row {
            RowId::Key(id) => format!("key {}", self.key_arn(id)),
            RowId::Alias(name) => format!("alias {}", self.alias_arn(name)),
            RowId::Principal(id) => format!("access key {id}"),
            RowId::Grant(id) => format!("grant {id}"),
            RowId::Secret(arn) | RowId::SecretVersion(arn) => format!("secret {arn}"),
            RowId::Parameter(arn) => format!("parameter {arn}"),
        };
        KmsError::Internal(format!(
            "error[KMS-INTEGRITY]: the stored record of {what} (table {}) failed its integrity check: {flaw}; it is refused until an operator restores it",
            flaw.table(row)
        ))
    }

    /// The refusal for a request naming the secret `arn` if its metadata or any of its versions
    /// failed its integrity check.
    pub(crate) fn secret_refused(&self, arn: &str) -> Option<KmsError> {
        let state = self.state();
        self.refused(&state, RowId::Secret(arn.to_owned()))
            .or_else(|| self.refused(&state, RowId::SecretVersion(arn.to_owned())))
    }

    /// The refusal for a request naming the parameter `arn` if its row failed its integrity
    /// check.
    pub(crate) fn parameter_refused(&self, arn: &str) -> Option<KmsError> {
        self.refused(&self.state(), RowId::Parameter(arn.to_owned()))
    }

    /// The refusal for `row` if its stored record failed its integrity check.
    fn refused(&self, state: &State, row: RowId) -> Option<KmsError> {
        state
            .tampered
            .get(&row)
            .map(|flaw| self.tampered(&row, *flaw))
    }

    /// Logs a stored row that failed its integrity check, and queues its `IntegrityCheck` audit
    /// entry.
    fn report_tampered(&self, row: &RowId, flaw: Flaw) -> Result<()> {
        let err = self.tampered(row, flaw);
        tracing::error!("{err}");
        self.writer.queue_audit(AuditEntry {
            time_ms: now_ms(),
            principal: "cloister-kms".into(),
            operation: "IntegrityCheck".into(),
            key_id: match row {
                RowId::Key(id) => Some(id.clone()),
                _ => None,
            },
            outcome: "error".into(),
            error: Some(err.aws_name().into()),
            reason: Some(err.to_string()),
            ..AuditEntry::default()
        })
    }

    /// Audits at most `rate` unauthenticated requests per second one by one; the others are
    /// counted and audited as one summary entry (see `server`).
    #[must_use]
    pub fn with_unauthenticated_audit_rate(self, rate: f64) -> Self {
        Self {
            unauthenticated_audit: Mutex::new(AuditBudget::new(rate)),
            ..self
        }
    }

    /// Whether an unauthenticated request arriving at `now_ms` gets its own audit entry; if
    /// not, it is counted for the next summary.
    pub(crate) fn admit_unauthenticated(&self, now_ms: i64) -> bool {
        self.unauthenticated_audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now_ms)
    }

    /// The unauthenticated requests counted and not yet summarized, if any.
    pub(crate) fn take_unaudited(&self) -> Option<Unaudited> {
        self.unauthenticated_audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_unaudited()
    }

    /// Takes the right to change the state: waits for this node's other changes and, on a
    /// shared store, for every other node's, then brings the state up to date with the store,
    /// so what the change reads is what the store holds.
    pub(crate) async fn mutate(&self) -> Result<Mutation<'_>> {
        let local = self.mutate.lock().await;
        let Some(shared) = &self.shared else {
            return Ok(Mutation {
                shared: None,
                _local: local,
            });
        };
        shared
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lock_mutations()?;
        let guard = Mutation {
            shared: Some(shared),
            _local: local,
        };
        self.refresh()?;
        Ok(guard)
    }

    /// On a shared store, brings the state up to date with every change committed before this
    /// request arrived (one read of the store's generation per batch of requests; a reload only
    /// when another node changed something). Nothing on SQLite.
    pub(crate) async fn sync(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let ticket = shared.tickets.fetch_add(1, SeqCst) + 1;
        let _check = shared.check.lock().await;
        if shared.checked.load(SeqCst) >= ticket {
            return Ok(());
        }
        let covers = shared.tickets.load(SeqCst);
        let stored = self.reader().generation()?;
        if Some(stored) != self.writer.generation().map(|g| g.known()) {
            // No change of this node is half applied while the state is replaced.
            let _local = self.mutate.lock().await;
            self.refresh()?;
        }
        shared.checked.store(covers, SeqCst);
        Ok(())
    }

    /// Reloads the state if the store's generation is not the one it reflects (the caller holds
    /// `mutate`). Rows newly found tampered with are reported.
    fn refresh(&self) -> Result<()> {
        let Some(generation) = self.writer.generation() else {
            return Ok(());
        };
        let Some((stored, state)) = self
            .reader()
            .load_if_changed(&self.root, generation.known())?
        else {
            return Ok(());
        };
        let mut new: Vec<(RowId, Flaw)> = {
            let old = self.state();
            state
                .tampered
                .iter()
                .filter(|(row, _)| !old.tampered.contains_key(row))
                .map(|(r, f)| (r.clone(), *f))
                .collect()
        };
        new.sort_by(|a, b| a.0.cmp(&b.0));
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        generation.set(stored);
        tracing::debug!(
            generation = stored,
            "state reloaded: another node changed the store"
        );
        for (row, flaw) in &new {
            self.report_tampered(row, *flaw)?;
        }
        Ok(())
    }

    /// The connection for reads outside the writer.
    fn reader(&self) -> std::sync::MutexGuard<'_, Store> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read access to the in-memory state.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change to the in-memory state (after it was persisted).
    pub(crate) fn apply(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// Whether this deployment serves `region` (its home region or a `--replica-region`).
    pub(crate) fn serves(&self, region: &str) -> bool {
        region == self.cfg.region || self.cfg.replica_regions.iter().any(|r| r == region)
    }

    /// The id a key or alias is stored and held in memory under: its id (or name) in the home
    /// region, `<region>/<id>` in another region (Multi-Region replicas share their `mrk-` id
    /// across regions, so the region is part of a key's identity).
    pub(crate) fn storage_id(&self, region: &str, id: &str) -> String {
        if region == self.cfg.region {
            id.to_owned()
        } else {
            format!("{region}/{id}")
        }
    }

    /// The region and the public id (or alias name) of a storage id.
    pub(crate) fn split_storage_id<'a>(&'a self, storage_id: &'a str) -> (&'a str, &'a str) {
        match storage_id.split_once('/') {
            // Alias names start with `alias/`; no region is named `alias`.
            Some((region, id)) if region != "alias" => (region, id),
            _ => (&self.cfg.region, storage_id),
        }
    }

    /// The public key id (or alias name) of a storage id.
    pub(crate) fn public_id<'a>(&'a self, storage_id: &'a str) -> &'a str {
        self.split_storage_id(storage_id).1
    }

    /// `arn:aws:kms:<region>:<account>:key/<id>` of the key stored as `key_id`.
    pub(crate) fn key_arn(&self, key_id: &str) -> String {
        let (region, id) = self.split_storage_id(key_id);
        format!("arn:aws:kms:{region}:{}:key/{id}", self.cfg.account)
    }

    /// `arn:aws:kms:<region>:<account>:<alias/name>` of the alias stored as `name`.
    pub(crate) fn alias_arn(&self, name: &str) -> String {
        let (region, name) = self.split_storage_id(name);
        format!("arn:aws:kms:{region}:{}:{name}", self.cfg.account)
    }

    /// Finds a principal by access key id: memory first, then the store (for principals added by
    /// `cloister-kms principal add` while the server runs), reading and opening only that
    /// principal's row. A principal whose stored record failed its integrity check is refused
    /// (and reported when first seen). An id the store did not have is remembered as unknown for
    /// [`unknown_keys::TTL`], so a principal added after its id was tried is found after that
    /// at worst; ids that cannot be access key ids are never looked up.
    pub(crate) fn principal(&self, access_key_id: &str) -> Result<Option<Principal>> {
        {
            let state = self.state();
            if let Some(p) = state.principals.get(access_key_id) {
                return Ok(Some(p.clone()));
            }
            let row = RowId::Principal(access_key_id.to_owned());
            if let Some(refusal) = self.refused(&state, row) {
                return Err(refusal);
            }
        }
        if access_key_id.is_empty()
            || access_key_id.len() > MAX_ACCESS_KEY_ID
            || !access_key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Ok(None);
        }
        let row = RowId::Principal(access_key_id.to_owned());
        let unknown = || {
            self.unknown_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if unknown().contains(access_key_id, Instant::now()) {
            return Ok(None);
        }
        let checked = self.reader().checked_principal(&self.root, access_key_id)?;
        if let Some((_, flaw)) = checked.flawed.into_iter().next() {
            let mut new = false;
            self.apply(|s| {
                new = s.tampered.insert(row.clone(), flaw).is_none();
            });
            if new {
                self.report_tampered(&row, flaw)?;
            }
            return Err(self.tampered(&row, flaw));
        }
        match checked.rows.into_iter().next() {
            Some(p) => {
                unknown().remove(access_key_id);
                self.apply(|s| {
                    s.principals.insert(p.access_key_id.clone(), p.clone());
                });
                Ok(Some(p))
            }
            None => {
                unknown().insert(access_key_id, Instant::now());
                Ok(None)
            }
        }
    }

    /// Resolves a key id or key ARN (and, if `aliases`, an alias name or alias ARN) as a request
    /// in `region` names it, to the key's storage id, with AWS's answers: an ARN of another
    /// region is `Invalid arn <region>`, a key id of no key's form `Invalid keyId '<id>'`, a
    /// well-formed one that names no key `Key '<arn>' does not exist` (NotFoundException each).
    /// Operations whose KeyId is "key ID or key ARN" pass `aliases: false`: an alias is then not
    /// a key id.
    pub(crate) fn resolve_in(&self, region: &str, key_ref: &str, aliases: bool) -> Result<String> {
        let local = if key_ref.starts_with("arn:") {
            let parts: Vec<&str> = key_ref.splitn(6, ':').collect();
            if parts.len() != 6 || parts[1] != "aws" || parts[2] != "kms" {
                return Err(KmsError::InvalidArn(format!(
                    "{key_ref} is not a valid KMS ARN"
                )));
            }
            if parts[3] != region {
                return Err(KmsError::NotFound(format!("Invalid arn {}", parts[3])));
            }
            if parts[4] != self.cfg.account {
                return Err(KmsError::NotFound(format!(
                    "Key '{key_ref}' does not exist"
                )));
            }
            let rest = parts[5];
            if !aliases && rest.starts_with("alias/") {
                return Err(KmsError::NotFound(format!("Invalid keyId '{key_ref}'")));
            }
            rest
        } else {
            key_ref
        };
        let state = self.state();
        if local.starts_with("alias/") {
            if !aliases {
                return Err(KmsError::NotFound(format!("Invalid keyId '{key_ref}'")));
            }
            let stored = self.storage_id(region, local);
            if let Some(a) = state.aliases.get(&stored) {
                return Ok(a.key_id.clone());
            }
            return Err(self
                .refused(&state, RowId::Alias(stored.clone()))
                .unwrap_or_else(|| {
                    KmsError::NotFound(format!("Alias '{}' is not found.", self.alias_arn(&stored)))
                }));
        }
        let id = if key_ref.starts_with("arn:") {
            local
                .strip_prefix("key/")
                .ok_or_else(|| KmsError::NotFound(format!("Invalid arn {region}")))?
        } else {
            local
        };
        if !is_key_id(id) {
            return Err(KmsError::NotFound(format!("Invalid keyId '{id}'")));
        }
        let stored = self.storage_id(region, id);
        if state.keys.contains_key(&stored) {
            Ok(stored)
        } else {
            Err(self
                .refused(&state, RowId::Key(stored.clone()))
                .unwrap_or_else(|| {
                    KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(&stored)))
                }))
        }
    }

    /// The key record for a storage id (after [`App::resolve_in`]).
    pub(crate) fn key(&self, key_id: &str) -> Result<KeyRecord> {
        let state = self.state();
        if let Some(k) = state.keys.get(key_id) {
            return Ok(k.clone());
        }
        Err(self
            .refused(&state, RowId::Key(key_id.to_owned()))
            .unwrap_or_else(|| {
                KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(key_id)))
            }))
    }

    /// The alias named `name`: `None` if there is none, refused if its stored record failed its
    /// integrity check.
    pub(crate) fn alias(&self, name: &str) -> Result<Option<Alias>> {
        let state = self.state();
        if let Some(a) = state.aliases.get(name) {
            return Ok(Some(a.clone()));
        }
        self.refused(&state, RowId::Alias(name.to_owned()))
            .map_or(Ok(None), Err)
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
    ) -> (Decision, HashMap<String, Vec<String>>) {
        conditions.insert("kms:calleraccount".into(), vec![self.cfg.account.clone()]);
        conditions.insert("aws:principalarn".into(), vec![principal.arn.clone()]);
        let arn = self.key_arn(key_id);
        let req = RequestContext {
            principal_arn: &principal.arn,
            action,
            resource: &arn,
            conditions,
        };
        (policy.evaluate(&req), req.conditions)
    }

    /// Checks the key policy, then the key's grants, for `action` with condition keys
    /// `conditions`. AWS's evaluation: an explicit Deny in the key policy refuses whatever a
    /// grant allows (so a policy's attestation Deny binds grantees too); otherwise the policy
    /// or a grant naming the caller, with the operation, whose constraints hold, allows.
    pub(crate) fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        key: &KeyRecord,
        mut conditions: HashMap<String, Vec<String>>,
    ) -> Result<()> {
        let arn = self.key_arn(&key.key_id);
        conditions.extend(crate::ops::resource_conditions(&key.attrs));
        let (decision, for_grants) =
            self.decide(&key.policy, principal, action, &key.key_id, conditions);
        match decision {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {arn} with an explicit deny in a resource-based policy",
                principal.arn
            ))),
            Decision::ImplicitDeny if self.granted(principal, action, key, &for_grants) => Ok(()),
            Decision::ImplicitDeny => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {arn} because no resource-based policy allows the {action} action",
                principal.arn
            ))),
        }
    }

    /// Whether a grant on `key` lets `principal` perform `action` for a request with condition
    /// keys `conditions`. A stored body that does not parse grants nothing (it was MAC'd when
    /// written, so this is a bug, logged).
    fn granted(
        &self,
        principal: &Principal,
        action: &str,
        key: &KeyRecord,
        conditions: &HashMap<String, Vec<String>>,
    ) -> bool {
        self.state()
            .grants
            .values()
            .filter(|g| g.key_id == key.key_id)
            .any(|g| match crate::grants::GrantBody::parse(&g.body) {
                Ok(body) => body.allows(&principal.arn, action, conditions),
                Err(e) => {
                    tracing::error!(grant = %g.grant_id, "{e}");
                    false
                }
            })
    }

    /// Refuses cryptographic use of a key that is not Enabled.
    pub(crate) fn check_usable(&self, key: &KeyRecord) -> Result<()> {
        crate::ops::refuse_expired(self, key)?;
        match key.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!(
                "{} is disabled.",
                self.key_arn(&key.key_id)
            ))),
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => {
                self.refuse_pending(key)
            }
            KeyState::PendingImport => Err(KmsError::InvalidState(format!(
                "{} is pending import.",
                self.key_arn(&key.key_id)
            ))),
        }
    }

    /// Refuses any change to a key pending deletion, or pending the deletion of its replicas
    /// (KMSInvalidStateException).
    pub(crate) fn refuse_pending(&self, key: &KeyRecord) -> Result<()> {
        let what = match key.state {
            KeyState::PendingDeletion => "pending deletion",
            KeyState::PendingReplicaDeletion => "pending replica deletion",
            _ => return Ok(()),
        };
        Err(KmsError::InvalidState(format!(
            "{} is {what}.",
            self.key_arn(&key.key_id)
        )))
    }

    /// Version `version` of a SYMMETRIC_DEFAULT key's material (InvalidCiphertext if there is
    /// none: the version came from a ciphertext).
    pub(crate) fn material(
        &self,
        key_id: &str,
        version: u32,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        let m = self.key_material(key_id, version)?;
        let bytes: [u8; 32] = m
            .as_slice()
            .try_into()
            .map_err(|_| KmsError::InvalidCiphertext(String::new()))?;
        Ok(zeroize::Zeroizing::new(bytes))
    }

    /// Version `version` of any key's material (InvalidCiphertext if there is none).
    pub(crate) fn key_material(&self, key_id: &str, version: u32) -> Result<Material> {
        self.state()
            .material
            .get(&(key_id.to_owned(), version))
            .cloned()
            .ok_or_else(|| KmsError::InvalidCiphertext(String::new()))
    }

    /// On a shared store: records this node as alive and divides the service's rate limit
    /// (`Config::rate`) evenly among the nodes seen alive within [`NODE_WINDOW_MS`]; returns
    /// how many. The server calls it every few seconds. One node (SQLite): nothing, 1.
    pub fn heartbeat(&self) -> Result<u32> {
        if self.shared.is_none() {
            return Ok(1);
        }
        let nodes = self
            .reader()
            .heartbeat(&self.node_id, now_ms(), NODE_WINDOW_MS)?;
        if let (Some(l), Some(rate)) = (&self.limiter, self.cfg.rate) {
            l.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_rate(rate / f64::from(nodes));
        }
        Ok(nodes)
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
            && self
                .decide(
                    &policy,
                    principal,
                    "kms:PutKeyPolicy",
                    key_id,
                    HashMap::new(),
                )
                .0
                != Decision::Allow
        {
            return Err(KmsError::MalformedPolicy(
                "The new key policy will not allow you to update the key policy in the future."
                    .into(),
            ));
        }
        for finding in policy.check().findings() {
            tracing::warn!(key = %self.key_arn(key_id), by = %principal.arn, "key policy: {finding}");
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &Path) -> App {
        let cfg = Config {
            region: "us-east-1".into(),
            replica_regions: Vec::new(),
            account: "111122223333".into(),
            max_attestation_age: Duration::from_secs(300),
            rate: None,
            trust_roots: Vec::new(),
        };
        let (root, store) = Store::init(dir, &cfg.account).unwrap();
        App::new(cfg, root, store, dir).unwrap()
    }

    fn sql(dir: &Path, statement: &str) {
        rusqlite::Connection::open(dir.join("kms.sqlite3"))
            .unwrap()
            .execute_batch(statement)
            .unwrap();
    }

    #[test]
    fn a_principal_added_while_serving_is_found_by_its_row_alone() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let (root, store) = Store::init(dir.path(), "111122223333").unwrap();
        let broken = store
            .add_principal(&root, "arn:aws:iam::1:role/broken")
            .unwrap();
        let added = store
            .add_principal(&root, "arn:aws:iam::1:role/added")
            .unwrap();
        // Another principal's row no longer opens: looking up `added` must not read it.
        sql(
            dir.path(),
            &format!(
                "UPDATE principals SET sealed_secret = x'00' WHERE access_key_id = '{}'",
                broken.access_key_id()
            ),
        );
        let found = app.principal(added.access_key_id()).unwrap().unwrap();
        assert_eq!(found.secret(), added.secret());
        assert!(app.principal(broken.access_key_id()).is_err());
    }

    #[test]
    fn unknown_access_key_ids_are_not_looked_up_again_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let unknown = "AKIAUNKNOWNUNKNOWN00";
        assert!(app.principal(unknown).unwrap().is_none());
        // From now on any store lookup fails: the ids answered come from memory.
        sql(dir.path(), "ALTER TABLE principals RENAME TO gone");
        assert!(
            app.principal("AKIAOTHERUNKNOWN0000").is_err(),
            "a lookup fails"
        );
        for _ in 0..3 {
            assert!(app.principal(unknown).unwrap().is_none());
        }
        // Ids that cannot be access key ids are never looked up.
        for id in ["", "AKIA/../x", &"A".repeat(129)] {
            assert!(app.principal(id).unwrap().is_none(), "{id}");
        }
    }
}
