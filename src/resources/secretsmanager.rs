//! Secrets Manager: the forwarder's OpenSearch basic-auth credentials, one secret `<stack>/opensearch-basic-auth`
//! in the home region, tagged with the stack, its `SecretString` `{"username": …, "password": …}` written from
//! `TRAILSETUP_OPENSEARCH_USER`/`TRAILSETUP_OPENSEARCH_PASSWORD` (with `--kms-key`, encrypted with the home region's
//! key; else with the AWS managed key `aws/secretsmanager`). The function gets the secret's ARN
//! (`OPENSEARCH_SECRET_ARN`), never the password: Lambda Developer Guide, "Working with Lambda environment
//! variables" ("we recommend that you use AWS Secrets Manager instead of environment variables to store database
//! credentials and other sensitive information"), and "Use Secrets Manager secrets in Lambda functions".
//!
//! The plan never holds the password nor any hash of it: observe reads the stored value (GetSecretValue), compares
//! it in memory with the one to write and keeps only the verdict — `unchanged`, or `previous` (the stored value
//! differs) — so the plan says `"value": "new" | "changed" | "unchanged"`. Without credentials to compare with
//! (`status`, `destroy`) the value is not read at all (`"not compared"`).

use std::fmt;

use anyhow::anyhow;
use aws_sdk_secretsmanager::types::Tag;
use serde_json::{json, Value};

use super::{Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Action, Change, Kind};

pub const USER_ENV: &str = "TRAILSETUP_OPENSEARCH_USER";
pub const PASSWORD_ENV: &str = "TRAILSETUP_OPENSEARCH_PASSWORD";

/// The plan's `value`: no secret yet.
pub const NEW: &str = "new";
/// The stored value differs from the one to write (PutSecretValue).
pub const CHANGED: &str = "changed";
/// The stored value is the one to write.
pub const UNCHANGED: &str = "unchanged";
/// Not read: no credentials to compare with (`status`, `destroy`).
pub const NOT_COMPARED: &str = "not compared";
/// What observation says of a stored value that differs (the other side of `changed` in the plan's diff).
pub const PREVIOUS: &str = "previous";

/// The user and password the forwarder signs in with. Never printed: `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    user: String,
    password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl BasicAuth {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> BasicAuth {
        BasicAuth { user: user.into(), password: password.into() }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// `TRAILSETUP_OPENSEARCH_USER` and `TRAILSETUP_OPENSEARCH_PASSWORD`, both set and not empty; else a usage error
    /// (exit 2) naming both. Never an empty password.
    pub fn from_env() -> anyhow::Result<BasicAuth> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (get(USER_ENV), get(PASSWORD_ENV)) {
            (Some(user), Some(password)) => Ok(BasicAuth { user, password }),
            (user, password) => {
                let missing: Vec<&str> = [(USER_ENV, user.is_none()), (PASSWORD_ENV, password.is_none())]
                    .iter()
                    .filter(|x| x.1)
                    .map(|x| x.0)
                    .collect();
                let verb = if missing.len() == 1 { "is" } else { "are" };
                Err(missing_error(&format!("{} {verb}", missing.join(" and "))))
            }
        }
    }

    /// The secret's `SecretString`.
    fn secret_string(&self) -> String {
        json!({"username": self.user, "password": self.password}).to_string()
    }

    /// Does a stored `SecretString` hold these credentials? Compared in memory; nothing of it is kept.
    fn matches(&self, stored: &str) -> bool {
        serde_json::from_str::<Value>(stored)
            .ok()
            .is_some_and(|v| v["username"].as_str() == Some(self.user.as_str()) && v["password"].as_str() == Some(self.password.as_str()))
    }

    /// Does `text` carry the password? (The rules look for it in every string of a plan: equal, or inside a
    /// longer string when it is long enough not to turn up by chance.)
    pub fn leaks_into(&self, text: &str) -> bool {
        text == self.password || (self.password.chars().count() >= 8 && text.contains(&self.password))
    }
}

fn missing_error(what: &str) -> anyhow::Error {
    crate::error::usage(format!(
        "--opensearch-auth basic: the forwarder signs in to OpenSearch with a user and password that init keeps in \
         Secrets Manager, read from {USER_ENV} and {PASSWORD_ENV}; {what} not set or empty. Set both (nothing was changed)"
    ))
}

/// The secret as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// its ARN (with Secrets Manager's random suffix), when it exists
    pub arn: Option<String>,
    /// name, region, key, tags, and `value`: `unchanged`, `previous` or `not compared`
    pub secret: Option<Value>,
}

fn client(aws: &Aws, region: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws.at(region))
}

fn tag(ctx: &Ctx) -> Tag {
    Tag::builder().key(TAG_KEY).value(&ctx.stack).build()
}

/// The AWS managed key is reported as its alias, or not at all: both mean "no key of ours".
fn key_of(k: Option<&str>) -> Option<String> {
    k.filter(|k| !k.is_empty() && !k.ends_with("alias/aws/secretsmanager")).map(String::from)
}

/// What `OPENSEARCH_SECRET_ARN` says while the secret does not exist: resolved at apply time.
pub fn placeholder_arn(ctx: &Ctx) -> String {
    format!("<ARN of secret {}, known after apply>", ctx.secret_name())
}

/// The secret's ARN, or its placeholder.
pub fn arn_or_placeholder(ctx: &Ctx, o: &Observed) -> String {
    o.arn.clone().unwrap_or_else(|| placeholder_arn(ctx))
}

/// Observe our secret when the forwarder uses basic auth; with credentials (`init`), read its value to compare.
pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    if !ctx.uses_secret() {
        return Ok(Observed::default());
    }
    observe_named(ctx, aws, ctx.basic_auth.as_ref()).await
}

/// Observe `<stack>/opensearch-basic-auth` in the home region (`compare`: the credentials to compare its value with;
/// `None`: the value is not read).
pub async fn observe_named(ctx: &Ctx, aws: &Aws, compare: Option<&BasicAuth>) -> anyhow::Result<Observed> {
    let sm = client(aws, &ctx.home);
    let name = ctx.secret_name();
    let d = match sm.describe_secret().secret_id(&name).send().await {
        Ok(d) => d,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(Observed::default()),
        Err(e) => return Err(explain(e, &format!("reading secret {name} in {}", ctx.home), "secretsmanager:DescribeSecret")),
    };
    // scheduled for deletion: absent (apply restores it before writing)
    if d.deleted_date().is_some() {
        return Ok(Observed::default());
    }
    let arn = d.arn().map(String::from).unwrap_or_else(|| name.clone());
    let kms_key = key_of(d.kms_key_id());
    let value = match compare {
        None => NOT_COMPARED,
        Some(auth) => match sm.get_secret_value().secret_id(&arn).send().await {
            // the stored value lives only in this scope
            Ok(v) if v.secret_string().is_some_and(|s| auth.matches(s)) => UNCHANGED,
            Ok(_) => PREVIOUS,
            // no current version
            Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => PREVIOUS,
            Err(e) => {
                let permission = match &kms_key {
                    Some(k) => format!("secretsmanager:GetSecretValue (and kms:Decrypt on {k})"),
                    None => "secretsmanager:GetSecretValue".into(),
                };
                return Err(explain(e, &format!("reading secret {name} in {} to compare it with {PASSWORD_ENV} (in memory only)", ctx.home), &permission));
            }
        },
    };
    let tags = match d.tags().iter().find(|t| t.key() == Some(TAG_KEY)) {
        Some(t) => json!({TAG_KEY: t.value()}),
        None => json!({}),
    };
    Ok(Observed {
        arn: Some(arn.clone()),
        secret: Some(json!({"name": name, "region": ctx.home, "kms_key": kms_key, "tags": tags, "value": value, "arn": arn})),
    })
}

/// What the secret should be: the plan's details. No password, no hash of it: `value` says whether it changes.
pub fn desired(ctx: &Ctx, o: &Observed) -> Value {
    let value = match o.secret.as_ref().and_then(|s| s["value"].as_str()) {
        None => NEW,
        Some(UNCHANGED) => UNCHANGED,
        Some(NOT_COMPARED) => NOT_COMPARED,
        Some(_) => CHANGED,
    };
    json!({
        "name": ctx.secret_name(),
        "region": ctx.home,
        "kms_key": ctx.kms_key_for(&ctx.home),
        "tags": ctx.tags(),
        "value": value,
        "arn": arn_or_placeholder(ctx, o),
    })
}

/// The secret, when the forwarder uses basic auth.
pub fn changes(ctx: &Ctx, o: &Observed) -> Vec<Change> {
    if !ctx.uses_secret() {
        return Vec::new();
    }
    let want = desired(ctx, o);
    // a key reported by id stands for the key ARN the plan names
    let current = o.secret.clone().map(|mut cur| {
        if let (Some(have), Some(w)) = (cur["kms_key"].as_str(), want["kms_key"].as_str()) {
            if !have.starts_with("arn:") && w.ends_with(&format!("/{have}")) {
                cur["kms_key"] = json!(w);
            }
        }
        cur
    });
    vec![Change::diff(Kind::SecretsManagerSecret, ctx.secret_name(), &ctx.home, want, current)]
}

/// The secret's ARN now (apply: a secret created earlier in this run), `None` when it does not exist.
pub async fn secret_arn(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Option<String>> {
    Ok(observe_named(ctx, aws, None).await?.arn)
}

fn kms_permission(action: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{action} (and kms:GenerateDataKey, kms:Decrypt on {k})"),
        None => action.to_string(),
    }
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let auth = ctx.basic_auth.as_ref().ok_or_else(|| missing_error(&format!("{USER_ENV} and {PASSWORD_ENV} are")))?;
    let sm = client(aws, &c.region);
    let name = &c.name;
    let r = &c.region;
    let key = c.details["kms_key"].as_str();
    let what = format!("secret {name} in {r}");
    // UpdateSecret with the value: a new version, encrypted with the (new) key
    let update = |key: Option<&str>| {
        sm.update_secret()
            .secret_id(name)
            .kms_key_id(key.unwrap_or("alias/aws/secretsmanager"))
            .secret_string(auth.secret_string())
            .send()
    };
    let put = || sm.put_secret_value().secret_id(name).secret_string(auth.secret_string()).send();
    match c.action {
        Action::Create => {
            // a secret of that name scheduled for deletion (DeleteSecret with a recovery window): restore it, write it
            let pending = match sm.describe_secret().secret_id(name).send().await {
                Ok(d) => d.deleted_date().is_some(),
                Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => false,
                Err(e) => return Err(explain(e, &format!("reading {what}"), "secretsmanager:DescribeSecret")),
            };
            if pending {
                sm.restore_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("restoring {what} (scheduled for deletion)"), "secretsmanager:RestoreSecret"))?;
                update(key).await.map_err(|e| explain(e, &format!("writing {what}"), &kms_permission("secretsmanager:UpdateSecret", key)))?;
            } else {
                let create = || {
                    sm.create_secret()
                        .name(name)
                        .description(format!("OpenSearch basic-auth credentials of the trailsetup forwarder (stack {})", ctx.stack))
                        .secret_string(auth.secret_string())
                        .set_kms_key_id(key.map(String::from))
                        .tags(tag(ctx))
                        .send()
                };
                match crate::aws::eventual::retry("CreateSecret", &what, create).await {
                    Ok(_) => return Ok(()),
                    // made meanwhile (another run): write our value into it
                    Err(e) if code(&e).as_deref() == Some("ResourceExistsException") => {
                        put().await.map_err(|e| explain(e, &format!("writing {what}"), &kms_permission("secretsmanager:PutSecretValue", key)))?;
                    }
                    Err(e) => return Err(explain(e, &format!("creating {what}"), &kms_permission("secretsmanager:CreateSecret", key))),
                }
            }
        }
        Action::Update => {
            let cur = c.current.as_ref();
            if cur.is_some_and(|v| v["kms_key"] != c.details["kms_key"]) {
                update(key).await.map_err(|e| explain(e, &format!("re-encrypting {what}"), &kms_permission("secretsmanager:UpdateSecret", key)))?;
            } else if c.details["value"] != UNCHANGED && c.details["value"] != NOT_COMPARED {
                put().await.map_err(|e| explain(e, &format!("writing {what}"), &kms_permission("secretsmanager:PutSecretValue", key)))?;
            }
        }
        other => return Err(anyhow!("secretsmanager cannot apply {other:?} of {what}")),
    }
    sm.tag_resource()
        .secret_id(name)
        .tags(tag(ctx))
        .send()
        .await
        .map_err(|e| explain(e, &format!("tagging {what}"), "secretsmanager:TagResource"))?;
    Ok(())
}

/// destroy: the secret, at once (`ForceDeleteWithoutRecovery`): no recovery window holding the name, so an `init`
/// right after `destroy` can create it again.
pub async fn delete(_ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let sm = client(aws, &c.region);
    match sm.delete_secret().secret_id(&c.name).force_delete_without_recovery(true).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(()),
        Err(e) => Err(explain(e, &format!("deleting secret {} in {}", c.name, c.region), "secretsmanager:DeleteSecret")),
    }
}


use crate::permissions as perm;
/// With `--opensearch-auth basic` ("... for AWS Secrets Manager", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecretsmanager.html: secret,
/// CreateSecret included); with `--kms-key` too, kms:GenerateDataKey/Decrypt on the key.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:DescribeSecret", perm::Res::Secret, perm::OBSERVE),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:GetSecretValue", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:CreateSecret", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:PutSecretValue", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:UpdateSecret", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:TagResource", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:RestoreSecret", perm::Res::Secret, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth], "secretsmanager:DeleteSecret", perm::Res::Secret, perm::DESTROY),
    perm::with(&[perm::Feature::BasicAuth, perm::Feature::Kms], "kms:GenerateDataKey", perm::Res::Keys, perm::INIT),
    perm::with(&[perm::Feature::BasicAuth, perm::Feature::Kms], "kms:Decrypt", perm::Res::Keys, perm::INIT),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{OpenSearchAuth, TrailMode};

    fn basic_ctx() -> Ctx {
        let mut c = crate::resources::test_ctx(TrailMode::MultiRegion);
        c.opensearch_auth = Some(OpenSearchAuth::Basic);
        c.basic_auth = Some(BasicAuth::new("writer", "correct horse battery staple"));
        c
    }

    fn found(value: &str) -> Observed {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/opensearch-basic-auth-AbCdEf";
        Observed {
            arn: Some(arn.into()),
            secret: Some(json!({"name": "trailsetup/opensearch-basic-auth", "region": "us-east-1", "kms_key": null,
                "tags": {TAG_KEY: "trailsetup"}, "value": value, "arn": arn})),
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let a = BasicAuth::new("writer", "correct horse battery staple");
        let d = format!("{a:?} {:?}", basic_ctx());
        assert!(d.contains("writer") && !d.contains("horse"), "{d}");
    }

    #[test]
    fn compares_username_and_password() {
        let a = BasicAuth::new("writer", "pw");
        assert!(a.matches(r#"{"username":"writer","password":"pw"}"#));
        assert!(a.matches(r#"{"password":"pw","username":"writer","engine":"opensearch"}"#));
        assert!(!a.matches(r#"{"username":"writer","password":"other"}"#));
        assert!(!a.matches(r#"{"username":"reader","password":"pw"}"#));
        assert!(!a.matches("pw"));
        assert_eq!(serde_json::from_str::<Value>(&a.secret_string()).unwrap(), json!({"username": "writer", "password": "pw"}));
    }

    #[test]
    fn new_unchanged_changed() {
        let ctx = basic_ctx();
        let c = changes(&ctx, &Observed::default()).remove(0);
        assert_eq!((c.action, c.kind, c.name.as_str(), c.region.as_str()), (Action::Create, Kind::SecretsManagerSecret, "trailsetup/opensearch-basic-auth", "us-east-1"));
        assert_eq!(c.details["value"], NEW);
        assert_eq!(c.details["arn"], "<ARN of secret trailsetup/opensearch-basic-auth, known after apply>");
        assert_eq!(c.details["tags"], json!({TAG_KEY: "trailsetup"}));
        let c = changes(&ctx, &found(UNCHANGED)).remove(0);
        assert_eq!((c.action, c.details["value"].as_str()), (Action::NoOp, Some(UNCHANGED)));
        let c = changes(&ctx, &found(PREVIOUS)).remove(0);
        assert_eq!((c.action, c.details["value"].as_str()), (Action::Update, Some(CHANGED)));
        // status and destroy do not read the value: present and tagged is as planned
        let c = changes(&ctx, &found(NOT_COMPARED)).remove(0);
        assert_eq!(c.action, Action::NoOp);
        // untagged: drift
        let mut o = found(UNCHANGED);
        o.secret.as_mut().unwrap()["tags"] = json!({});
        assert_eq!(changes(&ctx, &o)[0].action, Action::Update);
        // the plan (JSON and human, with -v) never holds the password
        let plan = crate::plan::Plan::new(changes(&ctx, &found(PREVIOUS)));
        let text = format!("{}{}", plan.to_json(&Default::default(), false), plan.render_human(&Default::default(), true));
        assert!(!text.contains("horse") && text.contains("changed"), "{text}");
    }

    #[test]
    fn key_reported_by_id_is_the_planned_key() {
        let mut ctx = basic_ctx();
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1111-2222";
        ctx.kms = Some(crate::resources::KmsKeys { given: "k".into(), keys: [("us-east-1".to_string(), arn.to_string())].into(), resolved: true });
        let mut o = found(UNCHANGED);
        o.secret.as_mut().unwrap()["kms_key"] = json!("1111-2222");
        assert_eq!(changes(&ctx, &o)[0].action, Action::NoOp);
        o.secret.as_mut().unwrap()["kms_key"] = Value::Null;
        assert_eq!(changes(&ctx, &o)[0].action, Action::Update);
        assert_eq!(key_of(Some("alias/aws/secretsmanager")), None);
    }

    #[test]
    fn only_with_basic_auth_and_a_forwarder() {
        let mut ctx = basic_ctx();
        assert_eq!(changes(&ctx, &Observed::default()).len(), 1);
        ctx.opensearch_auth = Some(OpenSearchAuth::None);
        assert!(changes(&ctx, &Observed::default()).is_empty());
    }
}
