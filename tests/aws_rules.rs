//! AWS's documented rules (src/rules.rs) over the plans of many account shapes, with no network.
//!
//! Every rule must find something to check in every plan (none passes vacuously) and find nothing wrong; and each
//! rule must catch the defect it exists for, shown by breaking a good plan on purpose.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use trailsetup::cli::TrailMode;
use trailsetup::plan::{Action, Plan};
use trailsetup::resources::reuse::{self, Reuse};
use trailsetup::cli::OpenSearchAuth;
use trailsetup::resources::secretsmanager::{self, BasicAuth};
use trailsetup::resources::{self, kms, opensearch, s3, Ctx, KmsKeys, Observed, OpenSearchTarget};
use trailsetup::rules;

const ACCOUNT: &str = "123456789012";

fn ctx(mode: TrailMode, home: &str, regions: &[&str]) -> Ctx {
    let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    Ctx {
        stack: "trailsetup".into(),
        account: ACCOUNT.into(),
        partition: "aws".into(),
        caller_arn: format!("arn:aws:iam::{ACCOUNT}:user/admin"),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/admin"),
        home: home.into(),
        opt_in_regions: regions.iter().filter(|r| resources::OPT_IN_REGIONS.contains(&r.as_str())).cloned().collect(),
        regions,
        trail_mode: mode,
        bucket: format!("trailsetup-{ACCOUNT}-{home}"),
        kms: None,
        kms_policy_external: false,
        retention_days: 90,
        opensearch: OpenSearchTarget::Domain("trailsetup".into()),
        domain_size: Default::default(),
        opensearch_auth: None,
        index_prefix: "cloudtrail".into(),
        index_granularity: trailsetup::opensearch::layout::Granularity::Day,
        ingest_roles: vec![],
        reuse: None,
        basic_auth: None,
    }
}

fn keys(pairs: &[(&str, &str)]) -> KmsKeys {
    KmsKeys {
        given: "test".into(),
        keys: pairs.iter().map(|(r, k)| (r.to_string(), k.to_string())).collect(),
        resolved: true,
    }
}

/// A key policy as AWS creates it by default: the account root may use the key through IAM.
fn default_key_policy() -> Value {
    json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}]})
}

fn adopted_bucket() -> s3::Observed {
    s3::Observed {
        bucket: Some(json!({"public_access_block": null, "encryption": {"algorithm": "AES256"}, "object_ownership": "ObjectWriter", "versioning": null, "tags": {}})),
        policy: Some(Some(json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "AuditorsRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:role/auditor"}, "Action": "s3:GetObject",
             "Resource": format!("arn:aws:s3:::trailsetup-{ACCOUNT}-eu-west-1/*")}]}))),
    }
}

fn adopted_domain(endpoint: &str, probe: opensearch::Probe) -> opensearch::Observed {
    opensearch::Observed {
        domain: Some(json!({
            "engine_version": "OpenSearch_2.11", "instance_type": "r6g.large.search", "instance_count": 3, "ebs_gib": 100,
            "encryption_at_rest": true, "node_to_node_encryption": true, "enforce_https": true,
            "tls_security_policy": "Policy-Min-TLS-1-2-2019-07", "fine_grained_access_control": true, "internal_user_database": false,
            "access_policy": {"Version": "2012-10-17", "Statement": [{"Sid": "Analysts", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/analyst")}, "Action": "es:ESHttpGet",
                "Resource": format!("arn:aws:es:eu-west-1:{ACCOUNT}:domain/trailsetup/*")}]},
            "tags": {}})),
        endpoint: Some(endpoint.into()),
        template: probe.clone(),
        dashboards: probe.clone(),
        security: opensearch::Security::On(match probe {
            opensearch::Probe::Found(_) => opensearch::Probe::Found(Some(json!({"role": null,
                "mapping": {"backend_roles": [format!("arn:aws:iam::{ACCOUNT}:role/other-writer")], "hosts": [], "users": []}}))),
            other => other,
        }),
    }
}

/// The account shapes the rules must hold for.
fn scenarios() -> Vec<(&'static str, Ctx, Observed)> {
    let mut v = Vec::new();

    let c = ctx(TrailMode::MultiRegion, "us-east-1", &["us-east-1", "eu-west-1"]);
    v.push(("multi-region, home us-east-1, no KMS, new domain", c, Observed::default()));

    let mut c = ctx(TrailMode::PerRegion, "us-east-1", &["us-east-1", "eu-west-1", "af-south-1"]);
    c.kms = Some(keys(&[
        ("us-east-1", "arn:aws:kms:us-east-1:123456789012:key/mrk-0a1b2c"),
        ("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/mrk-0a1b2c"),
        ("af-south-1", "arn:aws:kms:af-south-1:123456789012:key/mrk-0a1b2c"),
    ]));
    let mut o = Observed::default();
    for k in c.kms.as_ref().unwrap().keys.values() {
        o.key_policies.insert(k.clone(), kms::Observed::Policy(default_key_policy()));
    }
    v.push(("per-region, opt-in af-south-1, multi-Region key", c, o));

    let mut c = ctx(TrailMode::PerRegion, "eu-west-1", &["eu-west-1", "us-west-2"]);
    c.caller_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123/jane@example.com");
    c.principal_arn = format!("arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123");
    c.kms = Some(keys(&[
        ("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/1111"),
        ("us-west-2", "arn:aws:kms:us-west-2:123456789012:key/2222"),
    ]));
    c.ingest_roles = vec![format!("arn:aws:iam::{ACCOUNT}:role/workers/ingest")];
    v.push(("per-region, home eu-west-1 without us-east-1, key per region, SSO caller", c, Observed::default()));

    let mut c = ctx(TrailMode::MultiRegion, "eu-west-1", &["eu-west-1", "us-east-1"]);
    c.kms = Some(keys(&[("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/3333")]));
    let mut o = Observed { s3: adopted_bucket(), ..Default::default() };
    o.opensearch = adopted_domain("https://search-trailsetup-abc.eu-west-1.es.amazonaws.com", opensearch::Probe::Found(None));
    o.key_policies.insert("arn:aws:kms:eu-west-1:123456789012:key/3333".into(), kms::Observed::Policy(default_key_policy()));
    v.push(("multi-region, home eu-west-1, adopted bucket and domain, key", c, o));

    let c = ctx(TrailMode::PerRegion, "us-east-1", &["us-east-1", "ap-southeast-3"]);
    let o = Observed {
        opensearch: adopted_domain("https://vpc-trailsetup-abc.us-east-1.es.amazonaws.com", opensearch::Probe::Unreachable("dns error".into())),
        ..Default::default()
    };
    v.push(("per-region, adopted VPC domain not reachable from here", c, o));

    let mut c = ctx(TrailMode::PerRegion, "eu-west-1", &["eu-west-1", "us-east-1"]);
    c.opensearch = OpenSearchTarget::Url("https://search-logs-xyz.us-east-1.es.amazonaws.com".into());
    v.push(("per-region, existing endpoint in another region", c, Observed::default()));

    // brownfield (--use-trail): scenarios 6, 7, 8
    let mut c = ctx(TrailMode::MultiRegion, "us-east-1", &["us-east-1", "eu-west-1"]);
    c.bucket = "corp-cloudtrail".into();
    c.kms = Some(keys(&[("us-east-1", "arn:aws:kms:us-east-1:123456789012:key/4444"), ("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/5555")]));
    c.reuse = Some(Reuse {
        name: "corp".into(),
        arn: format!("arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/corp"),
        home_region: "eu-west-1".into(),
        multi_region: true,
        visible: true,
        bucket: "corp-cloudtrail".into(),
        bucket_owned: true,
        bucket_region: Some("us-east-1".into()),
        topic_arn: Some(format!("arn:aws:sns:eu-west-1:{ACCOUNT}:corp-trail")),
        log_group_arn: Some(format!("arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/corp/cloudtrail:*")),
        management_events: Some(true),
        forward_logs: true,
        ..Default::default()
    });
    let mut o = Observed::default();
    for k in c.kms.as_ref().unwrap().keys.values() {
        o.key_policies.insert(k.clone(), kms::Observed::Policy(default_key_policy()));
    }
    v.push(("reuse: own multi-region trail with a topic in another region and a log group, key", c, o));

    let mut c = ctx(TrailMode::MultiRegion, "eu-west-1", &["eu-west-1"]);
    c.bucket = "legacy-trail-logs".into();
    c.opensearch = OpenSearchTarget::Url("http://127.0.0.1:9200".into());
    c.reuse = Some(Reuse {
        name: "legacy".into(),
        arn: format!("arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/legacy"),
        home_region: "eu-west-1".into(),
        visible: true,
        bucket: "legacy-trail-logs".into(),
        key_prefix: Some("audit".into()),
        bucket_owned: true,
        bucket_region: Some("eu-west-1".into()),
        ..Default::default()
    });
    let o = Observed {
        reuse: reuse::Observed {
            other_notifications: vec![json!({"id": "thumbnails", "events": ["s3:ObjectCreated:*"], "prefix": "images/", "suffix": ""})],
            ..Default::default()
        },
        ..Default::default()
    };
    v.push(("reuse: trail without topic, bucket of this account with another consumer", c, o));

    let mut c = ctx(TrailMode::MultiRegion, "us-east-1", &["us-east-1"]);
    c.bucket = "org-log-archive".into();
    c.ingest_roles = vec![format!("arn:aws:iam::{ACCOUNT}:role/ingest")];
    c.reuse = Some(Reuse {
        name: "org-trail".into(),
        arn: "arn:aws:cloudtrail:us-east-1:999999999999:trail/org-trail".into(),
        home_region: "us-east-1".into(),
        multi_region: true,
        organization: true,
        bucket: "org-log-archive".into(),
        org_id: Some("o-abcdefghij".into()),
        source_role: Some("arn:aws:iam::888888888888:role/log-reader".into()),
        ..Default::default()
    });
    v.push(("reuse: organization trail not visible, log archive bucket in another account", c, Observed::default()));

    // 9: a new domain of six m6g.large.search nodes over three zones, outside us-east-1
    let mut c = ctx(TrailMode::MultiRegion, "eu-west-1", &["eu-west-1"]);
    c.domain_size = opensearch::DomainSize { instance_type: "m6g.large.search".into(), instance_count: 6 };
    v.push(("new domain: 6 × m6g.large.search over three zones, home eu-west-1", c, Observed::default()));

    // 10, 11: an existing endpoint with basic auth: the forwarder reads its user and password from Secrets Manager
    let mut c = ctx(TrailMode::MultiRegion, "eu-west-1", &["eu-west-1", "us-east-1"]);
    c.opensearch = OpenSearchTarget::Url("https://search.example.com:9200".into());
    c.opensearch_auth = Some(OpenSearchAuth::Basic);
    c.basic_auth = Some(BasicAuth::new("writer", PASSWORD));
    c.kms = Some(keys(&[("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/6666")]));
    let mut o = Observed::default();
    o.key_policies.insert("arn:aws:kms:eu-west-1:123456789012:key/6666".into(), kms::Observed::Policy(default_key_policy()));
    v.push(("basic auth to an existing endpoint, new secret encrypted with the home key", c, o));

    let mut c = ctx(TrailMode::PerRegion, "us-east-1", &["us-east-1", "eu-west-1"]);
    c.opensearch = OpenSearchTarget::Url("https://search.example.com".into());
    c.opensearch_auth = Some(OpenSearchAuth::Basic);
    c.basic_auth = Some(BasicAuth::new("writer", PASSWORD));
    let o = Observed { secret: existing_secret(secretsmanager::PREVIOUS), ..Default::default() };
    v.push(("basic auth, per-region forwarders, the secret exists with another password", c, o));
    v
}

const PASSWORD: &str = "correct horse battery staple";
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:trailsetup/opensearch-basic-auth-AbCdEf";

fn existing_secret(value: &str) -> secretsmanager::Observed {
    secretsmanager::Observed {
        arn: Some(SECRET_ARN.into()),
        secret: Some(json!({"name": "trailsetup/opensearch-basic-auth", "region": "us-east-1", "kms_key": null,
            "tags": {"trailsetup:stack": "trailsetup"}, "value": value, "arn": SECRET_ARN})),
    }
}

fn plan_of(c: &Ctx, o: &Observed) -> Plan {
    resources::changes(c, o).unwrap()
}

#[test]
fn every_rule_checks_something_in_every_plan_and_finds_nothing_wrong() {
    for (name, c, o) in scenarios() {
        let plan = plan_of(&c, &o);
        let report = rules::check(&c, &plan);
        assert!(report.violations.is_empty(), "{name}:\n{}", report.violations.join("\n"));
        for (rule, n) in &report.checked {
            assert!(*n > 0, "{name}: rule {rule} found nothing to check");
        }
        assert_eq!(report.checked.len(), rules::RULES.len());
    }
}

#[test]
fn every_rule_names_its_aws_page() {
    for r in rules::RULES {
        assert!(r.doc.len() > 20 && r.doc.contains('"'), "{}: {}", r.name, r.doc);
    }
}

/// The rule `rule` reports the defect that `break_it` puts in an otherwise good plan.
fn catches(rule: &str, scenario: usize, break_it: impl Fn(&mut Ctx, &mut Plan)) {
    let (name, mut c, o) = scenarios().swap_remove(scenario);
    let mut plan = plan_of(&c, &o);
    assert!(rules::check(&c, &plan).violations.is_empty(), "{name} is good before breaking it");
    break_it(&mut c, &mut plan);
    let v = rules::check(&c, &plan).violations;
    assert!(v.iter().any(|x| x.starts_with(&format!("{rule} "))), "{rule} did not catch the defect in {name}; got {v:?}");
}

fn change<'a>(plan: &'a mut Plan, kind: &str, name: Option<&str>) -> &'a mut Value {
    &mut plan.changes.iter_mut().find(|c| c.kind == kind && name.is_none_or(|n| c.name == n)).unwrap().details
}

#[test]
fn each_rule_catches_its_defect() {
    catches("cloudtrail-logs-role-trust", 0, |_, p| {
        change(p, "iam-role", Some("trailsetup-cloudtrail-logs"))["assume_role_policy"]["Statement"][0]["Condition"] =
            json!({"StringEquals": {"aws:SourceAccount": ACCOUNT}});
    });
    catches("cloudtrail-logs-role-permissions", 1, |_, p| {
        change(p, "iam-role", Some("trailsetup-cloudtrail-logs"))["inline_policies"]["cloudtrail-logs"]["Statement"][0]["Resource"] =
            json!("arn:aws:logs:us-east-1:123456789012:log-group:/aws/cloudtrail/trailsetup:log-stream:*");
    });
    catches("global-service-events", 2, |c, p| {
        // the old behaviour: global events follow the home region (eu-west-1), nobody records IAM, no warning
        c.regions.push("us-east-1".into());
        let _ = p;
    });
    catches("global-service-events", 1, |_, p| {
        for ch in p.changes.iter_mut().filter(|c| c.kind == "cloudtrail-trail") {
            ch.details["include_global_service_events"] = json!(ch.region == "eu-west-1");
        }
    });
    catches("forwarder-signs-for-domain-region", 5, |_, p| {
        let f = p.changes.iter_mut().find(|c| c.kind == "lambda-function" && c.region == "eu-west-1").unwrap();
        f.details["environment"]["OPENSEARCH_REGION"] = json!("eu-west-1");
    });
    catches("fgac-role-mapping", 0, |_, p| {
        p.changes.retain(|c| c.kind != "opensearch-role-mapping");
    });
    catches("fgac-role-mapping", 2, |_, p| {
        change(p, "opensearch-role-mapping", None)["requests"][1]["body"]["backend_roles"] = json!(["arn:aws:iam::123456789012:role/trailsetup-forwarder"]);
    });
    catches("ingest-worker-es-actions", 0, |_, p| {
        let st = change(p, "iam-policy", Some("trailsetup-ingest-worker"))["policy"]["Statement"].as_array_mut().unwrap();
        st.retain(|s| s["Sid"] != "IndexDocuments");
    });
    catches("principals-are-iam-users-or-roles", 2, |c, p| {
        c.principal_arn = c.caller_arn.clone();
        change(p, "opensearch-domain", None)["master_user_arn"] = json!(c.caller_arn);
    });
    catches("kms-key-policies", 1, |_, p| {
        let ch = p.changes.iter_mut().find(|c| c.kind == "kms-key-policy" && c.region == "af-south-1").unwrap();
        ch.details["policy"]["Statement"].as_array_mut().unwrap().retain(|s| !s["Sid"].as_str().unwrap_or_default().starts_with("TrailsetupCloudWatchLogs"));
    });
    catches("kms-key-policies", 1, |_, p| {
        let ch = p.changes.iter_mut().find(|c| c.kind == "kms-key-policy" && c.region == "us-east-1").unwrap();
        for s in ch.details["policy"]["Statement"].as_array_mut().unwrap() {
            if s["Sid"].as_str().unwrap_or_default().starts_with("TrailsetupCloudTrailEncryptLogs") {
                s.as_object_mut().unwrap().remove("Condition");
            }
        }
    });
    catches("kms-keys-are-regional", 2, |_, p| {
        // the old behaviour: every region pointed at the home region's key
        let t = p.changes.iter_mut().find(|c| c.kind == "sns-topic" && c.region == "us-west-2").unwrap();
        t.details["kms_key"] = json!("arn:aws:kms:eu-west-1:123456789012:key/1111");
    });
    catches("kms-key-arns-not-aliases", 3, |_, p| {
        change(p, "logs-log-group", None)["kms_key"] = json!("arn:aws:kms:eu-west-1:123456789012:alias/logs");
    });
    catches("sns-cross-region-opt-in", 1, |_, p| {
        for st in change(p, "sqs-queue-policy", None)["policy"]["Statement"].as_array_mut().unwrap() {
            st["Principal"]["Service"] = json!("sns.amazonaws.com");
        }
    });
    catches("topic-and-queue-policies-limited-by-source-arn", 0, |_, p| {
        let st = change(p, "sqs-queue-policy", None)["policy"]["Statement"].as_array_mut().unwrap();
        st[0]["Condition"]["ArnEquals"]["aws:SourceArn"] = json!(["arn:aws:sns:us-east-1:123456789012:trailsetup-cloudtrail", "arn:aws:sns:us-east-1:123456789012:other"]);
    });
    catches("adopted-policies-keep-their-statements", 3, |_, p| {
        let d = change(p, "opensearch-domain", None);
        d["access_policy"]["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != "Analysts");
    });
    catches("adopted-policies-keep-their-statements", 3, |_, p| {
        let d = change(p, "s3-bucket-policy", None);
        d["policy"]["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != "AuditorsRead");
    });
    catches("opensearch-domain-settings", 0, |_, p| {
        change(p, "opensearch-domain", None)["tls_security_policy"] = json!("Policy-Min-TLS-1-2-2019-07");
    });
    catches("opensearch-domain-settings", 0, |_, p| {
        change(p, "opensearch-domain", None)["engine_version"] = json!("2.19");
    });
    catches("opensearch-domain-settings", 3, |_, p| {
        change(p, "opensearch-domain", None)["instance_count"] = json!(1);
    });
    // "Configuring a multi-AZ domain in Amazon OpenSearch Service",
    // https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-multiaz.html (3 zones: a
    // multiple of 3 data nodes); "Enabling zone awareness" of the Amazon Elasticsearch Service guide (2 zones: an even
    // count); https://docs.aws.amazon.com/opensearch-service/latest/APIReference/API_ZoneAwarenessConfig.html (2 or 3)
    catches("opensearch-zone-awareness", 9, |_, p| {
        // six nodes put over two zones instead of three
        change(p, "opensearch-domain", None)["availability_zone_count"] = json!(2);
    });
    catches("opensearch-zone-awareness", 9, |_, p| {
        change(p, "opensearch-domain", None)["instance_count"] = json!(5);
    });
    catches("opensearch-zone-awareness", 0, |_, p| {
        // two nodes left in one zone
        let d = change(p, "opensearch-domain", None);
        d["instance_count"] = json!(2);
    });
    catches("opensearch-zone-awareness", 3, |_, p| {
        // an adopted domain's layout is kept
        change(p, "opensearch-domain", None)["zone_awareness_enabled"] = json!(false);
    });
    // "Supported instance types in Amazon OpenSearch Service",
    // https://docs.aws.amazon.com/opensearch-service/latest/developerguide/supported-instance-types.html; "Amazon
    // OpenSearch Service quotas", https://docs.aws.amazon.com/opensearch-service/latest/developerguide/limits.html
    catches("opensearch-instance-type-limits", 0, |_, p| {
        // a previous-generation type
        change(p, "opensearch-domain", None)["instance_type"] = json!("m4.large.search");
    });
    catches("opensearch-instance-type-limits", 0, |_, p| {
        // twelve T3 nodes: T2/T3 domains stop at 10 data nodes
        let d = change(p, "opensearch-domain", None);
        d["instance_count"] = json!(12);
        d["zone_awareness_enabled"] = json!(true);
        d["availability_zone_count"] = json!(3);
    });
    catches("opensearch-instance-type-limits", 9, |_, p| {
        change(p, "opensearch-domain", None)["instance_count"] = json!(84);
    });
    catches("opensearch-instance-type-limits", 0, |_, p| {
        // t3.small.search takes 10 to 100 GiB of gp3
        change(p, "opensearch-domain", None)["ebs_gib"] = json!(200);
    });
    catches("opensearch-instance-type-limits", 0, |_, p| {
        // Multi-AZ with Standby: not on T3, and not without dedicated master nodes
        change(p, "opensearch-domain", None)["multi_az_with_standby"] = json!(true);
    });
    catches("unreachable-endpoint-is-not-a-change", 4, |_, p| {
        p.changes.iter_mut().find(|c| c.kind == "opensearch-index-template").unwrap().action = Action::Create;
    });
    catches("bucket-policy-for-cloudtrail", 0, |_, p| {
        let st = change(p, "s3-bucket-policy", None)["policy"]["Statement"].as_array_mut().unwrap();
        st[1]["Condition"]["StringEquals"].as_object_mut().unwrap().remove("s3:x-amz-acl");
    });
    catches("topic-and-queue-policies-limited-by-source-arn", 1, |_, p| {
        let t = p.changes.iter_mut().find(|c| c.kind == "sns-topic-policy" && c.region == "eu-west-1").unwrap();
        t.details["policy"]["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"] = json!("arn:aws:cloudtrail:us-east-1:123456789012:trail/trailsetup-us-east-1");
    });
    catches("no-public-principal", 0, |_, p| {
        change(p, "sqs-queue-policy", None)["policy"]["Statement"][0]["Principal"] = json!("*");
    });
    catches("service-value-ranges", 0, |_, p| {
        for ch in p.changes.iter_mut().filter(|c| c.kind == "logs-log-group") {
            ch.details["retention_days"] = json!(91);
        }
    });
    catches("service-value-ranges", 0, |_, p| {
        change(p, "sqs-queue", Some("trailsetup-notifications"))["attributes"]["VisibilityTimeout"] = json!("50000");
    });
    // Lambda Developer Guide, "Working with Lambda environment variables" and "Use Secrets Manager secrets in Lambda
    // functions"; Secrets Manager User Guide, "Permissions reference for Secrets Manager"
    catches("forwarder-password-in-secrets-manager", 10, |_, p| {
        // the old behaviour: the password in the function's environment
        change(p, "lambda-function", None)["environment"]["OPENSEARCH_PASSWORD"] = json!(PASSWORD);
    });
    catches("forwarder-password-in-secrets-manager", 10, |_, p| {
        // the user back in the environment (the secret holds both)
        change(p, "lambda-function", None)["environment"]["OPENSEARCH_USER"] = json!("writer");
    });
    catches("forwarder-password-in-secrets-manager", 11, |_, p| {
        // the password anywhere in the plan
        change(p, "secretsmanager-secret", None)["value"] = json!(PASSWORD);
    });
    catches("forwarder-password-in-secrets-manager", 11, |_, p| {
        // every secret of the account
        let st = change(p, "iam-policy", Some("trailsetup-forwarder"))["policy"]["Statement"].as_array_mut().unwrap();
        st.iter_mut().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap()["Resource"] = json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:*");
    });
    catches("forwarder-password-in-secrets-manager", 10, |_, p| {
        // before the secret exists: `*` would also match `<name>-<anything>-xxxxxx`
        let st = change(p, "iam-policy", Some("trailsetup-forwarder"))["policy"]["Statement"].as_array_mut().unwrap();
        st.iter_mut().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap()["Resource"] =
            json!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:trailsetup/opensearch-basic-auth-*");
    });
    catches("forwarder-password-in-secrets-manager", 11, |_, p| {
        // another role of ours may read it
        let st = change(p, "iam-policy", Some("trailsetup-ingest-worker"))["policy"]["Statement"].as_array_mut().unwrap();
        st.push(json!({"Sid": "Read", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET_ARN}));
    });
    catches("forwarder-password-in-secrets-manager", 11, |_, p| {
        // the forwarder reads another secret than the one planned
        for f in p.changes.iter_mut().filter(|c| c.kind == "lambda-function" && c.region == "eu-west-1") {
            f.details["environment"]["OPENSEARCH_SECRET_ARN"] = json!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:other-AbCdEf");
        }
    });
    catches("forwarder-password-in-secrets-manager", 10, |_, p| {
        // decrypt with the key for anything, not through Secrets Manager
        let st = change(p, "iam-policy", Some("trailsetup-forwarder"))["policy"]["Statement"].as_array_mut().unwrap();
        st.iter_mut().find(|s| s["Sid"] == "DecryptOpenSearchSecret").unwrap().as_object_mut().unwrap().remove("Condition");
    });
    catches("forwarder-password-in-secrets-manager", 0, |_, p| {
        // a secret without basic auth
        let (_, c10, o10) = scenarios().swap_remove(10);
        p.changes.extend(plan_of(&c10, &o10).changes.into_iter().filter(|x| x.kind == "secretsmanager-secret"));
    });
    catches("kms-keys-are-regional", 10, |_, p| {
        change(p, "secretsmanager-secret", None)["kms_key"] = json!("arn:aws:kms:us-east-1:123456789012:key/7777");
    });
    catches("logs-invoke-permission-scoped", 0, |_, p| {
        change(p, "lambda-permission", None)["source_arn"] = json!("arn:aws:logs:us-east-1:123456789012:log-group:*");
    });
}

#[test]
fn reuse_rules_catch_their_defects() {
    catches("reused-trail-untouched", 6, |_, p| {
        let t = p.changes.iter_mut().find(|c| c.kind == "cloudtrail-trail").unwrap();
        t.action = Action::Update;
    });
    catches("reused-trail-untouched", 7, |c, p| {
        p.changes.push(resources::s3::changes(c, &Default::default()).remove(1));
    });
    catches("s3-notification-to-same-region-queue", 7, |_, p| {
        change(p, "s3-bucket-notification", None)["queue_arn"] = json!(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:trailsetup-notifications"));
    });
    catches("s3-notification-to-same-region-queue", 7, |_, p| {
        change(p, "s3-bucket-notification", None)["prefix"] = json!("AWSLogs/");
    });
    catches("topic-and-queue-policies-limited-by-source-arn", 7, |_, p| {
        let q = change(p, "sqs-queue-policy", None);
        q["policy"]["Statement"][0]["Condition"]["StringEquals"] = json!({});
    });
    catches("queue-subscribed-to-reused-topic", 6, |_, p| {
        change(p, "sns-subscription", None)["topic_arn"] = json!("arn:aws:sns:us-east-1:123456789012:other");
    });
    catches("kms-key-policies", 6, |_, p| {
        let k = change(p, "kms-key-policy", Some("arn:aws:kms:us-east-1:123456789012:key/4444"));
        let sts: Vec<Value> = k["policy"]["Statement"].as_array().unwrap().iter().filter(|s| !s["Sid"].as_str().unwrap_or_default().starts_with("TrailsetupSnsToQueue")).cloned().collect();
        k["policy"]["Statement"] = json!(sts);
    });
}

#[test]
fn reuse_plans_create_no_trail_bucket_or_topic() {
    for i in [6, 7, 8] {
        let (name, c, o) = scenarios().swap_remove(i);
        let plan = plan_of(&c, &o);
        for ch in &plan.changes {
            let forwarder_logs = ch.name == "/aws/lambda/trailsetup-forwarder";
            if !forwarder_logs && matches!(ch.kind.as_str(), "cloudtrail-trail" | "s3-bucket" | "s3-bucket-policy" | "sns-topic" | "sns-topic-policy" | "logs-log-group") {
                assert_eq!((ch.action, ch.details["reused"].clone()), (Action::NoOp, json!(true)), "{name}: {} {}", ch.kind, ch.name);
            }
        }
        assert!(plan.changes.iter().all(|c| c.name != "trailsetup-cloudtrail-logs"), "{name}: no logs role");
    }
    // (a) subscription in the topic's region; the forwarder on the trail's log group, in its region
    let (_, c, o) = scenarios().swap_remove(6);
    let plan = plan_of(&c, &o);
    let sub = plan.changes.iter().find(|x| x.kind == "sns-subscription").unwrap();
    assert_eq!((sub.action, sub.region.as_str()), (Action::Create, "eu-west-1"));
    let f = plan.changes.iter().find(|x| x.kind == "logs-subscription-filter").unwrap();
    assert_eq!((f.region.as_str(), f.details["log_group"].as_str()), ("eu-west-1", Some("/corp/cloudtrail")));
    let perm = plan.changes.iter().find(|x| x.kind == "lambda-permission").unwrap();
    assert_eq!(perm.details["source_arn"], format!("arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/corp/cloudtrail:*"));
    // (b) the notification on this account's prefix; the other consumer's entry is kept (counted)
    let (_, c, o) = scenarios().swap_remove(7);
    let plan = plan_of(&c, &o);
    let n = plan.changes.iter().find(|x| x.kind == "s3-bucket-notification").unwrap();
    assert_eq!(n.details["prefix"], format!("audit/AWSLogs/{ACCOUNT}/"));
    assert_eq!(n.details["other_configurations_kept"], 1);
    assert!(plan.changes.iter().all(|x| x.kind != "lambda-function"), "no log group: no forwarder");
    // an overlapping consumer is refused, naming it
    let mut o2 = o.clone();
    o2.reuse.other_notifications.push(json!({"id": "siem", "queue_arn": "arn:aws:sqs:eu-west-1:1:siem", "events": ["s3:ObjectCreated:Put"], "prefix": "audit/", "suffix": ".gz"}));
    let e = resources::changes(&c, &o2).unwrap_err().to_string();
    assert!(e.contains("siem") && e.contains("overlap"), "{e}");
    // (c) nothing planned in the other account; the owner's statements name our account's prefix and the role
    let (_, c, o) = scenarios().swap_remove(8);
    let plan = plan_of(&c, &o);
    assert!(plan.changes.iter().all(|x| x.kind != "s3-bucket-notification" && x.kind != "sns-subscription"));
    let acts = reuse::owner_actions(&c);
    let read = &acts[0]["statements"][0];
    assert_eq!(read["Resource"], format!("arn:aws:s3:::org-log-archive/AWSLogs/o-abcdefghij/{ACCOUNT}/*"));
    assert_eq!(read["Principal"]["AWS"], "arn:aws:iam::888888888888:role/log-reader");
    assert!(acts.iter().any(|a| a["notification"]["QueueConfigurations"][0]["QueueArn"] == format!("arn:aws:sqs:us-east-1:{ACCOUNT}:trailsetup-notifications")));
    let ingest = plan.changes.iter().find(|x| x.name == "trailsetup-ingest-worker").unwrap();
    let sts = resources::statements(&ingest.details["policy"]);
    assert!(sts.iter().any(|s| s["Action"] == "sts:AssumeRole" && s["Resource"] == "arn:aws:iam::888888888888:role/log-reader"));
    assert!(sts.iter().any(|s| s["Resource"] == format!("arn:aws:s3:::org-log-archive/AWSLogs/o-abcdefghij/{ACCOUNT}/*")));
}

/// An organization trail whose organization id could not be read: what readers get (the owner's statements and
/// the ingest-worker policy) is this account's folder in both layouts, never the organization's whole AWSLogs/
/// (S3 User Guide, "Policy resources": a `*` in an object ARN spans `/`, so the account folder is spelled out).
#[test]
fn unknown_organization_id_grants_only_this_accounts_folder() {
    let (_, mut c, o) = scenarios().swap_remove(8);
    c.reuse.as_mut().unwrap().org_id = None;
    let want = json!([format!("arn:aws:s3:::org-log-archive/AWSLogs/{ACCOUNT}/*"), format!("arn:aws:s3:::org-log-archive/AWSLogs/o-*/{ACCOUNT}/*")]);
    let acts = reuse::owner_actions(&c);
    assert_eq!(acts[0]["statements"][0]["Resource"], want);
    let list = &acts[0]["statements"][1]["Condition"]["StringLike"]["s3:prefix"];
    assert_eq!(list, &json!(["AWSLogs/", format!("AWSLogs/{ACCOUNT}/*"), "AWSLogs/o-*"]));
    let plan = plan_of(&c, &o);
    let ingest = plan.changes.iter().find(|x| x.name == "trailsetup-ingest-worker").unwrap();
    let sts = resources::statements(&ingest.details["policy"]);
    let read = sts.iter().find(|s| s["Sid"] == "ReadLogFiles").unwrap();
    assert_eq!(read["Resource"], want);
    for s in &sts {
        let r = s["Resource"].to_string();
        assert!(!r.contains("AWSLogs/*"), "no statement may cover every account's logs: {s}");
    }
}

#[test]
fn new_domain_plan_carries_its_size_zones_and_estimate() {
    let (_, c, o) = scenarios().swap_remove(9);
    let plan = plan_of(&c, &o);
    let d = plan.changes.iter().find(|x| x.kind == "opensearch-domain").unwrap();
    assert_eq!(d.action, Action::Create);
    assert_eq!((d.details["instance_type"].as_str(), d.details["instance_count"].as_i64()), (Some("m6g.large.search"), Some(6)));
    assert_eq!((d.details["zone_awareness_enabled"].clone(), d.details["availability_zone_count"].clone()), (json!(true), json!(3)));
    // 6 × 0.128 × 730 + 6 × 10 × 0.122, at us-east-1 prices, said so for a domain in eu-west-1
    let e = &d.details["monthly_estimate"];
    assert_eq!((e["instances_usd_per_month"].as_f64(), e["storage_usd_per_month"].as_f64(), e["usd_per_month"].as_f64()), (Some(560.64), Some(7.32), Some(567.96)));
    assert_eq!((e["priced_region"].as_str(), e["domain_region"].as_str()), (Some("us-east-1"), Some("eu-west-1")));
    assert!(e["text"].as_str().unwrap().contains("these are us-east-1 prices, eu-west-1's differ"), "{e}");
    // the human plan shows the size and the estimate without -v
    let text = plan.render_human(&Default::default(), false);
    assert!(text.contains("data nodes: 6 × m6g.large.search, 10 GiB gp3 each, 3 Availability Zones"), "{text}");
    assert!(text.contains("~$568/month estimated: 6 × m6g.large.search $560.64 + 6 × 10 GiB gp3 $7.32"), "{text}");
}

#[test]
fn second_plan_after_apply_has_no_changes_for_the_key_and_domain() {
    // What a second run observes after the first applied: the merged key policy and domain policy, the trail's
    // key as the key ARN GetTrail reports. Nothing to do.
    let (_, c, o) = scenarios().swap_remove(3);
    let first = plan_of(&c, &o);
    let mut o2 = o.clone();
    let kp = first.changes.iter().find(|x| x.kind == "kms-key-policy").unwrap();
    o2.key_policies.insert(kp.name.clone(), kms::Observed::Policy(kp.details["policy"].clone()));
    let d = first.changes.iter().find(|x| x.kind == "opensearch-domain").unwrap();
    o2.opensearch.domain = Some(d.details.clone());
    let t = first.changes.iter().find(|x| x.kind == "cloudtrail-trail").unwrap();
    o2.trails = BTreeMap::from([(t.name.clone(), Some(t.details.clone()))]);
    let second = plan_of(&c, &o2);
    for kind in ["kms-key-policy", "opensearch-domain", "cloudtrail-trail"] {
        let ch = second.changes.iter().find(|x| x.kind == kind).unwrap();
        assert_eq!(ch.action, Action::NoOp, "{kind}: {}", ch.details);
    }
    assert_eq!(t.details["kms_key"], "arn:aws:kms:eu-west-1:123456789012:key/3333");
}

/// Basic auth: the secret is planned before the forwarder's policy (one apply chain), named in it and in the
/// environment; a second plan after apply is a no-op; another password is an update that says "changed" only.
#[test]
fn basic_auth_secret_plan() {
    let (_, c, o) = scenarios().swap_remove(10);
    let plan = plan_of(&c, &o);
    let kinds: Vec<&str> = plan.changes.iter().map(|x| x.kind.as_str()).collect();
    let at = |k: &str, n: &str| plan.changes.iter().position(|x| x.kind == k && x.name == n).unwrap();
    assert!(at("secretsmanager-secret", "trailsetup/opensearch-basic-auth") < at("iam-policy", "trailsetup-forwarder"), "{kinds:?}");
    let s = plan.changes.iter().find(|x| x.kind == "secretsmanager-secret").unwrap();
    assert_eq!((s.action, s.region.as_str(), s.details["value"].as_str()), (Action::Create, "eu-west-1", Some("new")));
    assert_eq!(s.details["kms_key"], "arn:aws:kms:eu-west-1:123456789012:key/6666");
    let f = plan.changes.iter().find(|x| x.kind == "lambda-function").unwrap();
    assert_eq!(f.details["environment"]["OPENSEARCH_SECRET_ARN"], "<ARN of secret trailsetup/opensearch-basic-auth, known after apply>");
    let p = &plan.changes[at("iam-policy", "trailsetup-forwarder")].details["policy"];
    let read = resources::statements(p).into_iter().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap();
    assert_eq!(read["Resource"], "arn:aws:secretsmanager:eu-west-1:123456789012:secret:trailsetup/opensearch-basic-auth-??????");
    let dec = resources::statements(p).into_iter().find(|s| s["Sid"] == "DecryptOpenSearchSecret").unwrap();
    assert_eq!(dec["Condition"]["StringEquals"]["kms:ViaService"], "secretsmanager.eu-west-1.amazonaws.com");
    let text = format!("{}{}", plan.to_json(&Default::default(), false), plan.render_human(&Default::default(), true));
    assert!(!text.contains(PASSWORD) && !text.contains("OPENSEARCH_PASSWORD"));

    // the second run, after apply: the secret, with its value unchanged, and the policy with its real ARN
    let (_, c, _) = scenarios().swap_remove(11);
    let mut o = Observed { secret: existing_secret(secretsmanager::UNCHANGED), ..Default::default() };
    let first = plan_of(&c, &o);
    let fp = first.changes.iter().find(|x| x.kind == "iam-policy" && x.name == "trailsetup-forwarder").unwrap();
    o.iam.forwarder_policy = Some(fp.details.clone());
    assert_eq!(resources::statements(&fp.details["policy"]).into_iter().find(|s| s["Sid"] == "ReadOpenSearchSecret").unwrap()["Resource"], SECRET_ARN);
    let second = plan_of(&c, &o);
    for kind in ["secretsmanager-secret", "iam-policy"] {
        let ch = second.changes.iter().find(|x| x.kind == kind && (kind != "iam-policy" || x.name == "trailsetup-forwarder")).unwrap();
        assert_eq!(ch.action, Action::NoOp, "{kind}: {}", ch.details);
    }
    // another password: an update that says "changed", nothing else
    o.secret = existing_secret(secretsmanager::PREVIOUS);
    let third = plan_of(&c, &o);
    let s = third.changes.iter().find(|x| x.kind == "secretsmanager-secret").unwrap();
    assert_eq!((s.action, s.details["value"].as_str()), (Action::Update, Some("changed")));
    let text = third.render_human(&Default::default(), false);
    assert!(text.contains("~ update") && text.contains("\"changed\"") && !text.contains(PASSWORD), "{text}");
}

/// The stack's lock parameter (src/lock.rs) against Systems Manager's naming rules for every shape of stack name
/// `init` accepts. AWS Systems Manager API Reference, "PutParameter", Name: case sensitive; not prefixed with
/// "aws" or "ssm" (case-insensitive); only `a-zA-Z0-9_.-` plus `/` between hierarchy levels, no spaces; at most
/// fifteen levels; at most 1011 characters. Service Authorization Reference, "Actions, resources, and condition
/// keys for AWS Systems Manager", parameter: `arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash}`.
#[test]
fn lock_parameter_follows_ssm_naming_and_arn_rules() {
    let longest = format!("a{}", "b".repeat(31));
    for stack in ["trailsetup", "aws-audit", "ssm1", "x9-y", longest.as_str()] {
        trailsetup::init::validate_name(stack).unwrap();
        let name = trailsetup::lock::parameter_name(stack);
        assert!(name.starts_with('/'), "{name}: a hierarchy needs its leading slash");
        let bare = &name[1..];
        let lower = bare.to_ascii_lowercase();
        assert!(!lower.starts_with("aws") && !lower.starts_with("ssm"), "{name}: prefixed with aws/ssm");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)), "{name}: a character SSM refuses");
        assert!(name.split('/').skip(1).all(|level| !level.is_empty()), "{name}: an empty level");
        assert!(name.split('/').skip(1).count() <= 15, "{name}: more than fifteen levels");
        assert!(name.len() <= 1011, "{name}: longer than 1011 characters");
        for (partition, region) in [("aws", "us-east-1"), ("aws-cn", "cn-north-1"), ("aws-us-gov", "us-gov-west-1")] {
            let arn = trailsetup::lock::parameter_arn(partition, region, ACCOUNT, stack);
            assert_eq!(arn, format!("arn:{partition}:ssm:{region}:{ACCOUNT}:parameter/{bare}"));
            assert!(!arn.contains("parameter//"), "{arn}: the leading slash is dropped in the ARN");
        }
    }
}
