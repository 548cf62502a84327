//! The grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant,
//! as AWS's API reference describes them. Whether a grant allows a request is decided in
//! `App::authorize` (with [`crate::grants`]); here grants are made, listed and deleted.
//!
//! CreateGrant is authorized by the key policy (or a grant allowing CreateGrant) with AWS's
//! condition keys `kms:GrantOperations`, `kms:GranteePrincipal`, `kms:RetiringPrincipal`,
//! `kms:GrantConstraintType` and `kms:GrantIsForAWSResource` (always false here: no AWS service
//! calls this KMS). RetireGrant is authorized by the grant itself; RevokeGrant and ListGrants by
//! the key policy; ListRetirableGrants (an IAM permission in AWS, and this KMS has no IAM) lists
//! a principal's retirable grants to that principal or the account.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{Call, MAX_KEY_ID, PageInput, page, paged, random_bytes, secs};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::grants::{self, Constraints, GrantBody, GrantOperation, MAX_TOKEN, NEW_CONSTRAINTS_KEY};
use crate::input::{Map, Member, Structure};
use crate::keyspec::KeySpec;
use crate::state::{GrantRow, KeyRecord};
use crate::store::now_ms;

/// Most grants on one key (AWS's quota "Grants per KMS key").
const MAX_GRANTS_PER_KEY: usize = 50_000;
/// Most grant tokens in `GrantTokens`.
const MAX_GRANT_TOKENS: usize = 10;
/// Most pairs in one constraint, and longest value (API reference, CreateGrant `Constraints`).
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE: usize = 384;
/// Longest principal ARN (`PrincipalIdType`).
const MAX_PRINCIPAL: usize = 256;
/// Longest grant id (`GrantIdType`).
const MAX_GRANT_ID: usize = 128;

/// `Constraints` of CreateGrant's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ConstraintsInput {
    encryption_context_equals: Member<Map>,
    encryption_context_subset: Member<Map>,
}

/// CreateGrant's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct CreateGrantInput {
    key_id: Member<String>,
    grantee_principal: Member<String>,
    retiring_principal: Member<String>,
    operations: Member<Vec<String>>,
    constraints: Member<Structure<ConstraintsInput>>,
    grant_tokens: Member<Vec<String>>,
    name: Member<String>,
    dry_run: Member<bool>,
}

/// ListGrants' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListGrantsInput {
    key_id: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
    grant_id: Member<String>,
    grantee_principal: Member<String>,
    grant_tokens: Member<Vec<String>>,
}

/// ListRetirableGrants' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListRetirableInput {
    retiring_principal: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
}

/// RetireGrant's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct RetireGrantInput {
    grant_token: Member<String>,
    key_id: Member<String>,
    grant_id: Member<String>,
    dry_run: Member<bool>,
}

/// RevokeGrant's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct RevokeGrantInput {
    key_id: Member<String>,
    grant_id: Member<String>,
    dry_run: Member<bool>,
}

impl CreateGrantInput {
    /// Checks every token of `GrantTokens` (for `decode`, and so for the fuzz target).
    pub(super) fn check_tokens(&self) -> Result<()> {
        grant_tokens(&self.grant_tokens)
    }
}

impl ListGrantsInput {
    /// Checks every token of `GrantTokens`.
    pub(super) fn check_tokens(&self) -> Result<()> {
        grant_tokens(&self.grant_tokens)
    }
}

impl RetireGrantInput {
    /// Checks `GrantToken`, if given.
    pub(super) fn check_tokens(&self) -> Result<()> {
        match self.grant_token.text("GrantToken")? {
            Some(t) => retire_token(t).map(drop),
            None => Ok(()),
        }
    }
}

fn validation(detail: impl std::fmt::Display) -> KmsError {
    KmsError::validation(detail)
}

/// `GrantTokens`: at most 10, each 1 to 8192 characters, each a token this KMS made
/// (InvalidGrantTokenException otherwise). The grants they name need no waiting for: this KMS
/// is strongly consistent.
fn grant_tokens(member: &Member<Vec<String>>) -> Result<()> {
    let tokens = match member {
        Member::Absent => return Ok(()),
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "GrantTokens must be a list of strings".into(),
            ));
        }
        Member::Given(t) => t,
    };
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(validation(format!(
            "Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to {MAX_GRANT_TOKENS}"
        )));
    }
    for t in tokens {
        if t.is_empty() || t.chars().count() > MAX_TOKEN {
            return Err(validation(format!(
                "Value at 'grantTokens' failed to satisfy constraint: Member must satisfy constraint: [Member must have length between 1 and {MAX_TOKEN}]"
            )));
        }
        grants::token_grant_id(t)?;
    }
    Ok(())
}

/// RetireGrant's `GrantToken`: 1 to 8192 characters, a token this KMS made.
fn retire_token(t: &str) -> Result<String> {
    if t.is_empty() || t.chars().count() > MAX_TOKEN {
        return Err(validation(format!(
            "Value at 'grantToken' failed to satisfy constraint: Member must have length between 1 and {MAX_TOKEN}"
        )));
    }
    grants::token_grant_id(t)
}

/// A principal member: 1 to 256 characters of `[\w+=,.@:/-]`.
fn principal<'a>(member: &'a Member<String>, name: &str) -> Result<Option<&'a str>> {
    let Some(p) = member.text(name)? else {
        return Ok(None);
    };
    let field = lower_first(name);
    if p.is_empty() || p.chars().count() > MAX_PRINCIPAL {
        return Err(validation(format!(
            "Value '{p}' at '{field}' failed to satisfy constraint: Member must have length between 1 and {MAX_PRINCIPAL}"
        )));
    }
    if !p
        .chars()
        .all(|c| c.is_alphanumeric() || "_+=,.@:/-".contains(c))
    {
        return Err(validation(format!(
            "Value '{p}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$"
        )));
    }
    Ok(Some(p))
}

fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// A grant id member: 1 to 128 characters; a grant id this KMS made is 64 hex digits, anything
/// else is InvalidGrantIdException.
fn grant_id(member: &Member<String>) -> Result<Option<&str>> {
    let Some(id) = member.text("GrantId")? else {
        return Ok(None);
    };
    if id.is_empty() || id.chars().count() > MAX_GRANT_ID {
        return Err(validation(format!(
            "Value '{id}' at 'grantId' failed to satisfy constraint: Member must have length between 1 and {MAX_GRANT_ID}"
        )));
    }
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KmsError::InvalidGrantId(format!(
            "Grant id '{id}' is not valid"
        )));
    }
    Ok(Some(id))
}

/// `Operations`: required, at least one, each one of AWS's `GrantOperation` values.
fn operations(member: &Member<Vec<String>>) -> Result<Vec<GrantOperation>> {
    let list = match member {
        Member::Absent => {
            return Err(validation(
                "Value null at 'operations' failed to satisfy constraint: Member must not be null",
            ));
        }
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "Operations must be a list of strings".into(),
            ));
        }
        Member::Given(l) => l,
    };
    if list.is_empty() {
        return Err(validation(
            "Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let mut ops = BTreeSet::new();
    for o in list {
        let op = GrantOperation::parse(o).ok_or_else(|| {
            let all: Vec<&str> = GrantOperation::ALL.iter().map(|o| o.as_str()).collect();
            validation(format!(
                "Value '[{}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                list.join(", "),
                all.join(", ")
            ))
        })?;
        ops.insert(op);
    }
    Ok(ops.into_iter().collect())
}

/// One constraint map: at most 8 pairs, values at most 384 characters.
fn constraint_map(member: &Member<Map>, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    if matches!(member, Member::Absent) {
        return Ok(None);
    }
    let map = member.context(name)?;
    if map.len() > MAX_CONSTRAINT_PAIRS {
        return Err(validation(format!(
            "Value at 'constraints.{}' failed to satisfy constraint: Member must have length less than or equal to {MAX_CONSTRAINT_PAIRS}",
            lower_first(name)
        )));
    }
    if let Some((k, _)) = map
        .iter()
        .find(|(_, v)| v.chars().count() > MAX_CONSTRAINT_VALUE)
    {
        return Err(validation(format!(
            "Value at 'constraints.{}' (key '{k}') failed to satisfy constraint: Member must have length less than or equal to {MAX_CONSTRAINT_VALUE}",
            lower_first(name)
        )));
    }
    Ok(Some(map))
}

fn constraints(member: &Member<Structure<ConstraintsInput>>) -> Result<Option<Constraints>> {
    let Some(c) = member.structure("Constraints")? else {
        return Ok(None);
    };
    let c = Constraints {
        encryption_context_equals: constraint_map(
            &c.encryption_context_equals,
            "EncryptionContextEquals",
        )?,
        encryption_context_subset: constraint_map(
            &c.encryption_context_subset,
            "EncryptionContextSubset",
        )?,
    };
    Ok((!c.is_empty()).then_some(c))
}

/// `Name`: 1 to 256 characters of `[a-zA-Z0-9:/_-]`.
fn name(member: &Member<String>) -> Result<Option<&str>> {
    let Some(n) = member.text("Name")? else {
        return Ok(None);
    };
    if n.is_empty() || n.chars().count() > 256 {
        return Err(validation(format!(
            "Value '{n}' at 'name' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    if !n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
    {
        return Err(validation(format!(
            "Value '{n}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )));
    }
    Ok(Some(n))
}

/// The account root's ARN: the principal AWS lets retire any grant of the account.
fn account_root(app: &App) -> String {
    format!("arn:aws:iam::{}:root", app.cfg.account)
}

/// DryRunOperationException, AWS's answer to a DryRun request that would have succeeded.
pub(super) fn dry_run() -> KmsError {
    KmsError::DryRun("The request would have succeeded, but the DryRun option is set.".into())
}

/// A fresh grant token for `grant_id`.
fn new_token(grant_id: &str) -> Result<String> {
    let nonce = random_bytes(16)?;
    let mut n = [0u8; 16];
    n.copy_from_slice(&nonce);
    grants::token(grant_id, &n)
}

/// The grants of one key, parsed, by grant id.
fn grants_of(app: &App, key_id: &str) -> Result<Vec<(GrantRow, GrantBody)>> {
    app.state()
        .grants
        .values()
        .filter(|g| g.key_id == key_id)
        .map(|g| Ok((g.clone(), GrantBody::parse(&g.body)?)))
        .collect()
}

/// Refuses operations a grant may not carry for this key, and constraints on a key that takes
/// no encryption context (ValidationException, API reference CreateGrant and GrantConstraints).
fn check_for_key(
    app: &App,
    key: &KeyRecord,
    ops: &[GrantOperation],
    constraints: Option<&Constraints>,
) -> Result<()> {
    let invalid: Vec<&str> = ops
        .iter()
        .filter(|o| !o.valid_for(key.attrs.key_spec, key.attrs.key_usage))
        .map(|o| o.as_str())
        .collect();
    if !invalid.is_empty() {
        return Err(validation(format!(
            "Grant operations [{}] are not valid for {}, whose key spec is {} and key usage {}",
            invalid.join(", "),
            app.key_arn(&key.key_id),
            key.attrs.key_spec.as_str(),
            key.attrs.key_usage.as_str()
        )));
    }
    if constraints.is_some() && key.attrs.key_spec != KeySpec::SymmetricDefault {
        return Err(validation(format!(
            "Encryption context grant constraints are not valid for {}: its operations take no encryption context",
            app.key_arn(&key.key_id)
        )));
    }
    Ok(())
}

pub(super) async fn create_grant(mut call: Call<'_>) -> Result<Value> {
    let i: CreateGrantInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let grantee = principal(&i.grantee_principal, "GranteePrincipal")?.ok_or_else(|| {
        validation(
            "Value null at 'granteePrincipal' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let retiring = principal(&i.retiring_principal, "RetiringPrincipal")?;
    let ops = operations(&i.operations)?;
    let constraints = constraints(&i.constraints)?;
    let name = name(&i.name)?;
    i.check_tokens()?;
    let dry = i.dry_run.flag("DryRun")?;

    let mut conditions: HashMap<String, Vec<String>> = HashMap::new();
    conditions.insert(
        "kms:grantoperations".into(),
        ops.iter().map(|o| o.as_str().to_owned()).collect(),
    );
    conditions.insert("kms:granteeprincipal".into(), vec![grantee.to_owned()]);
    if let Some(r) = retiring {
        conditions.insert("kms:retiringprincipal".into(), vec![r.to_owned()]);
    }
    conditions.insert("kms:grantisforawsresource".into(), vec!["false".into()]);
    if let Some(c) = &constraints {
        let mut types = Vec::new();
        if c.encryption_context_equals.is_some() {
            types.push("EncryptionContextEquals".to_owned());
        }
        if c.encryption_context_subset.is_some() {
            types.push("EncryptionContextSubset".to_owned());
        }
        conditions.insert("kms:grantconstrainttype".into(), types);
    }
    let body = GrantBody {
        grantee_principal: grantee.to_owned(),
        retiring_principal: retiring.map(str::to_owned),
        operations: ops,
        constraints,
        name: name.map(str::to_owned),
        issuing_account: account_root(call.app),
    };
    conditions.insert(
        NEW_CONSTRAINTS_KEY.into(),
        vec![
            serde_json::to_string(&body.constraints.clone().unwrap_or_default())
                .unwrap_or_default(),
        ],
    );
    let key = call.key_for(key_ref, "kms:CreateGrant", conditions)?;
    call.app.refuse_pending(&key)?;
    check_for_key(call.app, &key, &body.operations, body.constraints.as_ref())?;
    if dry {
        return Err(dry_run());
    }

    let app = call.app;
    let _guard = app.mutate().await?;
    let existing = grants_of(app, &key.key_id)?;
    // AWS: a retried CreateGrant with the same Name and the same parameters makes no new grant
    // and answers the original GrantId (with a new token).
    if body.name.is_some()
        && let Some((row, _)) = existing.iter().find(|(_, b)| *b == body)
    {
        return Ok(json!({"GrantId": row.grant_id, "GrantToken": new_token(&row.grant_id)?}));
    }
    if existing.len() >= MAX_GRANTS_PER_KEY {
        return Err(KmsError::LimitExceeded(format!(
            "{} already has {MAX_GRANTS_PER_KEY} grants",
            app.key_arn(&key.key_id)
        )));
    }
    let grant_id = hex::encode(random_bytes(32)?.as_slice());
    let row = GrantRow {
        grant_id: grant_id.clone(),
        key_id: key.key_id.clone(),
        body: body.to_json()?,
        created_ms: now_ms(),
    };
    app.writer.put_grant(row.clone()).await?;
    app.apply(|s| {
        s.grants.insert(grant_id.clone(), row);
    });
    Ok(json!({"GrantId": grant_id, "GrantToken": new_token(&grant_id)?}))
}

/// A `GrantListEntry`.
fn entry(app: &App, row: &GrantRow, body: &GrantBody) -> Value {
    let mut e = json!({
        "KeyId": app.key_arn(&row.key_id),
        "GrantId": row.grant_id,
        "CreationDate": secs(row.created_ms),
        "GranteePrincipal": body.grantee_principal,
        "IssuingAccount": body.issuing_account,
        "Operations": body.operations.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
    });
    if let Some(n) = &body.name {
        e["Name"] = json!(n);
    }
    if let Some(r) = &body.retiring_principal {
        e["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = &body.constraints {
        let mut cj = json!({});
        if let Some(m) = &c.encryption_context_equals {
            cj["EncryptionContextEquals"] = json!(m);
        }
        if let Some(m) = &c.encryption_context_subset {
            cj["EncryptionContextSubset"] = json!(m);
        }
        e["Constraints"] = cj;
    }
    e
}

/// Grants in listing order: by creation, then id; the marker is the grant id.
fn listed(app: &App, mut grants: Vec<(GrantRow, GrantBody)>) -> Vec<(String, Value)> {
    grants.sort_by(|a, b| (a.0.created_ms, &a.0.grant_id).cmp(&(b.0.created_ms, &b.0.grant_id)));
    grants
        .iter()
        .map(|(row, body)| (row.grant_id.clone(), entry(app, row, body)))
        .collect()
}

/// ListGrants' and ListRetirableGrants' paging: Limit 1 to 100, 50 when absent (API reference).
fn page_input(limit: &Member<i64>, marker: &Member<String>) -> Result<PageInput> {
    let limit = limit.int_in("Limit", 1, 100)?.unwrap_or(50);
    Ok(PageInput {
        limit: Member::Given(limit),
        marker: marker.clone(),
    })
}

pub(super) fn list_grants(mut call: Call<'_>) -> Result<Value> {
    let i: ListGrantsInput = call.input()?;
    let paging = page_input(&i.limit, &i.marker)?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let only_id = grant_id(&i.grant_id)?;
    let only_grantee = principal(&i.grantee_principal, "GranteePrincipal")?;
    i.check_tokens()?;
    let key = call.key_for(key_ref, "kms:ListGrants", HashMap::new())?;
    let grants: Vec<_> = grants_of(call.app, &key.key_id)?
        .into_iter()
        .filter(|(row, body)| {
            only_id.is_none_or(|id| row.grant_id == id)
                && only_grantee.is_none_or(|p| body.grantee_principal == p)
        })
        .collect();
    let (items, next) = page(listed(call.app, grants), &paging)?;
    Ok(paged("Grants", items, next))
}

pub(super) fn list_retirable_grants(call: Call<'_>) -> Result<Value> {
    let i: ListRetirableInput = call.input()?;
    let paging = page_input(&i.limit, &i.marker)?;
    let retiring = principal(&i.retiring_principal, "RetiringPrincipal")?.ok_or_else(|| {
        validation(
            "Value null at 'retiringPrincipal' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let app = call.app;
    if call.principal.arn != retiring && call.principal.arn != account_root(app) {
        return Err(KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: kms:ListRetirableGrants for retiring principal {retiring}",
            call.principal.arn
        )));
    }
    let grants: Vec<(GrantRow, GrantBody)> = {
        let state = app.state();
        state
            .grants
            .values()
            .filter(|g| state.keys.contains_key(&g.key_id))
            .map(|g| Ok((g.clone(), GrantBody::parse(&g.body)?)))
            .collect::<Result<Vec<_>>>()?
    };
    let grants = grants
        .into_iter()
        .filter(|(_, b)| b.retiring_principal.as_deref() == Some(retiring))
        .collect();
    let (items, next) = page(listed(app, grants), &paging)?;
    Ok(paged("Grants", items, next))
}

/// Deletes a grant durably, then from memory.
async fn delete(app: &App, grant_id: &str) -> Result<()> {
    app.writer.delete_grant(grant_id.to_owned()).await?;
    app.apply(|s| {
        s.grants.remove(grant_id);
    });
    Ok(())
}

/// The grant `grant_id` on key `key_id`, or NotFoundException (as AWS answers for a grant id
/// that is well formed but names no grant of the key).
fn grant_on(app: &App, key_id: &str, grant_id: &str) -> Result<(GrantRow, GrantBody)> {
    let row = app
        .state()
        .grants
        .get(grant_id)
        .filter(|g| g.key_id == key_id)
        .cloned()
        .ok_or_else(|| {
            KmsError::NotFound(format!(
                "Grant ID {grant_id} not found for key {}",
                app.key_arn(key_id)
            ))
        })?;
    let body = GrantBody::parse(&row.body)?;
    Ok((row, body))
}

pub(super) async fn retire_grant(call: Call<'_>) -> Result<Value> {
    let i: RetireGrantInput = call.input()?;
    let token_id = match i.grant_token.text("GrantToken")? {
        Some(t) => Some(retire_token(t)?),
        None => None,
    };
    let key_ref = i.key_id.text("KeyId")?;
    if let Some(k) = key_ref
        && (k.is_empty() || k.chars().count() > MAX_KEY_ID)
    {
        return Err(validation(format!(
            "Value '{k}' at 'keyId' failed to satisfy constraint: Member must have length between 1 and {MAX_KEY_ID}"
        )));
    }
    let named_id = grant_id(&i.grant_id)?;
    let dry = i.dry_run.flag("DryRun")?;
    let app = call.app;
    let region = call.region;
    // AWS: the grant is named by its token, or by its key and grant id together.
    let (row, body) = match (token_id, key_ref, named_id) {
        (Some(id), _, _) => {
            let row = app
                .state()
                .grants
                .get(&id)
                .cloned()
                .ok_or_else(|| KmsError::NotFound(format!("Grant ID {id} not found")))?;
            if let Some(k) = key_ref
                && app.resolve_in(region, k, true)? != row.key_id
            {
                return Err(KmsError::NotFound(format!(
                    "Grant ID {id} not found for key {k}"
                )));
            }
            let body = GrantBody::parse(&row.body)?;
            (row, body)
        }
        (None, Some(k), Some(id)) => grant_on(app, &app.resolve_in(region, k, true)?, id)?,
        _ => {
            return Err(validation(
                "Either GrantToken, or both KeyId and GrantId, must be given",
            ));
        }
    };
    call.audit.key_id = Some(row.key_id.clone());
    // AWS, "Retiring and revoking grants": the retiring principal, the grantee if the grant
    // allows RetireGrant, and the account the grant was created in.
    let who = &call.principal.arn;
    let may = body.retiring_principal.as_deref() == Some(who.as_str())
        || (body.grantee_principal == *who
            && body.operations.contains(&GrantOperation::RetireGrant))
        || *who == account_root(app);
    if !may {
        return Err(KmsError::AccessDenied(format!(
            "User: {who} is not authorized to perform: kms:RetireGrant on grant {}",
            row.grant_id
        )));
    }
    if dry {
        return Err(dry_run());
    }
    let _guard = app.mutate().await?;
    delete(app, &row.grant_id).await?;
    Ok(json!({}))
}

pub(super) async fn revoke_grant(mut call: Call<'_>) -> Result<Value> {
    let i: RevokeGrantInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let id = grant_id(&i.grant_id)?.ok_or_else(|| {
        validation("Value null at 'grantId' failed to satisfy constraint: Member must not be null")
    })?;
    let dry = i.dry_run.flag("DryRun")?;
    let key = call.key_for(key_ref, "kms:RevokeGrant", HashMap::new())?;
    let app = call.app;
    let (row, _) = grant_on(app, &key.key_id, id)?;
    if dry {
        return Err(dry_run());
    }
    let _guard = app.mutate().await?;
    delete(app, &row.grant_id).await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::input::b64;
    use crate::ops::testkit::{ADMIN, Kms};

    const APP: &str = "arn:aws:iam::111122223333:role/app";
    const OTHER: &str = "arn:aws:iam::111122223333:role/other";

    fn err(r: &(u16, Value)) -> (u16, &str) {
        (r.0, r.1["__type"].as_str().unwrap_or("none"))
    }

    async fn grant(kms: &Kms, key: &str, grantee: &str, extra: Value) -> Value {
        let mut input = json!({"KeyId": key, "GranteePrincipal": grantee});
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        kms.ok("CreateGrant", input).await
    }

    // API reference: CreateGrant, RetireGrant, ListGrants; Developer Guide "Grants in AWS KMS".
    #[tokio::test]
    async fn a_grant_gives_its_operations_until_retired() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        let enc = json!({"KeyId": key, "Plaintext": b64(b"via grant")});
        let (status, body) = kms.call_as(&app, "Encrypt", enc.clone()).await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "AccessDeniedException")
        );
        let g = grant(
            &kms,
            &key,
            APP,
            json!({"Operations": ["Encrypt", "Decrypt"], "RetiringPrincipal": APP}),
        )
        .await;
        let id = g["GrantId"].as_str().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let token = g["GrantToken"].as_str().unwrap();
        let (status, ct) = kms.call_as(&app, "Encrypt", enc.clone()).await;
        assert_eq!(status, 200, "{ct}");
        let (status, pt) = kms
            .call_as(
                &app,
                "Decrypt",
                json!({"CiphertextBlob": ct["CiphertextBlob"]}),
            )
            .await;
        assert_eq!(status, 200, "{pt}");
        assert_eq!(Kms::blob(&pt["Plaintext"]), b"via grant");
        assert_eq!(kms.last_audit().principal, APP);
        // Operations the grant does not carry stay refused.
        let (_, body) = kms
            .call_as(
                &app,
                "GenerateDataKey",
                json!({"KeyId": key, "KeySpec": "AES_256"}),
            )
            .await;
        assert_eq!(body["__type"], "AccessDeniedException");
        let listed = kms.ok("ListGrants", json!({"KeyId": key})).await;
        let entry = &listed["Grants"][0];
        assert_eq!(entry["GrantId"], id);
        assert_eq!(entry["KeyId"], kms.key_arn(&key));
        assert_eq!(entry["GranteePrincipal"], APP);
        assert_eq!(entry["RetiringPrincipal"], APP);
        assert_eq!(entry["IssuingAccount"], ADMIN);
        assert_eq!(entry["Operations"], json!(["Decrypt", "Encrypt"]));
        assert_eq!(listed["Truncated"], false);
        // The retiring principal retires it by token; it is gone at once.
        let (status, _) = kms
            .call_as(&app, "RetireGrant", json!({"GrantToken": token}))
            .await;
        assert_eq!(status, 200);
        let (_, body) = kms.call_as(&app, "Encrypt", enc).await;
        assert_eq!(body["__type"], "AccessDeniedException");
        let listed = kms.ok("ListGrants", json!({"KeyId": key})).await;
        assert_eq!(listed["Grants"], json!([]));
        let again = kms
            .call_as(&app, "RetireGrant", json!({"GrantToken": token}))
            .await;
        assert_eq!(err(&again), (400, "NotFoundException"));
    }

    // API reference, GrantConstraints: the constraint binds operations taking a context.
    #[tokio::test]
    async fn constraints_bind_the_encryption_context() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        grant(
            &kms,
            &key,
            APP,
            json!({"Operations": ["GenerateDataKey", "DescribeKey"],
                   "Constraints": {"EncryptionContextSubset": {"Tenant": "acme"}}}),
        )
        .await;
        let gdk = |ec: Value| json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": ec});
        for (ec, ok) in [
            (json!({"tenant": "acme", "x": "y"}), true),
            (json!({"Tenant": "acme"}), true),
            (json!({"Tenant": "ACME"}), false),
            (json!({}), false),
            (json!({"other": "acme"}), false),
        ] {
            let (status, body) = kms.call_as(&app, "GenerateDataKey", gdk(ec.clone())).await;
            assert_eq!(status == 200, ok, "{ec}: {body}");
        }
        // DescribeKey takes no context: the constraint does not apply.
        let (status, _) = kms
            .call_as(&app, "DescribeKey", json!({"KeyId": key}))
            .await;
        assert_eq!(status, 200);
        let other = kms.new_key().await;
        grant(
            &kms,
            &other,
            APP,
            json!({"Operations": ["Encrypt"],
                   "Constraints": {"EncryptionContextEquals": {"a": "1"}}}),
        )
        .await;
        for (ec, ok) in [
            (json!({"A": "1"}), true),
            (json!({"a": "1", "b": "2"}), false),
            (json!({"a": "2"}), false),
        ] {
            let (status, _) = kms
                .call_as(
                    &app,
                    "Encrypt",
                    json!({"KeyId": other, "Plaintext": b64(b"x"), "EncryptionContext": ec}),
                )
                .await;
            assert_eq!(status == 200, ok, "{ec}");
        }
    }

    // Developer Guide, "Policy evaluation logic": an explicit Deny overrides any allow,
    // grants included.
    #[tokio::test]
    async fn an_explicit_deny_in_the_policy_beats_a_grant() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": APP}, "Action": "kms:Encrypt", "Resource": "*"}
        ]});
        kms.ok(
            "PutKeyPolicy",
            json!({"KeyId": key, "Policy": policy.to_string()}),
        )
        .await;
        grant(&kms, &key, APP, json!({"Operations": ["Encrypt"]})).await;
        let (_, body) = kms
            .call_as(
                &app,
                "Encrypt",
                json!({"KeyId": key, "Plaintext": b64(b"x")}),
            )
            .await;
        assert!(
            body["message"].as_str().unwrap().contains("explicit deny"),
            "{body}"
        );
    }

    // API reference, CreateGrant: Operations valid for the key type, constraints only on
    // symmetric keys, DryRun, GrantTokens, Name.
    #[tokio::test]
    async fn create_grant_refuses_what_aws_refuses() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let hmac = kms
            .ok(
                "CreateKey",
                json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
            )
            .await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let call = |input: Value| kms.call("CreateGrant", input);
        let base = |extra: Value| {
            let mut v = json!({"KeyId": key, "GranteePrincipal": APP, "Operations": ["Decrypt"]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = [
            (
                json!({"KeyId": hmac, "GranteePrincipal": APP, "Operations": ["Decrypt"]}),
                "ValidationException",
            ),
            (
                json!({"KeyId": hmac, "GranteePrincipal": APP, "Operations": ["GenerateMac"],
                    "Constraints": {"EncryptionContextSubset": {"a": "b"}}}),
                "ValidationException",
            ),
            (base(json!({"Operations": ["Sign"]})), "ValidationException"),
            (base(json!({"Operations": ["Nope"]})), "ValidationException"),
            (base(json!({"Operations": []})), "ValidationException"),
            (
                json!({"KeyId": key, "Operations": ["Decrypt"]}),
                "ValidationException",
            ),
            (
                base(json!({"GranteePrincipal": "bad principal!"})),
                "ValidationException",
            ),
            (base(json!({"Name": "no spaces"})), "ValidationException"),
            (
                base(json!({"GrantTokens": ["not-a-token"]})),
                "InvalidGrantTokenException",
            ),
            (
                base(json!({"GrantTokens": vec!["x"; 11]})),
                "ValidationException",
            ),
            (base(json!({"GrantTokens": [""]})), "ValidationException"),
            (
                base(json!({"Constraints": {"EncryptionContextEquals":
                (0..9).map(|i| (format!("k{i}"), "v".to_owned())).collect::<std::collections::BTreeMap<_, _>>()}})),
                "ValidationException",
            ),
            (base(json!({"KeyId": "no-such-key"})), "NotFoundException"),
        ];
        for (input, want) in cases {
            let r = call(input.clone()).await;
            assert_eq!(err(&r), (400, want), "{input}: {}", r.1);
        }
        // DryRun: AWS answers DryRunOperationException (HTTP 412) and creates nothing.
        let r = call(base(json!({"DryRun": true}))).await;
        assert_eq!(err(&r), (412, "DryRunOperationException"));
        let listed = kms.ok("ListGrants", json!({"KeyId": key})).await;
        assert_eq!(listed["Grants"], json!([]));
        // A token of this KMS is accepted in GrantTokens.
        let g = kms.ok("CreateGrant", base(json!({"Name": "n1"}))).await;
        let again = kms
            .ok(
                "CreateGrant",
                base(json!({"Name": "n1", "GrantTokens": [g["GrantToken"]]})),
            )
            .await;
        // Same Name, same parameters: the same grant, a new token.
        assert_eq!(again["GrantId"], g["GrantId"]);
        assert_ne!(again["GrantToken"], g["GrantToken"]);
        let other = kms
            .ok(
                "CreateGrant",
                base(json!({"Name": "n1", "Operations": ["Encrypt"]})),
            )
            .await;
        assert_ne!(other["GrantId"], g["GrantId"]);
        let unnamed = kms.ok("CreateGrant", base(json!({}))).await;
        let unnamed2 = kms.ok("CreateGrant", base(json!({}))).await;
        assert_ne!(unnamed["GrantId"], unnamed2["GrantId"]);
        // A pending-deletion key refuses grants (KMSInvalidStateException).
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": key, "PendingWindowInDays": 7}),
        )
        .await;
        let r = call(base(json!({}))).await;
        assert_eq!(err(&r), (400, "KMSInvalidStateException"));
    }

    // Developer Guide, "Retiring and revoking grants": who may retire; RevokeGrant by policy.
    #[tokio::test]
    async fn retire_and_revoke_are_authorized_as_aws_says() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        let other = kms.add_principal(OTHER);
        let plain = grant(&kms, &key, APP, json!({"Operations": ["Encrypt"]})).await;
        let retirable = grant(
            &kms,
            &key,
            APP,
            json!({"Operations": ["Encrypt", "RetireGrant"]}),
        )
        .await;
        let by_id = |g: &Value| json!({"KeyId": key, "GrantId": g["GrantId"]});
        // The grantee without RetireGrant, and a stranger, may not retire.
        for (who, g) in [(&app, &plain), (&other, &retirable)] {
            let r = kms.call_as(who, "RetireGrant", by_id(g)).await;
            assert_eq!(err(&r), (400, "AccessDeniedException"), "{}", r.1);
        }
        let r = kms
            .call_as(
                &app,
                "RetireGrant",
                json!({"GrantId": retirable["GrantId"]}),
            )
            .await;
        assert_eq!(err(&r), (400, "ValidationException"));
        let r = kms
            .call_as(&app, "RetireGrant", json!({"GrantToken": "bogus"}))
            .await;
        assert_eq!(err(&r), (400, "InvalidGrantTokenException"));
        let r = kms
            .call_as(&app, "RetireGrant", json!({"KeyId": key, "GrantId": "xyz"}))
            .await;
        assert_eq!(err(&r), (400, "InvalidGrantIdException"));
        let r = kms
            .call_as(
                &app,
                "RetireGrant",
                json!({"GrantToken": retirable["GrantToken"], "DryRun": true}),
            )
            .await;
        assert_eq!(err(&r), (412, "DryRunOperationException"));
        let (status, _) = kms.call_as(&app, "RetireGrant", by_id(&retirable)).await;
        assert_eq!(status, 200);
        // RevokeGrant needs kms:RevokeGrant in the key policy: the grantee has none.
        let r = kms.call_as(&app, "RevokeGrant", by_id(&plain)).await;
        assert_eq!(err(&r), (400, "AccessDeniedException"));
        kms.ok("RevokeGrant", by_id(&plain)).await;
        let r = kms.call("RevokeGrant", by_id(&plain)).await;
        assert_eq!(err(&r), (400, "NotFoundException"));
        let (_, body) = kms
            .call_as(
                &app,
                "Encrypt",
                json!({"KeyId": key, "Plaintext": b64(b"x")}),
            )
            .await;
        assert_eq!(body["__type"], "AccessDeniedException");
        // The account retires any grant.
        let g = grant(&kms, &key, APP, json!({"Operations": ["Encrypt"]})).await;
        kms.ok("RetireGrant", json!({"GrantToken": g["GrantToken"]}))
            .await;
    }

    // API reference, ListGrants and ListRetirableGrants: filters, Limit 1..100, Marker.
    #[tokio::test]
    async fn listing_filters_and_pages() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        let mut ids = Vec::new();
        for i in 0..5 {
            let grantee = if i % 2 == 0 { APP } else { OTHER };
            let g = grant(
                &kms,
                &key,
                grantee,
                json!({"Operations": ["Encrypt"], "RetiringPrincipal": APP}),
            )
            .await;
            ids.push(g["GrantId"].as_str().unwrap().to_owned());
        }
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut input = json!({"KeyId": key, "Limit": 2});
            if let Some(m) = &marker {
                input["Marker"] = json!(m);
            }
            let page = kms.ok("ListGrants", input).await;
            for g in page["Grants"].as_array().unwrap() {
                seen.push(g["GrantId"].as_str().unwrap().to_owned());
            }
            if page["Truncated"] == false {
                break;
            }
            marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
        }
        let (mut a, mut b) = (seen.clone(), ids.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let only = kms
            .ok("ListGrants", json!({"KeyId": key, "GranteePrincipal": APP}))
            .await;
        assert_eq!(only["Grants"].as_array().unwrap().len(), 3);
        let one = kms
            .ok("ListGrants", json!({"KeyId": key, "GrantId": ids[1]}))
            .await;
        assert_eq!(one["Grants"][0]["GranteePrincipal"], OTHER);
        for bad in [
            json!({"KeyId": key, "Limit": 101}),
            json!({"KeyId": key, "Limit": 0}),
        ] {
            let r = kms.call("ListGrants", bad).await;
            assert_eq!(err(&r), (400, "ValidationException"));
        }
        let r = kms
            .call("ListGrants", json!({"KeyId": key, "Marker": "nope"}))
            .await;
        assert_eq!(err(&r), (400, "InvalidMarkerException"));
        // ListGrants needs kms:ListGrants in the policy.
        let r = kms.call_as(&app, "ListGrants", json!({"KeyId": key})).await;
        assert_eq!(err(&r), (400, "AccessDeniedException"));
        // ListRetirableGrants: the retiring principal lists its own.
        let (status, mine) = kms
            .call_as(
                &app,
                "ListRetirableGrants",
                json!({"RetiringPrincipal": APP}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(mine["Grants"].as_array().unwrap().len(), 5);
        let r = kms
            .call_as(
                &app,
                "ListRetirableGrants",
                json!({"RetiringPrincipal": OTHER}),
            )
            .await;
        assert_eq!(err(&r), (400, "AccessDeniedException"));
        let none = kms
            .ok("ListRetirableGrants", json!({"RetiringPrincipal": OTHER}))
            .await;
        assert_eq!(none["Grants"], json!([]));
    }

    // Developer Guide, "Granting CreateGrant permission": a grantee with CreateGrant can create
    // only grants with its operations and constraints at least as strict; the key policy's
    // kms:GrantOperations / kms:GranteePrincipal conditions (Developer Guide, "AWS KMS condition
    // keys") bind CreateGrant.
    #[tokio::test]
    async fn create_grant_through_a_grant_and_policy_conditions() {
        let kms = Kms::new();
        let key = kms.new_key().await;
        let app = kms.add_principal(APP);
        grant(
            &kms,
            &key,
            APP,
            json!({"Operations": ["CreateGrant", "Decrypt"],
                   "Constraints": {"EncryptionContextSubset": {"t": "1"}}}),
        )
        .await;
        let child = |ops: Value, constraints: Value| json!({"KeyId": key, "GranteePrincipal": OTHER, "Operations": ops, "Constraints": constraints});
        let cases = [
            (
                child(
                    json!(["Decrypt"]),
                    json!({"EncryptionContextSubset": {"t": "1", "u": "2"}}),
                ),
                true,
            ),
            (
                child(
                    json!(["Decrypt"]),
                    json!({"EncryptionContextEquals": {"T": "1"}}),
                ),
                true,
            ),
            (child(json!(["Decrypt"]), json!({})), false),
            (
                child(
                    json!(["Decrypt"]),
                    json!({"EncryptionContextSubset": {"t": "2"}}),
                ),
                false,
            ),
            (
                child(
                    json!(["Encrypt"]),
                    json!({"EncryptionContextSubset": {"t": "1"}}),
                ),
                false,
            ),
        ];
        for (input, ok) in cases {
            let (status, body) = kms.call_as(&app, "CreateGrant", input.clone()).await;
            assert_eq!(status == 200, ok, "{input}: {body}");
        }
        // A policy allowing a role CreateGrant only of Decrypt, only to itself.
        let key2 = kms.new_key().await;
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": APP}, "Action": "kms:CreateGrant", "Resource": "*",
             "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]},
                           "StringEquals": {"kms:GranteePrincipal": APP},
                           "Bool": {"kms:GrantIsForAWSResource": "false"}}}
        ]});
        kms.ok(
            "PutKeyPolicy",
            json!({"KeyId": key2, "Policy": policy.to_string()}),
        )
        .await;
        for (grantee, ops, ok) in [
            (APP, json!(["Decrypt"]), true),
            (APP, json!(["Decrypt", "Encrypt"]), false),
            (OTHER, json!(["Decrypt"]), false),
        ] {
            let (status, body) = kms
                .call_as(
                    &app,
                    "CreateGrant",
                    json!({"KeyId": key2, "GranteePrincipal": grantee, "Operations": ops}),
                )
                .await;
            assert_eq!(status == 200, ok, "{grantee} {ops}: {body}");
        }
    }

    // Developer Guide, "Deleting KMS keys": deleting a key deletes its grants. A replica deleted
    // and made again in the same region gets the same storage id: the old replica's grants must
    // not come back with it (hostile review: they stayed in memory until a restart).
    #[tokio::test]
    async fn grants_of_a_deleted_replica_do_not_carry_over_to_its_successor() {
        let kms = Kms::new();
        let app = kms.add_principal(APP);
        let created = kms.ok("CreateKey", json!({"MultiRegion": true})).await;
        let id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"secret")}))
            .await["CiphertextBlob"]
            .clone();
        kms.ok(
            "ReplicateKey",
            json!({"KeyId": id, "ReplicaRegion": "us-west-2"}),
        )
        .await;
        kms.ok_in(
            "us-west-2",
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": APP, "Operations": ["Decrypt"]}),
        )
        .await;
        let decrypt = json!({"CiphertextBlob": ct});
        let (status, body) = kms
            .call_as_in(&app, "us-west-2", "Decrypt", decrypt.clone())
            .await;
        assert_eq!(status, 200, "{body}");
        kms.ok_in(
            "us-west-2",
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        let later = crate::store::now_ms() + 8 * super::super::shared::DAY_MS;
        let (_, deleted) = super::super::lifecycle::housekeeping(&kms.app, later)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert!(kms.app.state().grants.is_empty());
        kms.ok(
            "ReplicateKey",
            json!({"KeyId": id, "ReplicaRegion": "us-west-2"}),
        )
        .await;
        let listed = kms
            .ok_in("us-west-2", "ListGrants", json!({"KeyId": id}))
            .await;
        assert_eq!(listed["Grants"], json!([]));
        let (_, body) = kms.call_as_in(&app, "us-west-2", "Decrypt", decrypt).await;
        assert_eq!(body["__type"], "AccessDeniedException", "{body}");
    }
}
