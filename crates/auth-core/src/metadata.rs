//! Well-known keys of [`ClusterDetails::auth_metadata`](crate::ClusterDetails::auth_metadata).
//!
//! The `kubernetes.io/` keys are Backstage's; the ones marked "kubeauth" are ours and are ignored by Backstage.

/// Which authentication provider serves the cluster (config key `authProvider`).
pub const AUTH_PROVIDER: &str = "kubernetes.io/auth-provider";
/// Which OIDC provider's ID token the `oidc` provider sends (config key `oidcTokenProvider`).
pub const OIDC_TOKEN_PROVIDER: &str = "kubernetes.io/oidc-token-provider";
/// The IAM role the `aws` provider assumes (legacy config key `assumeRole`).
pub const AWS_ASSUME_ROLE: &str = "kubernetes.io/aws-assume-role";
/// The external id passed when assuming [`AWS_ASSUME_ROLE`] (legacy config key `externalId`).
pub const AWS_EXTERNAL_ID: &str = "kubernetes.io/aws-external-id";
/// The EKS cluster id signed into the token (defaults to the cluster name).
pub const X_K8S_AWS_ID: &str = "kubernetes.io/x-k8s-aws-id";
/// kubeauth: the AWS region of the cluster's STS endpoint.
pub const AWS_REGION: &str = "kubernetes.io/aws-region";
/// kubeauth: the Entra ID scope the `azure` provider asks a token for.
pub const AZURE_SCOPE: &str = "kubernetes.io/azure-scope";

/// kubeauth: the Pinniped Concierge authenticator a `pinniped` cluster's token is exchanged with,
/// `JWTAuthenticator/<name>` or `WebhookAuthenticator/<name>`.
pub const PINNIPED_AUTHENTICATOR: &str = "kubernetes.io/pinniped-authenticator";
/// kubeauth: where the Pinniped Concierge's `TokenCredentialRequest` API is reached (default: the cluster's URL).
pub const PINNIPED_CONCIERGE_ENDPOINT: &str = "kubernetes.io/pinniped-concierge-endpoint";
/// kubeauth: base64 of the PEM CA bundle of [`PINNIPED_CONCIERGE_ENDPOINT`] (default: the cluster's CA).
pub const PINNIPED_CONCIERGE_CA_DATA: &str = "kubernetes.io/pinniped-concierge-ca-data";
/// kubeauth: the Pinniped API group suffix (default `pinniped.dev`).
pub const PINNIPED_API_GROUP_SUFFIX: &str = "kubernetes.io/pinniped-api-group-suffix";

/// kubeauth: the kubeconfig file a `kubeconfig` cluster's user is read from (set by the kubeconfig locator).
pub const KUBECONFIG_FILE: &str = "kubeauth.io/kubeconfig-file";
/// kubeauth: the name of the cluster's user in [`KUBECONFIG_FILE`] (set by the kubeconfig locator).
pub const KUBECONFIG_USER: &str = "kubeauth.io/kubeconfig-user";

/// Keys whose values are safe to show in `Debug` output and logs; every other value is redacted.
pub const PUBLIC_KEYS: &[&str] = &[
    AUTH_PROVIDER,
    OIDC_TOKEN_PROVIDER,
    AWS_ASSUME_ROLE,
    X_K8S_AWS_ID,
    AWS_REGION,
    AZURE_SCOPE,
    KUBECONFIG_FILE,
    KUBECONFIG_USER,
    PINNIPED_AUTHENTICATOR,
    PINNIPED_CONCIERGE_ENDPOINT,
    PINNIPED_API_GROUP_SUFFIX,
];
