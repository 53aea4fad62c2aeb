//! IAM: the role CloudTrail assumes to write to CloudWatch Logs, the ingest worker's managed policy, and the
//! forwarder Lambda's role with its managed policy (own log group, its dead-letter queues, our indices).

use anyhow::anyhow;
use aws_sdk_iam::types::Tag;
use serde_json::{json, Value};

use super::{parse_policy, Aws, Ctx, TAG_KEY};
use crate::aws::{code, explain};
use crate::plan::{Kind, Action, Change};

pub const GLOBAL: &str = "global";
pub const INLINE_NAME: &str = "cloudtrail-logs";

fn client(ctx: &Ctx, aws: &Aws) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&aws.at(&ctx.home))
}

fn tag(ctx: &Ctx) -> anyhow::Result<Tag> {
    Ok(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?)
}

pub fn desired_role(ctx: &Ctx) -> Value {
    json!({
        "assume_role_policy": ctx.logs_trust_policy(),
        "inline_policies": {INLINE_NAME: ctx.logs_permissions_policy()},
        "tags": ctx.tags(),
    })
}

pub fn desired_policy(ctx: &Ctx) -> Value {
    json!({"policy": ctx.ingest_worker_policy(), "tags": ctx.tags()})
}

pub fn desired_forwarder_role(ctx: &Ctx) -> Value {
    json!({
        "assume_role_policy": ctx.forwarder_trust_policy(),
        "attached_policies": [ctx.forwarder_policy_arn()],
        "tags": ctx.tags(),
    })
}

/// `secret_arn`: the basic-auth secret's ARN once it exists (before: the `-??????` pattern, made exact at apply).
pub fn desired_forwarder_policy(ctx: &Ctx, secret_arn: Option<&str>) -> Value {
    json!({"policy": ctx.forwarder_policy_with(secret_arn), "tags": ctx.tags()})
}

fn policy_arn(ctx: &Ctx, name: &str) -> String {
    format!("arn:{}:iam::{}:policy/{name}", ctx.partition, ctx.account)
}

fn tags_of(tags: &[Tag]) -> Value {
    match tags.iter().find(|t| t.key() == TAG_KEY) {
        Some(t) => json!({TAG_KEY: t.value()}),
        None => json!({}),
    }
}

/// The forwarder's role: trust, attached managed policies (ARNs), tags.
async fn observe_forwarder_role(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Option<Value>> {
    let iam = client(ctx, aws);
    let name = ctx.forwarder_name();
    let role = match iam.get_role().role_name(&name).send().await {
        Ok(r) => r.role.ok_or_else(|| anyhow!("GetRole {name}: empty answer"))?,
        Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading role {name}"), "iam:GetRole")),
    };
    let trust = role.assume_role_policy_document().map(parse_policy).transpose()?;
    let attached = iam
        .list_attached_role_policies()
        .role_name(&name)
        .send()
        .await
        .map_err(|e| explain(e, &format!("listing the policies of role {name}"), "iam:ListAttachedRolePolicies"))?;
    let arns: Vec<&str> = attached.attached_policies().iter().filter_map(|p| p.policy_arn()).collect();
    let tags = iam
        .list_role_tags()
        .role_name(&name)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of role {name}"), "iam:ListRoleTags"))?;
    Ok(Some(json!({"assume_role_policy": trust, "attached_policies": arns, "tags": tags_of(tags.tags())})))
}

async fn observe_role(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Option<Value>> {
    let iam = client(ctx, aws);
    let name = ctx.logs_role();
    let role = match iam.get_role().role_name(&name).send().await {
        Ok(r) => r.role.ok_or_else(|| anyhow!("GetRole {name}: empty answer"))?,
        Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading role {name}"), "iam:GetRole")),
    };
    let trust = role.assume_role_policy_document().map(parse_policy).transpose()?;
    let inline = match iam.get_role_policy().role_name(&name).policy_name(INLINE_NAME).send().await {
        Ok(r) => Some(parse_policy(r.policy_document())?),
        Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => None,
        Err(e) => return Err(explain(e, &format!("reading the policy of role {name}"), "iam:GetRolePolicy")),
    };
    let tags = iam
        .list_role_tags()
        .role_name(&name)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of role {name}"), "iam:ListRoleTags"))?;
    Ok(Some(json!({"assume_role_policy": trust, "inline_policies": {INLINE_NAME: inline}, "tags": tags_of(tags.tags())})))
}

async fn observe_policy(ctx: &Ctx, aws: &Aws, arn: &str) -> anyhow::Result<Option<Value>> {
    let iam = client(ctx, aws);
    let p = match iam.get_policy().policy_arn(arn).send().await {
        Ok(r) => r.policy.ok_or_else(|| anyhow!("GetPolicy {arn}: empty answer"))?,
        Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading policy {arn}"), "iam:GetPolicy")),
    };
    let version = p.default_version_id().unwrap_or("v1").to_string();
    let v = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(&version)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading policy {arn}"), "iam:GetPolicyVersion"))?;
    let doc = v.policy_version().and_then(|v| v.document()).map(parse_policy).transpose()?;
    Ok(Some(json!({"policy": doc, "tags": tags_of(p.tags())})))
}

/// The two roles and two managed policies, as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub logs_role: Option<Value>,
    pub ingest_policy: Option<Value>,
    pub forwarder_policy: Option<Value>,
    pub forwarder_role: Option<Value>,
}

pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    let (ingest_arn, forwarder_arn) = (ctx.ingest_policy_arn(), ctx.forwarder_policy_arn());
    let (logs_role, ingest_policy, forwarder_policy, forwarder_role) = futures::try_join!(
        observe_role(ctx, aws),
        observe_policy(ctx, aws, &ingest_arn),
        observe_policy(ctx, aws, &forwarder_arn),
        observe_forwarder_role(ctx, aws),
    )?;
    Ok(Observed { logs_role, ingest_policy, forwarder_policy, forwarder_role })
}

pub fn changes(ctx: &Ctx, o: &Observed, secret_arn: Option<&str>) -> Vec<Change> {
    let mut v = Vec::new();
    // the role CloudTrail delivers to CloudWatch Logs with: only for trails of ours (a reused trail has its own)
    if !ctx.trails().is_empty() {
        v.push(Change::diff(Kind::IamRole, ctx.logs_role(), GLOBAL, desired_role(ctx), o.logs_role.clone()));
    }
    v.push(Change::diff(Kind::IamPolicy, ctx.ingest_policy(), GLOBAL, desired_policy(ctx), o.ingest_policy.clone()));
    // the forwarder's role and policy: only where there is a log group to forward (a reused trail may have none)
    if ctx.forwarder_regions().is_empty() {
        return v;
    }
    v.extend([
        // the policy first: the role attaches it
        Change::diff(Kind::IamPolicy, ctx.forwarder_name(), GLOBAL, desired_forwarder_policy(ctx, secret_arn), o.forwarder_policy.clone()),
        Change::diff(Kind::IamRole, ctx.forwarder_name(), GLOBAL, desired_forwarder_role(ctx), o.forwarder_role.clone()),
    ]);
    v
}

/// The IAM principal behind a caller ARN, as a policy or the domain's master user must name it: a user or role
/// ARN. An assumed-role session (`arn:…:sts::<acct>:assumed-role/<role>/<session>`, what SSO and CI callers
/// are) is neither: it becomes its role's ARN, path included, read with `iam:GetRole` ("IAM JSON policy elements:
/// Principal" → role sessions; the session ARN omits the role's path).
pub async fn principal_of(aws: &Aws, home: &str, caller: &str) -> anyhow::Result<String> {
    match parse_caller(caller) {
        CallerKind::Principal => Ok(caller.to_string()),
        CallerKind::StsUser { partition, account, path } => Ok(format!("arn:{partition}:iam::{account}:{path}")),
        CallerKind::AssumedRole { role, .. } => {
            let iam = aws_sdk_iam::Client::new(&aws.at(home));
            let r = iam.get_role().role_name(&role).send().await.map_err(|e| {
                explain(e, &format!("reading role {role} (the caller's assumed role, to name it as OpenSearch master user)"), "iam:GetRole")
            })?;
            r.role.map(|x| x.arn).ok_or_else(|| anyhow!("GetRole {role}: empty answer"))
        }
        CallerKind::Other(what) => Err(crate::error::usage(format!(
            "the caller {caller} is {what}, which cannot be the OpenSearch master user; pass --master-user-arn with an IAM \
             user or role ARN (env TRAILSETUP_MASTER_USER_ARN, config key master_user_arn)"
        ))),
    }
}

/// What kind of caller ARN STS returned.
#[derive(Debug, PartialEq, Eq)]
pub enum CallerKind {
    /// an IAM user or role ARN, or the account root: usable as is
    Principal,
    /// an assumed-role session: `partition`, `account`, `role` name (without path)
    AssumedRole { partition: String, account: String, role: String },
    /// `arn:<p>:sts::<acct>:user/<name>`: an IAM user as some STS emulators spell it
    StsUser { partition: String, account: String, path: String },
    Other(&'static str),
}

pub fn parse_caller(arn: &str) -> CallerKind {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return CallerKind::Other("not an ARN");
    }
    match (parts[2], parts[5].split('/').next().unwrap_or_default()) {
        ("iam", "user" | "role" | "root") => CallerKind::Principal,
        // STS emulators (moto) name an IAM user `arn:aws:sts::<acct>:user/<name>`; AWS says `arn:aws:iam::…`
        ("sts", "user") => CallerKind::StsUser { partition: parts[1].to_string(), account: parts[4].to_string(), path: parts[5].to_string() },
        ("sts", "assumed-role") => {
            let mut it = parts[5].split('/');
            it.next();
            match it.next() {
                Some(role) if !role.is_empty() => CallerKind::AssumedRole {
                    partition: parts[1].to_string(),
                    account: parts[4].to_string(),
                    role: role.to_string(),
                },
                _ => CallerKind::Other("an assumed-role ARN without a role name"),
            }
        }
        ("sts", "federated-user") => CallerKind::Other("a federated user session"),
        _ => CallerKind::Other("not an IAM user or role"),
    }
}

/// Create the role of `c` when the plan says so (an existing one is fine), then set its trust policy and tag.
async fn ensure_role(ctx: &Ctx, iam: &aws_sdk_iam::Client, c: &Change, description: &str) -> anyhow::Result<()> {
    let name = &c.name;
    let trust = c.details["assume_role_policy"].to_string();
    if c.action == Action::Create {
        match iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(&trust)
            .description(description)
            .tags(tag(ctx)?)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("EntityAlreadyExists") => {}
            Err(e) => return Err(explain(e, &format!("creating role {name}"), "iam:CreateRole")),
        }
    }
    iam.update_assume_role_policy()
        .role_name(name)
        .policy_document(&trust)
        .send()
        .await
        .map_err(|e| explain(e, &format!("setting the trust policy of role {name}"), "iam:UpdateAssumeRolePolicy"))?;
    iam.tag_role()
        .role_name(name)
        .tags(tag(ctx)?)
        .send()
        .await
        .map_err(|e| explain(e, &format!("tagging role {name}"), "iam:TagRole"))?;
    Ok(())
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let iam = client(ctx, aws);
    let name = &c.name;
    match c.kind.as_str() {
        "iam-role" if *name == ctx.forwarder_name() => {
            ensure_role(ctx, &iam, c, "The CloudWatch Logs -> OpenSearch forwarder Lambda (trailsetup)").await?;
            for arn in c.details["attached_policies"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                iam.attach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("attaching {arn} to role {name}"), "iam:AttachRolePolicy"))?;
            }
        }
        "iam-role" => {
            ensure_role(ctx, &iam, c, "CloudTrail writes the trail's events to CloudWatch Logs (trailsetup)").await?;
            iam.put_role_policy()
                .role_name(name)
                .policy_name(INLINE_NAME)
                .policy_document(c.details["inline_policies"][INLINE_NAME].to_string())
                .send()
                .await
                .map_err(|e| explain(e, &format!("setting the permissions of role {name}"), "iam:PutRolePolicy"))?;
        }
        "iam-policy" => {
            let mut doc = c.details["policy"].to_string();
            // the forwarder's secret, created earlier in this chain: its real ARN instead of the `-??????` pattern
            let pattern = ctx.secret_arn_pattern();
            if *name == ctx.forwarder_name() && doc.contains(&pattern) {
                if let Some(arn) = super::secretsmanager::secret_arn(ctx, aws).await? {
                    doc = doc.replace(&pattern, &arn);
                }
            }
            let arn = policy_arn(ctx, name);
            let description = if *name == ctx.forwarder_name() {
                "The trailsetup forwarder Lambda: its own log group, its dead-letter queues, our OpenSearch indices"
            } else {
                "Least privilege for trailsetup ingest workers: read the trail's logs, consume the queue"
            };
            if c.action == Action::Create {
                match iam
                    .create_policy()
                    .policy_name(name)
                    .policy_document(&doc)
                    .description(description)
                    .tags(tag(ctx)?)
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) if code(&e).as_deref() == Some("EntityAlreadyExists") => {}
                    Err(e) => return Err(explain(e, &format!("creating policy {name}"), "iam:CreatePolicy")),
                }
            }
            // a new default version; drop the oldest non-default one first if the limit of 5 is reached
            let versions = iam
                .list_policy_versions()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(|e| explain(e, &format!("listing versions of {arn}"), "iam:ListPolicyVersions"))?;
            let mut old: Vec<_> = versions.versions().iter().filter(|v| !v.is_default_version()).collect();
            old.sort_by_key(|v| v.create_date().map(|d| d.secs()).unwrap_or(0));
            if versions.versions().len() >= 5 {
                if let Some(v) = old.first().and_then(|v| v.version_id()) {
                    iam.delete_policy_version()
                        .policy_arn(&arn)
                        .version_id(v)
                        .send()
                        .await
                        .map_err(|e| explain(e, &format!("deleting old version {v} of {arn}"), "iam:DeletePolicyVersion"))?;
                }
            }
            iam.create_policy_version()
                .policy_arn(&arn)
                .policy_document(&doc)
                .set_as_default(true)
                .send()
                .await
                .map_err(|e| explain(e, &format!("updating policy {arn}"), "iam:CreatePolicyVersion"))?;
            iam.tag_policy()
                .policy_arn(&arn)
                .tags(tag(ctx)?)
                .send()
                .await
                .map_err(|e| explain(e, &format!("tagging policy {arn}"), "iam:TagPolicy"))?;
        }
        other => return Err(anyhow!("iam cannot apply {other}")),
    }
    Ok(())
}

/// destroy: a role (its managed policies detached, its inline policies deleted first), or a managed policy
/// (detached from every role, user and group it is attached to, its old versions deleted first).
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let iam = client(ctx, aws);
    let name = &c.name;
    let gone = |e: &Option<String>| e.as_deref() == Some("NoSuchEntity");
    if c.kind == crate::plan::Kind::IamRole {
        let attached = match iam.list_attached_role_policies().role_name(name).send().await {
            Ok(r) => r,
            Err(e) if gone(&code(&e)) => return Ok(()),
            Err(e) => return Err(explain(e, &format!("listing the policies of role {name}"), "iam:ListAttachedRolePolicies")),
        };
        for p in attached.attached_policies().iter().filter_map(|p| p.policy_arn()) {
            iam.detach_role_policy().role_name(name).policy_arn(p).send().await
                .map_err(|e| explain(e, &format!("detaching {p} from role {name}"), "iam:DetachRolePolicy"))?;
        }
        let inline = iam.list_role_policies().role_name(name).send().await
            .map_err(|e| explain(e, &format!("listing the inline policies of role {name}"), "iam:ListRolePolicies"))?;
        for p in inline.policy_names() {
            iam.delete_role_policy().role_name(name).policy_name(p).send().await
                .map_err(|e| explain(e, &format!("deleting inline policy {p} of role {name}"), "iam:DeleteRolePolicy"))?;
        }
        return match iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if gone(&code(&e)) => Ok(()),
            Err(e) => Err(explain(e, &format!("deleting role {name}"), "iam:DeleteRole")),
        };
    }
    let arn = policy_arn(ctx, name);
    let entities = match iam.list_entities_for_policy().policy_arn(&arn).send().await {
        Ok(r) => r,
        Err(e) if gone(&code(&e)) => return Ok(()),
        Err(e) => return Err(explain(e, &format!("listing who uses policy {arn}"), "iam:ListEntitiesForPolicy")),
    };
    for r in entities.policy_roles().iter().filter_map(|r| r.role_name()) {
        iam.detach_role_policy().role_name(r).policy_arn(&arn).send().await
            .map_err(|e| explain(e, &format!("detaching {arn} from role {r}"), "iam:DetachRolePolicy"))?;
    }
    for u in entities.policy_users().iter().filter_map(|u| u.user_name()) {
        iam.detach_user_policy().user_name(u).policy_arn(&arn).send().await
            .map_err(|e| explain(e, &format!("detaching {arn} from user {u}"), "iam:DetachUserPolicy"))?;
    }
    for g in entities.policy_groups().iter().filter_map(|g| g.group_name()) {
        iam.detach_group_policy().group_name(g).policy_arn(&arn).send().await
            .map_err(|e| explain(e, &format!("detaching {arn} from group {g}"), "iam:DetachGroupPolicy"))?;
    }
    let versions = iam.list_policy_versions().policy_arn(&arn).send().await
        .map_err(|e| explain(e, &format!("listing versions of {arn}"), "iam:ListPolicyVersions"))?;
    for v in versions.versions().iter().filter(|v| !v.is_default_version()).filter_map(|v| v.version_id()) {
        iam.delete_policy_version().policy_arn(&arn).version_id(v).send().await
            .map_err(|e| explain(e, &format!("deleting version {v} of {arn}"), "iam:DeletePolicyVersion"))?;
    }
    match iam.delete_policy().policy_arn(&arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if gone(&code(&e)) => Ok(()),
        Err(e) => Err(explain(e, &format!("deleting policy {arn}"), "iam:DeletePolicy")),
    }
}


use crate::permissions as perm;
/// "... for AWS Identity and Access Management" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html): role and
/// policy actions on the role or policy; destroy detaches the ingest-worker policy from whoever holds it (users,
/// groups, roles not known in advance). iam:PassRole: see `permissions::NOT_AT_A_CALL_SITE`.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("iam:GetRole", perm::Res::Roles, perm::OBSERVE),
    perm::p("iam:GetRolePolicy", perm::Res::Roles, perm::OBSERVE),
    perm::p("iam:ListRoleTags", perm::Res::Roles, perm::OBSERVE),
    perm::p("iam:ListAttachedRolePolicies", perm::Res::Roles, perm::OBSERVE),
    perm::p("iam:CreateRole", perm::Res::Roles, perm::INIT),
    perm::p("iam:TagRole", perm::Res::Roles, perm::INIT),
    perm::p("iam:UpdateAssumeRolePolicy", perm::Res::Roles, perm::INIT),
    perm::p("iam:PutRolePolicy", perm::Res::Roles, perm::INIT),
    perm::p("iam:AttachRolePolicy", perm::Res::Roles, perm::INIT),
    perm::p("iam:PassRole", perm::Res::Roles, perm::INIT),
    perm::p("iam:ListRolePolicies", perm::Res::Roles, perm::DESTROY),
    perm::p("iam:DeleteRolePolicy", perm::Res::Roles, perm::DESTROY),
    perm::p("iam:DetachRolePolicy", perm::Res::Roles, perm::DESTROY),
    perm::p("iam:DeleteRole", perm::Res::Roles, perm::DESTROY),
    perm::p("iam:GetPolicy", perm::Res::Policies, perm::OBSERVE),
    perm::p("iam:GetPolicyVersion", perm::Res::Policies, perm::OBSERVE),
    perm::p("iam:CreatePolicy", perm::Res::Policies, perm::INIT),
    perm::p("iam:TagPolicy", perm::Res::Policies, perm::INIT),
    perm::p("iam:ListPolicyVersions", perm::Res::Policies, perm::INIT_DESTROY),
    perm::p("iam:CreatePolicyVersion", perm::Res::Policies, perm::INIT),
    perm::p("iam:DeletePolicyVersion", perm::Res::Policies, perm::INIT_DESTROY),
    perm::p("iam:ListEntitiesForPolicy", perm::Res::Policies, perm::DESTROY),
    perm::p("iam:DeletePolicy", perm::Res::Policies, perm::DESTROY),
    perm::p("iam:DetachUserPolicy", perm::Res::PolicyHolders, perm::DESTROY),
    perm::p("iam:DetachGroupPolicy", perm::Res::PolicyHolders, perm::DESTROY),
    perm::p("iam:DetachRolePolicy", perm::Res::PolicyHolders, perm::DESTROY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers() {
        assert_eq!(parse_caller("arn:aws:iam::123456789012:user/admin"), CallerKind::Principal);
        assert_eq!(parse_caller("arn:aws:iam::123456789012:role/ci/deployer"), CallerKind::Principal);
        assert_eq!(
            parse_caller("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123/jane@example.com"),
            CallerKind::AssumedRole { partition: "aws".into(), account: "123456789012".into(), role: "AWSReservedSSO_Admin_0123".into() }
        );
        assert!(matches!(parse_caller("arn:aws:sts::123456789012:federated-user/alice"), CallerKind::Other(_)));
        assert!(matches!(parse_caller("nonsense"), CallerKind::Other(_)));
    }
}
