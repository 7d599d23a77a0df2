//! Base AWS credentials and assumed roles, cached until 5 minutes before they expire (Backstage assumes the
//! role again on every request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use kubeauth_core::Error;

use crate::KEY;

/// Credentials are replaced this long before they expire.
const MARGIN: Duration = Duration::from_secs(5 * 60);

type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

/// Where the base credentials come from.
pub(crate) enum Base {
    /// Given.
    Static(Credentials),
    /// A profile of the shared config and credentials files, and the region of its own calls.
    #[cfg_attr(not(feature = "credential-chain"), allow(dead_code))]
    Profile { name: String, region: Option<String> },
    /// The default chain.
    Chain,
}

pub(crate) struct RoleCache {
    base: Base,
    #[cfg_attr(not(feature = "credential-chain"), allow(dead_code))]
    sts_endpoint: Option<String>,
    #[cfg_attr(not(feature = "credential-chain"), allow(dead_code))]
    session_name: String,
    #[cfg(feature = "credential-chain")]
    sdk: tokio::sync::OnceCell<aws_config::SdkConfig>,
    slots: Mutex<HashMap<String, Slot>>,
}

fn fresh(credentials: &Credentials) -> bool {
    credentials.expiry().is_none_or(|at| at > SystemTime::now() + MARGIN)
}

fn failed(cluster: &str, message: String) -> Error {
    Error::Provider { cluster: cluster.to_owned(), provider: KEY.into(), source: message.into() }
}

impl RoleCache {
    pub(crate) fn new(base: Base, sts_endpoint: Option<String>, session_name: String) -> Self {
        Self {
            base,
            sts_endpoint,
            session_name,
            #[cfg(feature = "credential-chain")]
            sdk: tokio::sync::OnceCell::new(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: String) -> Slot {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default().clone()
    }

    /// The base credentials: the static ones, else the profile's or the default chain's (kept while fresh).
    pub(crate) async fn base(&self, cluster: &str, region: &str) -> Result<Credentials, Error> {
        if let Base::Static(credentials) = &self.base {
            return Ok(credentials.clone());
        }
        #[cfg(feature = "credential-chain")]
        {
            use aws_credential_types::provider::ProvideCredentials as _;
            let slot = self.slot("base".into());
            let mut held = slot.lock().await;
            if let Some(credentials) = held.as_ref().filter(|c| fresh(c)) {
                return Ok(credentials.clone());
            }
            let answer = match &self.base {
                // The profile alone, as Backstage's `fromIni`: not the chain that starts with the environment.
                Base::Profile { name, region: profile_region } => {
                    let region = aws_config::Region::new(profile_region.clone().unwrap_or_else(|| region.to_owned()));
                    aws_config::profile::ProfileFileCredentialsProvider::builder()
                        .configure(&aws_config::provider_config::ProviderConfig::default().with_region(Some(region)))
                        .profile_name(name)
                        .build()
                        .provide_credentials()
                        .await
                }
                _ => {
                    let sdk = self.sdk(region).await;
                    let provider = sdk
                        .credentials_provider()
                        .ok_or_else(|| failed(cluster, "the AWS SDK has no credential chain".into()))?;
                    provider.provide_credentials().await
                }
            };
            let credentials = answer.map_err(|e| {
                let source = match &self.base {
                    Base::Profile { name, .. } => format!("profile `{name}` (aws.mainAccount.profile)"),
                    _ => "the default chain (environment, profile, SSO, web identity, ECS or EC2 metadata)".into(),
                };
                failed(cluster, format!("no AWS credentials from {source}: {}", kubeauth_core::report(&e)))
            })?;
            *held = Some(credentials.clone());
            Ok(credentials)
        }
        #[cfg(not(feature = "credential-chain"))]
        {
            // Without the chain, the environment's static credentials are the only other source.
            let _ = region;
            if let Base::Profile { name, .. } = &self.base {
                return Err(Error::NotConfigured {
                    cluster: cluster.to_owned(),
                    provider: KEY.into(),
                    reason: format!(
                        "the AWS profile `{name}` needs the AWS credential chain, which this build lacks (feature credential-chain)"
                    ),
                });
            }
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(key), Some(secret)) => {
                    Ok(Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "kubeauth-environment"))
                }
                _ => Err(Error::NotConfigured {
                    cluster: cluster.to_owned(),
                    provider: KEY.into(),
                    reason:
                        "no static credentials given and none in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and this \
                             build has no AWS credential chain (feature credential-chain)"
                            .into(),
                }),
            }
        }
    }

    #[cfg(feature = "credential-chain")]
    async fn sdk(&self, region: &str) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                // The region is set so that loading never probes instance metadata for one.
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(region.to_owned()))
                    .load()
                    .await
            })
            .await
    }

    /// Credentials of `role`, assumed with the base credentials (kept while fresh).
    pub(crate) async fn assumed(
        &self,
        cluster: &str,
        region: &str,
        role: &str,
        external_id: Option<&str>,
        session: Option<&str>,
    ) -> Result<Credentials, Error> {
        let session = session.unwrap_or(&self.session_name).to_owned();
        let slot = self.slot(format!("{role}\u{0}{}\u{0}{session}\u{0}{region}", external_id.unwrap_or_default()));
        let mut held = slot.lock().await;
        if let Some(credentials) = held.as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let base = self.base(cluster, region).await?;
        let credentials = self.assume(cluster, region, role, external_id, &session, base).await?;
        *held = Some(credentials.clone());
        Ok(credentials)
    }

    #[cfg(feature = "credential-chain")]
    async fn assume(
        &self,
        cluster: &str,
        region: &str,
        role: &str,
        external_id: Option<&str>,
        session: &str,
        base: Credentials,
    ) -> Result<Credentials, Error> {
        let sdk = self.sdk(region).await;
        let mut config = aws_sdk_sts::config::Builder::from(sdk)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(base));
        if let Some(url) = &self.sts_endpoint {
            config = config.endpoint_url(url);
        }
        let client = aws_sdk_sts::Client::from_conf(config.build());
        tracing::debug!(%role, "assuming role");
        let answer = client
            .assume_role()
            .role_arn(role)
            .role_session_name(session)
            .set_external_id(external_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| failed(cluster, format!("AssumeRole {role} failed: {}", kubeauth_core::report(&e))))?;
        let c =
            answer.credentials.ok_or_else(|| failed(cluster, format!("AssumeRole {role} returned no credentials")))?;
        let expiry = SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "kubeauth-assume-role",
        ))
    }

    #[cfg(not(feature = "credential-chain"))]
    async fn assume(
        &self,
        cluster: &str,
        _region: &str,
        role: &str,
        _external_id: Option<&str>,
        _session: &str,
        _base: Credentials,
    ) -> Result<Credentials, Error> {
        Err(failed(cluster, format!("cannot assume {role}: this build has no STS client (feature credential-chain)")))
    }
}
