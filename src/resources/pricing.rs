//! The monthly estimate shown beside each choice of a new domain's size: a small table of on-demand list prices.
//!
//! An estimate, not a quote. The figures are us-east-1 (US East, N. Virginia) on-demand list prices of Amazon
//! OpenSearch Service, written down on [`CHECKED`] from public cost tools that agree on them (several open-source
//! cost and FinOps tools carry the same hourly rates, one of them read from the AWS Price List API's AmazonES offer
//! file); this machine cannot reach <https://aws.amazon.com/opensearch-service/pricing/>. The gp3 figure also
//! agrees with AWS's own blog post "Lower your Amazon OpenSearch Service storage cost with gp3 Amazon EBS volumes"
//! (gp3 is 9.6% cheaper than gp2 at $0.135/GB-month: $0.122). Other regions differ; reserved instances, data
//! transfer, snapshots beyond the free ones, and taxes are not counted. The AWS Pricing Calculator
//! (<https://calculator.aws/>) has the current price for any region. See also docs/init.md, "Cost estimate".

use serde_json::{json, Value};

/// Where the prices below come from (shown in the plan's JSON and docs/init.md).
pub const SOURCE: &str = "us-east-1 on-demand list prices of Amazon OpenSearch Service as public cost tools give them \
                          (https://aws.amazon.com/opensearch-service/pricing/ was not reachable from here); check the \
                          AWS Pricing Calculator, https://calculator.aws/";
/// The day the table was written down.
pub const CHECKED: &str = "2026-11-23";
/// The region the prices are for.
pub const PRICED_REGION: &str = "us-east-1";
/// A month, as AWS's price pages and the Pricing Calculator count it: 730 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// gp3 EBS storage attached to an OpenSearch Service data node, USD per GB-month.
pub const GP3_USD_PER_GB_MONTH: f64 = 0.122;

/// An instance type a new domain may use: current generation, and priced here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpu: u32,
    pub memory_gib: u32,
    /// on-demand, us-east-1, USD per hour
    pub usd_per_hour: f64,
    /// gp3 EBS volume size per node the type accepts (Amazon OpenSearch Service quotas, "EBS volume size quotas")
    pub min_ebs_gib: i32,
    pub max_gp3_gib: i32,
    /// what it is for, in a few words
    pub note: &'static str,
}

impl InstanceType {
    /// A burstable type (T3): Amazon OpenSearch Service's limits for T2/T3 apply (see src/rules.rs).
    pub fn burstable(&self) -> bool {
        self.name.starts_with("t3.")
    }
}

/// The types offered (Amazon OpenSearch Service Developer Guide, "Supported instance types": current generation).
pub const INSTANCE_TYPES: &[InstanceType] = &[
    InstanceType { name: "t3.small.search", vcpu: 2, memory_gib: 2, usd_per_hour: 0.036, min_ebs_gib: 10, max_gp3_gib: 100, note: "trials, dev/test" },
    InstanceType { name: "t3.medium.search", vcpu: 2, memory_gib: 4, usd_per_hour: 0.073, min_ebs_gib: 10, max_gp3_gib: 200, note: "small production" },
    InstanceType { name: "m6g.large.search", vcpu: 2, memory_gib: 8, usd_per_hour: 0.128, min_ebs_gib: 10, max_gp3_gib: 1024, note: "general purpose" },
    InstanceType { name: "m6g.xlarge.search", vcpu: 4, memory_gib: 16, usd_per_hour: 0.256, min_ebs_gib: 10, max_gp3_gib: 2048, note: "general purpose" },
    InstanceType { name: "r6g.large.search", vcpu: 2, memory_gib: 16, usd_per_hour: 0.167, min_ebs_gib: 10, max_gp3_gib: 2048, note: "memory optimized" },
    InstanceType { name: "r6g.xlarge.search", vcpu: 4, memory_gib: 32, usd_per_hour: 0.335, min_ebs_gib: 10, max_gp3_gib: 3072, note: "memory optimized" },
];

pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

/// The names, for messages.
pub fn names() -> Vec<&'static str> {
    INSTANCE_TYPES.iter().map(|t| t.name).collect()
}

/// Round to cents.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `~$26`: whole dollars, for labels.
pub fn dollars(x: f64) -> String {
    format!("~${:.0}", x.round())
}

/// What a domain of `count` nodes of `t`, each with `ebs_gib` of gp3, costs a month.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub instance_type: &'static InstanceType,
    pub nodes: i32,
    pub ebs_gib_per_node: i32,
    /// nodes × hourly × 730
    pub instances_usd: f64,
    /// nodes × GiB × gp3
    pub storage_usd: f64,
    pub total_usd: f64,
}

pub fn estimate(t: &'static InstanceType, nodes: i32, ebs_gib_per_node: i32) -> Estimate {
    let n = f64::from(nodes.max(0));
    let instances = n * t.usd_per_hour * HOURS_PER_MONTH;
    let storage = n * f64::from(ebs_gib_per_node) * GP3_USD_PER_GB_MONTH;
    Estimate {
        instance_type: t,
        nodes,
        ebs_gib_per_node,
        instances_usd: cents(instances),
        storage_usd: cents(storage),
        total_usd: cents(instances + storage),
    }
}

/// One node's instance-hours for a month (the figure beside each choice).
pub fn per_node_month(t: &InstanceType) -> f64 {
    cents(t.usd_per_hour * HOURS_PER_MONTH)
}

/// The wizard's label for a type: `t3.small.search    2 vCPU   2 GiB   ~$26/month per node   trials, dev/test`.
pub fn choice_label(t: &InstanceType) -> String {
    format!(
        "{:<18} {:>2} vCPU {:>3} GiB   {:>5}/month per node   {}",
        t.name,
        t.vcpu,
        t.memory_gib,
        dollars(per_node_month(t)),
        t.note
    )
}

/// Said when the domain is not in us-east-1: the figures are that region's.
pub fn region_caveat(home: &str) -> Option<String> {
    (home != PRICED_REGION).then(|| format!("the domain will be in {home}: these are {PRICED_REGION} prices, {home}'s differ"))
}

impl Estimate {
    /// `~$28/month: 1 × t3.small.search $26.28 + 1 × 10 GiB gp3 $1.22 (us-east-1 on-demand, prices of 2026-11-23)`
    pub fn text(&self, home: &str) -> String {
        let mut s = format!(
            "{}/month estimated: {} × {} ${:.2} + {} × {} GiB gp3 ${:.2} ({PRICED_REGION} on-demand list prices of {CHECKED}",
            dollars(self.total_usd),
            self.nodes,
            self.instance_type.name,
            self.instances_usd,
            self.nodes,
            self.ebs_gib_per_node,
            self.storage_usd,
        );
        if let Some(c) = region_caveat(home) {
            s.push_str("; ");
            s.push_str(&c);
        }
        s.push_str("; see the AWS Pricing Calculator)");
        s
    }

    /// The plan's `monthly_estimate` (details of a domain to be created).
    pub fn to_json(&self, home: &str) -> Value {
        json!({
            "usd_per_month": self.total_usd,
            "instances_usd_per_month": self.instances_usd,
            "storage_usd_per_month": self.storage_usd,
            "nodes": self.nodes,
            "instance_usd_per_hour": self.instance_type.usd_per_hour,
            "hours_per_month": HOURS_PER_MONTH as u32,
            "ebs_gib_per_node": self.ebs_gib_per_node,
            "gp3_usd_per_gb_month": GP3_USD_PER_GB_MONTH,
            "priced_region": PRICED_REGION,
            "domain_region": home,
            "prices_checked": CHECKED,
            "source": SOURCE,
            "text": self.text(home),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> &'static InstanceType {
        lookup(name).unwrap()
    }

    #[test]
    fn the_arithmetic() {
        // 1 × 0.036 × 730 = 26.28; 1 × 10 × 0.122 = 1.22
        let e = estimate(t("t3.small.search"), 1, 10);
        assert_eq!((e.instances_usd, e.storage_usd, e.total_usd), (26.28, 1.22, 27.5));
        // 2 × 0.128 × 730 = 186.88; 2 × 10 × 0.122 = 2.44
        let e = estimate(t("m6g.large.search"), 2, 10);
        assert_eq!((e.instances_usd, e.storage_usd, e.total_usd), (186.88, 2.44, 189.32));
        // 3 × 0.335 × 730 = 733.65; 3 × 10 × 0.122 = 3.66
        let e = estimate(t("r6g.xlarge.search"), 3, 10);
        assert_eq!((e.instances_usd, e.storage_usd, e.total_usd), (733.65, 3.66, 737.31));
        // 6 × 0.073 × 730 = 319.74; 6 × 100 × 0.122 = 73.2
        let e = estimate(t("t3.medium.search"), 6, 100);
        assert_eq!((e.instances_usd, e.storage_usd, e.total_usd), (319.74, 73.2, 392.94));
        // every type: the total is the sum of its parts, and grows with the nodes
        for ty in INSTANCE_TYPES {
            let one = estimate(ty, 1, 10);
            let two = estimate(ty, 2, 10);
            assert!((one.total_usd - (one.instances_usd + one.storage_usd)).abs() < 0.005, "{ty:?}");
            assert!((two.total_usd - 2.0 * one.total_usd).abs() < 0.011, "{ty:?}");
        }
    }

    #[test]
    fn per_node_labels() {
        assert_eq!(per_node_month(t("t3.small.search")), 26.28);
        assert_eq!(per_node_month(t("m6g.xlarge.search")), 186.88);
        assert_eq!(dollars(26.28), "~$26");
        assert_eq!(dollars(27.5), "~$28");
        let l = choice_label(t("t3.small.search"));
        assert!(l.starts_with("t3.small.search") && l.contains("2 vCPU") && l.contains("2 GiB") && l.contains("~$26/month per node"), "{l}");
        // the labels line up
        let widths: Vec<usize> = INSTANCE_TYPES.iter().map(|t| choice_label(t).find("/month").unwrap()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}");
    }

    #[test]
    fn the_text_names_the_region_priced() {
        let e = estimate(t("t3.small.search"), 1, 10);
        let home = e.text("us-east-1");
        assert!(home.starts_with("~$28/month estimated: 1 × t3.small.search $26.28 + 1 × 10 GiB gp3 $1.22"), "{home}");
        assert!(home.contains("us-east-1 on-demand") && home.contains(CHECKED) && !home.contains("will be in"), "{home}");
        let away = e.text("eu-west-1");
        assert!(away.contains("the domain will be in eu-west-1: these are us-east-1 prices"), "{away}");
        let j = e.to_json("eu-west-1");
        assert_eq!(j["usd_per_month"], 27.5);
        assert_eq!(j["priced_region"], "us-east-1");
        assert_eq!(j["domain_region"], "eu-west-1");
        assert_eq!(j["hours_per_month"], 730);
    }

    #[test]
    fn table_is_current_generation_and_unique() {
        let mut n = names();
        n.dedup();
        assert_eq!(n.len(), INSTANCE_TYPES.len());
        assert!(INSTANCE_TYPES.iter().all(|t| t.name.ends_with(".search") && t.usd_per_hour > 0.0 && t.min_ebs_gib <= 10));
        assert_eq!(INSTANCE_TYPES[0].name, "t3.small.search", "the default comes first");
    }
}
