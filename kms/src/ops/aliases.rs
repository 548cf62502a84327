//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. An alias names one key of its
//! own region (aliases of other regions than the home region are stored as `<region>/<name>`,
//! see `App::storage_id`); the names follow AWS's pattern and `alias/aws/` is reserved.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{Call, MAX_KEY_ID, PageInput, page, paged, secs};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::state::{Alias, KeyRecord};
use crate::store::now_ms;

/// CreateAlias's, UpdateAlias's and DeleteAlias's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct AliasInput {
    alias_name: Member<String>,
    target_key_id: Member<String>,
}

/// ListAliases's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListAliasesInput {
    key_id: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
}

/// AWS's checks of an alias name (CreateAlias, AliasName): the modelled pattern
/// `^[a-zA-Z0-9:/_-]+$` and length 1-256 (ValidationException), then the documented rule: "It can
/// contain only alphanumeric characters, forward slashes (/), underscores (_), and dashes (-).
/// The alias name cannot begin with alias/aws/" (InvalidAliasNameException; a colon passes the
/// pattern and fails the rule).
fn check_alias_name(name: &str) -> Result<()> {
    let valid = name.starts_with("alias/")
        && name.len() > "alias/".len()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-:".contains(&b));
    if !valid {
        return Err(KmsError::validation(format!(
            "Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )));
    }
    if name.contains(':') {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias name {name} is not valid: it can contain only alphanumeric characters, forward slashes (/), underscores (_), and dashes (-)"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} cannot begin with the reserved prefix alias/aws/"
        )));
    }
    Ok(())
}

/// The alias name of the input, as the name is given.
fn alias_name(i: &AliasInput) -> Result<String> {
    Ok(i.alias_name.required("AliasName", 256)?.to_owned())
}

/// The key `TargetKeyId` names: a key, not an alias, not pending deletion, `action` allowed.
fn alias_target(call: &mut Call<'_>, i: &AliasInput, action: &str) -> Result<KeyRecord> {
    let target = i.target_key_id.required("TargetKeyId", MAX_KEY_ID)?;
    if target.starts_with("alias/") || target.contains(":alias/") {
        return Err(KmsError::validation(
            "Value at 'targetKeyId' failed to satisfy constraint: an alias cannot point to another alias",
        ));
    }
    let key = call.key_for(target, action, HashMap::new())?;
    call.app.refuse_pending(&key)?;
    Ok(key)
}

async fn write_alias(app: &App, alias: Alias) -> Result<()> {
    app.writer.put_alias(alias.clone()).await?;
    app.apply(|s| {
        s.aliases.insert(alias.name.clone(), alias);
    });
    Ok(())
}

fn existing_alias(app: &App, name: &str) -> Result<Alias> {
    app.alias(name)?
        .ok_or_else(|| KmsError::NotFound(format!("Alias {} is not found.", app.alias_arn(name))))
}

pub(super) async fn create_alias(mut call: Call<'_>) -> Result<Value> {
    let i: AliasInput = call.input()?;
    let name = alias_name(&i)?;
    check_alias_name(&name)?;
    let name = call.app.storage_id(call.region, &name);
    let key = alias_target(&mut call, &i, "kms:CreateAlias")?;
    let _guard = call.app.mutate().await?;
    if call.app.alias(&name)?.is_some() {
        return Err(KmsError::AlreadyExists(format!(
            "An alias with the name {} already exists",
            call.app.alias_arn(&name)
        )));
    }
    let now = now_ms();
    let alias = Alias {
        name,
        key_id: key.key_id,
        created_ms: now,
        updated_ms: now,
    };
    write_alias(call.app, alias).await?;
    Ok(json!({}))
}

pub(super) async fn update_alias(mut call: Call<'_>) -> Result<Value> {
    let i: AliasInput = call.input()?;
    let name = alias_name(&i)?;
    check_alias_name(&name)?;
    let name = call.app.storage_id(call.region, &name);
    let _guard = call.app.mutate().await?;
    let mut alias = existing_alias(call.app, &name)?;
    let old = call.app.key(&alias.key_id)?;
    call.authorize("kms:UpdateAlias", &old, HashMap::new())?;
    let key = alias_target(&mut call, &i, "kms:UpdateAlias")?;
    alias.key_id = key.key_id;
    alias.updated_ms = now_ms();
    write_alias(call.app, alias).await?;
    Ok(json!({}))
}

pub(super) async fn delete_alias(call: Call<'_>) -> Result<Value> {
    let i: AliasInput = call.input()?;
    let name = call.app.storage_id(call.region, &alias_name(&i)?);
    let _guard = call.app.mutate().await?;
    let alias = existing_alias(call.app, &name)?;
    let key = call.app.key(&alias.key_id)?;
    call.audit.key_id = Some(key.key_id.clone());
    call.authorize("kms:DeleteAlias", &key, HashMap::new())?;
    call.app.writer.delete_alias(name.clone()).await?;
    call.app.apply(|s| {
        s.aliases.remove(&name);
    });
    Ok(json!({}))
}

pub(super) fn list_aliases(call: Call<'_>) -> Result<Value> {
    let i: ListAliasesInput = call.input()?;
    let filter = match i.key_id.text("KeyId")? {
        Some(k) => Some(call.resolve(k)?),
        None => None,
    };
    let items = call
        .app
        .state()
        .aliases
        .values()
        .filter(|a| call.app.split_storage_id(&a.name).0 == call.region)
        .filter(|a| filter.as_ref().is_none_or(|f| *f == a.key_id))
        .map(|a| {
            let name = call.app.public_id(&a.name);
            (
                name.to_owned(),
                json!({
                    "AliasName": name,
                    "AliasArn": call.app.alias_arn(&a.name),
                    "TargetKeyId": call.app.public_id(&a.key_id),
                    "CreationDate": secs(a.created_ms),
                    "LastUpdatedDate": secs(a.updated_ms),
                }),
            )
        })
        .collect();
    let paging = PageInput {
        limit: i.limit,
        marker: i.marker,
    };
    let (items, next) = page(items, &paging)?;
    Ok(paged("Aliases", items, next))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ops::testkit::Kms;

    #[tokio::test]
    async fn create_resolve_update_list_delete() {
        let kms = Kms::new();
        let a = kms.new_key().await;
        let b = kms.new_key().await;
        kms.ok(
            "CreateAlias",
            json!({"AliasName": "alias/app", "TargetKeyId": a}),
        )
        .await;
        let d = kms.ok("DescribeKey", json!({"KeyId": "alias/app"})).await;
        assert_eq!(d["KeyMetadata"]["KeyId"], a.as_str());
        let (status, body) = kms
            .call(
                "CreateAlias",
                json!({"AliasName": "alias/app", "TargetKeyId": b}),
            )
            .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "AlreadyExistsException")
        );

        kms.ok(
            "UpdateAlias",
            json!({"AliasName": "alias/app", "TargetKeyId": b}),
        )
        .await;
        let d = kms
            .ok(
                "DescribeKey",
                json!({"KeyId": "arn:aws:kms:us-east-1:111122223333:alias/app"}),
            )
            .await;
        assert_eq!(d["KeyMetadata"]["KeyId"], b.as_str());

        kms.ok(
            "CreateAlias",
            json!({"AliasName": "alias/other", "TargetKeyId": a}),
        )
        .await;
        let all = kms.ok("ListAliases", json!({})).await;
        assert_eq!(all["Aliases"].as_array().unwrap().len(), 2);
        let of_b = kms.ok("ListAliases", json!({"KeyId": b})).await;
        let names: Vec<&str> = of_b["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AliasName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alias/app"]);

        kms.ok("DeleteAlias", json!({"AliasName": "alias/app"}))
            .await;
        let (status, body) = kms.call("DescribeKey", json!({"KeyId": "alias/app"})).await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "NotFoundException")
        );
        let (_, body) = kms
            .call("DeleteAlias", json!({"AliasName": "alias/app"}))
            .await;
        assert_eq!(body["__type"], "NotFoundException");
    }

    #[tokio::test]
    async fn alias_names_and_targets_are_checked() {
        let kms = Kms::new();
        let a = kms.new_key().await;
        let cases = [
            (
                json!({"AliasName": "alias/aws/x", "TargetKeyId": a}),
                "InvalidAliasNameException",
            ),
            (
                json!({"AliasName": "app", "TargetKeyId": a}),
                "ValidationException",
            ),
            (
                json!({"AliasName": "alias/a b", "TargetKeyId": a}),
                "ValidationException",
            ),
            (
                json!({"AliasName": "alias/x", "TargetKeyId": "alias/y"}),
                "ValidationException",
            ),
            (json!({"AliasName": "alias/x"}), "ValidationException"),
            (
                json!({"AliasName": 7, "TargetKeyId": a}),
                "SerializationException",
            ),
        ];
        for (input, name) in cases {
            let (_, body) = kms.call("CreateAlias", input.clone()).await;
            assert_eq!(body["__type"], name, "{input}");
        }
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": a, "PendingWindowInDays": 7}),
        )
        .await;
        let (status, body) = kms
            .call(
                "CreateAlias",
                json!({"AliasName": "alias/x", "TargetKeyId": a}),
            )
            .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "KMSInvalidStateException")
        );
        assert_eq!(kms.ok("ListAliases", json!({})).await["Aliases"], json!([]));
    }
}
