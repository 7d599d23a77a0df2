use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

/// What a provider hands back: how to authenticate one request to one cluster.
///
/// `Debug` never shows the token or the private key.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use kubeauth_core::Credential;
///
/// let cred = Credential::bearer_until("eyJhbGciOi…", SystemTime::now() + Duration::from_secs(900));
/// assert!(!format!("{cred:?}").contains("eyJ"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    BearerToken {
        /// The token.
        token: SecretString,
        /// When the token stops being accepted, if known.
        expires_at: Option<SystemTime>,
    },
    /// A TLS client certificate.
    ClientCertificate {
        /// PEM of the certificate (and any intermediates).
        certificate_pem: String,
        /// PEM of the private key.
        private_key_pem: SecretString,
        /// When the certificate stops being accepted, if known.
        expires_at: Option<SystemTime>,
    },
    /// No credential at all; accepted only for the `localKubectlProxy` provider.
    Anonymous,
}

/// The kind of a [`Credential`], without its secret: for logs, reports and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A bearer token.
    BearerToken,
    /// A TLS client certificate.
    ClientCertificate,
    /// No credential.
    Anonymous,
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BearerToken => "bearer token",
            Self::ClientCertificate => "x509 client certificate",
            Self::Anonymous => "anonymous",
        })
    }
}

impl Credential {
    /// A bearer token whose lifetime is unknown.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self::BearerToken { token: SecretString::from(token.into()), expires_at: None }
    }

    /// A bearer token that expires at `expires_at`.
    pub fn bearer_until(token: impl Into<String>, expires_at: SystemTime) -> Self {
        Self::BearerToken { token: SecretString::from(token.into()), expires_at: Some(expires_at) }
    }

    /// A TLS client certificate and its private key, both PEM.
    pub fn client_certificate(certificate_pem: impl Into<String>, private_key_pem: impl Into<String>) -> Self {
        Self::ClientCertificate {
            certificate_pem: certificate_pem.into(),
            private_key_pem: SecretString::from(private_key_pem.into()),
            expires_at: None,
        }
    }

    /// The kind, for messages.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::BearerToken { .. } => CredentialKind::BearerToken,
            Self::ClientCertificate { .. } => CredentialKind::ClientCertificate,
            Self::Anonymous => CredentialKind::Anonymous,
        }
    }

    /// When the credential stops being accepted, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Self::BearerToken { expires_at, .. } | Self::ClientCertificate { expires_at, .. } => *expires_at,
            Self::Anonymous => None,
        }
    }

    /// The same credential with a known expiry.
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        match &mut self {
            Self::BearerToken { expires_at, .. } | Self::ClientCertificate { expires_at, .. } => *expires_at = Some(at),
            Self::Anonymous => {}
        }
        self
    }

    /// Whether the credential is still accepted at `now` (one without an expiry always is).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.expires_at().is_none_or(|at| at > now)
    }

    /// Whether the credential is valid for at least `margin` more after `now`.
    pub fn is_fresh_at(&self, now: SystemTime, margin: Duration) -> bool {
        self.expires_at().is_none_or(|at| at > now + margin)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BearerToken { expires_at, .. } => f
                .debug_struct("BearerToken")
                .field("token", &format_args!("[redacted]"))
                .field("expires_at", expires_at)
                .finish(),
            Self::ClientCertificate { certificate_pem, expires_at, .. } => f
                .debug_struct("ClientCertificate")
                .field("certificate_pem", &format_args!("<{} bytes>", certificate_pem.len()))
                .field("private_key_pem", &format_args!("[redacted]"))
                .field("expires_at", expires_at)
                .finish(),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Credential::bearer("tok-123"),
            Credential::client_certificate("CERT", "-----BEGIN PRIVATE KEY-----k3y"),
            Credential::Anonymous
        );
        assert!(!shown.contains("tok-123") && !shown.contains("k3y"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn freshness_follows_the_expiry() {
        let now = SystemTime::now();
        let c = Credential::bearer_until("t", now + Duration::from_secs(30));
        assert!(c.is_valid_at(now));
        assert!(!c.is_fresh_at(now, Duration::from_secs(60)));
        assert!(c.is_fresh_at(now, Duration::from_secs(10)));
        assert!(!c.is_valid_at(now + Duration::from_secs(31)));
        assert!(Credential::bearer("t").is_fresh_at(now, Duration::from_secs(3600)));
    }
}
