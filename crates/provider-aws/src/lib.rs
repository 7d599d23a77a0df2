//! The `aws` provider: EKS tokens as the application's AWS identity.
//!
//! For each cluster it presigns an STS `GetCallerIdentity` request for the cluster's id (see [`eks_token`]),
//! with:
//! - base credentials from the AWS default chain (environment, shared config and credentials files with
//!   `AWS_PROFILE`, SSO, web identity / IRSA, ECS and EC2 instance metadata), behind the default feature
//!   `credential-chain`; or credentials given to [`AwsProviderBuilder::static_credentials`]; or a profile of the
//!   shared AWS config and credentials files ([`AwsProviderBuilder::profile`], Backstage's
//!   `aws.mainAccount.profile`);
//! - optionally a role assumed on top (`kubernetes.io/aws-assume-role`, with `kubernetes.io/aws-external-id`),
//!   whose credentials are kept until 5 minutes before they expire;
//! - the region of `kubernetes.io/aws-region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`;
//! - tokens cached per (cluster id, region, role) and reused until a minute before their 14-minute life ends.
//!
//! The token always names the regional STS endpoint, the host EKS accepts. `AWS_ENDPOINT_URL_STS` (or
//! [`AwsProviderBuilder::sts_endpoint`]) redirects the provider's own STS calls (AssumeRole, web identity).

mod region;
mod role;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use kubeauth_core::{
    ClusterDetails, Credential, CredentialFuture, Error, KeyedCredentialCache, ServerSideProvider, ValidationIssue,
    metadata,
};
use tracing::Instrument as _;

pub use region::sts_host;
pub use token::{PRESIGN_EXPIRES, TOKEN_LIFETIME, TOKEN_PREFIX, eks_token};

use crate::role::RoleCache;

/// The provider key, as written in `authProvider`.
pub const KEY: &str = "aws";

/// kubeauth: the session name used when assuming a role (default `kubeauth`).
pub const SESSION_NAME: &str = "kubernetes.io/aws-session-name";

/// Tokens are reused until this long before they expire.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The `aws` provider. See the [crate docs](crate).
pub struct AwsProvider {
    tokens: KeyedCredentialCache<(String, String, Option<String>)>,
    roles: RoleCache,
    default_region: String,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider").field("default_region", &self.default_region).finish_non_exhaustive()
    }
}

/// Settings of an [`AwsProvider`].
#[derive(Default)]
pub struct AwsProviderBuilder {
    static_credentials: Option<Credentials>,
    sts_endpoint: Option<String>,
    default_region: Option<String>,
    session_name: Option<String>,
    profile: Option<String>,
    profile_region: Option<String>,
}

impl std::fmt::Debug for AwsProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProviderBuilder")
            .field("static_credentials", &self.static_credentials.as_ref().map(|_| "[redacted]"))
            .field("sts_endpoint", &self.sts_endpoint)
            .field("default_region", &self.default_region)
            .field("profile", &self.profile)
            .finish()
    }
}

impl AwsProviderBuilder {
    /// Use these credentials instead of the default chain.
    pub fn static_credentials(
        mut self,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Self {
        self.static_credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            session_token.map(str::to_owned),
            None,
            "kubeauth-static",
        ));
        self
    }

    /// Take the base credentials from this profile of the shared AWS config and credentials files instead of
    /// the default chain (static credentials win), with `region` for the profile's own calls (SSO, web
    /// identity). Needs the feature `credential-chain`.
    pub fn profile(mut self, name: impl Into<String>, region: Option<String>) -> Self {
        self.profile = Some(name.into());
        self.profile_region = region;
        self
    }

    /// Send the provider's own STS calls (AssumeRole) to this URL instead of the regional endpoint.
    pub fn sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint = Some(url.into());
        self
    }

    /// The region of clusters without `kubernetes.io/aws-region` (default: `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// `us-east-1`).
    pub fn default_region(mut self, region: impl Into<String>) -> Self {
        self.default_region = Some(region.into());
        self
    }

    /// The role session name (default `kubeauth`; a cluster's `kubernetes.io/aws-session-name` wins).
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = Some(name.into());
        self
    }

    /// The provider.
    pub fn build(self) -> AwsProvider {
        let default_region = self
            .default_region
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        AwsProvider {
            tokens: KeyedCredentialCache::new(TOKEN_REFRESH_MARGIN),
            roles: RoleCache::new(
                match (self.static_credentials, self.profile) {
                    (Some(credentials), _) => role::Base::Static(credentials),
                    (None, Some(name)) => role::Base::Profile { name, region: self.profile_region },
                    (None, None) => role::Base::Chain,
                },
                self.sts_endpoint,
                self.session_name.unwrap_or_else(|| "kubeauth".into()),
            ),
            default_region,
        }
    }
}

impl Default for AwsProvider {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl AwsProvider {
    /// The provider with the default chain and the environment's region.
    pub fn new() -> Self {
        Self::default()
    }

    /// Settings.
    pub fn builder() -> AwsProviderBuilder {
        AwsProviderBuilder::default()
    }

    fn region<'a>(&'a self, cluster: &'a ClusterDetails) -> &'a str {
        cluster.auth_metadata.get(metadata::AWS_REGION).map(String::as_str).unwrap_or(&self.default_region)
    }

    /// The token for `cluster`, made now (no cache).
    async fn fresh_token(&self, cluster: &ClusterDetails, region: &str, cluster_id: &str) -> Result<Credential, Error> {
        let role = cluster.auth_metadata.get(metadata::AWS_ASSUME_ROLE);
        let credentials = match role {
            Some(role) => {
                let external_id = cluster.auth_metadata.get(metadata::AWS_EXTERNAL_ID).map(String::as_str);
                let session = cluster.auth_metadata.get(SESSION_NAME).map(String::as_str);
                self.roles.assumed(&cluster.name, region, role, external_id, session).await?
            }
            None => self.roles.base(&cluster.name, region).await?,
        };
        let now = SystemTime::now();
        let token = eks_token(&credentials, region, cluster_id, now).map_err(|e| Error::Provider {
            cluster: cluster.name.clone(),
            provider: KEY.into(),
            source: e.into(),
        })?;
        Ok(Credential::bearer_until(token, now + TOKEN_LIFETIME))
    }
}

impl ServerSideProvider for AwsProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let region = self.region(cluster).to_owned();
            let cluster_id =
                cluster.auth_metadata.get(metadata::X_K8S_AWS_ID).cloned().unwrap_or_else(|| cluster.name.clone());
            let role = cluster.auth_metadata.get(metadata::AWS_ASSUME_ROLE).cloned();
            let span = tracing::debug_span!("aws", cluster = %cluster.name, %region, cluster_id = %cluster_id);
            let cache = self.tokens.cache((cluster_id.clone(), region.clone(), role));
            let cached = cache.get(|| self.fresh_token(cluster, &region, &cluster_id)).instrument(span).await?;
            Ok(cached.credential)
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        let mut issues = Vec::new();
        let md = |k: &str| cluster.auth_metadata.get(k).map(String::as_str);
        if let Some(region) = md(metadata::AWS_REGION)
            && !region::is_valid_region(region)
        {
            issues.push(ValidationIssue::new(
                format!("authMetadata.{}", metadata::AWS_REGION),
                format!("`{region}` is not an AWS region (like us-east-1)"),
            ));
        }
        match md(metadata::AWS_ASSUME_ROLE) {
            Some(arn) if !region::is_valid_role_arn(arn) => issues.push(ValidationIssue::new(
                "assumeRole",
                format!("`{arn}` is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"),
            )),
            None if md(metadata::AWS_EXTERNAL_ID).is_some() => {
                issues.push(ValidationIssue::new("externalId", "is only used with assumeRole, which is not set"));
            }
            _ => {}
        }
        if md(metadata::X_K8S_AWS_ID).is_some_and(|id| id.trim().is_empty()) {
            issues.push(ValidationIssue::new(format!("authMetadata.{}", metadata::X_K8S_AWS_ID), "must not be empty"));
        }
        issues
    }
}

/// Shared handle, for registries.
pub type SharedAwsProvider = Arc<AwsProvider>;

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(md: &[(&str, &str)]) -> ClusterDetails {
        let mut c = ClusterDetails::new("eks-prod", "https://ABC.gr7.eu-west-1.eks.amazonaws.com");
        c.set_auth_provider(KEY);
        for (k, v) in md {
            c.auth_metadata.insert((*k).into(), (*v).into());
        }
        c
    }

    #[test]
    fn malformed_regions_and_role_arns_are_config_errors() {
        let provider = AwsProvider::builder().default_region("eu-west-1").build();
        assert_eq!(provider.validate_cluster(&cluster(&[])), vec![]);
        let issues = provider
            .validate_cluster(&cluster(&[(metadata::AWS_REGION, "europe"), (metadata::AWS_ASSUME_ROLE, "reader")]));
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["authMetadata.kubernetes.io/aws-region", "assumeRole"]);
        let issues = provider.validate_cluster(&cluster(&[(metadata::AWS_EXTERNAL_ID, "x")]));
        assert_eq!(issues[0].key, "externalId");
    }

    #[tokio::test]
    async fn tokens_are_cached_per_cluster_id_region_and_role() {
        let provider = AwsProvider::builder()
            .static_credentials("AKIDEXAMPLE", "secret", None)
            .default_region("eu-west-1")
            .build();
        let a = provider.credential(&cluster(&[])).await.unwrap();
        let again = provider.credential(&cluster(&[])).await.unwrap();
        let other = provider.credential(&cluster(&[(metadata::AWS_REGION, "us-east-2")])).await.unwrap();
        use kubeauth_core::ExposeSecret as _;
        let token = |c: &Credential| match c {
            Credential::BearerToken { token, .. } => token.expose_secret().to_owned(),
            _ => unreachable!(),
        };
        assert_eq!(token(&a), token(&again), "the second call is served from the cache");
        assert_ne!(token(&a), token(&other));
        let lifetime = a.expires_at().unwrap().duration_since(SystemTime::now()).unwrap();
        assert!(lifetime > Duration::from_secs(13 * 60) && lifetime <= TOKEN_LIFETIME, "{lifetime:?}");
        assert!(!format!("{a:?} {provider:?}").contains("secret"));
    }
}
