//! AWS regions and partitions, as EKS's token verifier knows them.

/// A region name as AWS writes them: `us-east-1`, `eu-west-3`, `cn-north-1`, `us-gov-west-1`, `ap-southeast-5`.
pub(crate) fn is_valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts.last().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// The DNS suffix of a region's partition.
pub(crate) fn partition_domain(region: &str) -> &'static str {
    if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" }
}

/// The regional STS endpoint's host, which EKS accepts in tokens.
pub fn sts_host(region: &str) -> String {
    format!("sts.{region}.{}", partition_domain(region))
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`.
pub(crate) fn is_valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_their_sts_hosts() {
        for good in ["us-east-1", "eu-west-3", "cn-north-1", "us-gov-west-1", "ap-southeast-5"] {
            assert!(is_valid_region(good), "{good}");
        }
        for bad in ["", "us-east", "US-EAST-1", "useast1", "us-east-1a", "us_east_1", "u-east-1"] {
            assert!(!is_valid_region(bad), "{bad}");
        }
        assert_eq!(sts_host("eu-west-1"), "sts.eu-west-1.amazonaws.com");
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(sts_host("us-gov-west-1"), "sts.us-gov-west-1.amazonaws.com");
    }

    #[test]
    fn role_arns() {
        assert!(is_valid_role_arn("arn:aws:iam::123456789012:role/eks-reader"));
        assert!(is_valid_role_arn("arn:aws-cn:iam::123456789012:role/path/to/role"));
        for bad in [
            "arn:aws:iam::12345:role/x",
            "arn:aws:sts::123456789012:role/x",
            "arn:aws:iam::123456789012:user/x",
            "role/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert!(!is_valid_role_arn(bad), "{bad}");
        }
    }
}
