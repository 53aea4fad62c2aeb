//! EC2 `DescribeRegions`, the one EC2 call trailsetup makes, through [`super::rpc`] (the SDK's Query call:
//! `Action=DescribeRegions&Version=2016-11-15&AllRegions=true`).

use aws_config::SdkConfig;

use super::rpc::{self, Params};

/// What the EC2 API Reference's `DescribeRegions` gives per region (its `Region` type) that trailsetup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// `opt-in-not-required`, `opted-in` or `not-opted-in`
    pub opt_in_status: String,
}

/// Every region of the partition with its opt-in status (`AllRegions=true`: also those not enabled).
pub async fn describe_regions(cfg: &SdkConfig) -> anyhow::Result<Vec<Region>> {
    const WHAT: &str = "listing the account's regions (EC2 DescribeRegions)";
    let xml = rpc::call(cfg, &rpc::EC2, "DescribeRegions", Params::Form(vec![("AllRegions".into(), "true".into())]))
        .await
        .map_err(|e| e.explain(WHAT, "ec2:DescribeRegions"))?;
    parse_regions(&xml).map_err(|e| anyhow::anyhow!("{WHAT}: EC2's answer could not be read: {e:#}"))
}

/// The regions of a `DescribeRegionsResponse` (`regionInfo` → `item` → `regionName`, `optInStatus`, in any order).
fn parse_regions(xml: &str) -> anyhow::Result<Vec<Region>> {
    rpc::xml_items(xml, "DescribeRegionsResponse", &["regionInfo", "item"], |item| {
        let [name, opt_in] = rpc::xml_fields(item, ["regionName", "optInStatus"])?;
        Ok(name.map(|name| Region { name, opt_in_status: opt_in.unwrap_or_default() }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The EC2 API Reference's DescribeRegions example answer (fields in AWS's order), and moto's (optInStatus
    /// before regionName).
    #[test]
    fn reads_regions_in_any_field_order() {
        let aws = r#"<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
   <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
   <regionInfo>
      <item><regionName>us-east-1</regionName><regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>
      <item><regionName>af-south-1</regionName><regionEndpoint>ec2.af-south-1.amazonaws.com</regionEndpoint><optInStatus>not-opted-in</optInStatus></item>
   </regionInfo>
</DescribeRegionsResponse>"#;
        let moto = r#"<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>x</requestId><regionInfo>
<item><regionEndpoint>ec2.me-south-1.amazonaws.com</regionEndpoint><optInStatus>opted-in</optInStatus><regionName>me-south-1</regionName></item>
</regionInfo></DescribeRegionsResponse>"#;
        assert_eq!(
            parse_regions(aws).unwrap(),
            vec![
                Region { name: "us-east-1".into(), opt_in_status: "opt-in-not-required".into() },
                Region { name: "af-south-1".into(), opt_in_status: "not-opted-in".into() }
            ]
        );
        assert_eq!(parse_regions(moto).unwrap(), vec![Region { name: "me-south-1".into(), opt_in_status: "opted-in".into() }]);
        assert!(parse_regions("<Response><Errors/></Response>").is_err());
    }
}
