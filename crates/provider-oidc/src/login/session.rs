//! Login sessions on disk: one JSON file per (login, issuer, client, scopes) in the `sessions` folder of
//! kubeauth's [`FileStore`], with its lock so that parallel kubectl calls refresh once.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubeauth_core::store::{FileStore, StoreError, StoreLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::LoginSettings;

/// What a login leaves behind: the tokens, and what they are for.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Session {
    /// The issuer the tokens come from.
    pub issuer: String,
    /// The client they were issued to.
    pub client_id: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The user (`sub` of the ID token).
    pub subject: String,
    /// The user's e-mail address, when the ID token says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The ID token (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The access token (secret).
    pub access_token: String,
    /// The refresh token (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the token that is sent (ID or access token) expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("access_token", &"[redacted]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Session {
    /// When the token that is sent expires.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    /// Whether the token that is sent stays valid for longer than `margin` from now.
    pub fn is_fresh(&self, margin: Duration) -> bool {
        self.expires_at() > SystemTime::now() + margin
    }

    /// Who the session is for: the e-mail address, else the subject.
    pub fn user(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.subject)
    }
}

/// Where sessions are kept: the `sessions` folder of kubeauth's [`FileStore`].
#[derive(Debug, Clone)]
pub struct SessionStore {
    files: FileStore,
}

impl SessionStore {
    /// The user's sessions: `sessions/` under kubeauth's folder (`$KUBEAUTH_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/kubeauth`, else `~/.cache/kubeauth`).
    pub fn user() -> Result<Self, StoreError> {
        FileStore::user()?.folder("sessions").map(Self::new)
    }

    /// Sessions in `files`' folder.
    pub fn new(files: FileStore) -> Self {
        Self { files }
    }

    /// Sessions in the folder `dir` (for tests and tools that keep their own folder).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self::new(FileStore::at(dir))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The file name of a login's session: its name, and a hash of the issuer, client and scopes.
    fn file_name(settings: &LoginSettings) -> String {
        let mut hash = Sha256::new();
        for part in [settings.name.as_str(), settings.issuer.as_str(), settings.client_id.as_str()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for scope in &settings.scopes {
            hash.update(scope.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let safe: String = settings
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(40)
            .collect();
        format!("{safe}-{short}.json")
    }

    /// The file of a login's session.
    pub fn path(&self, settings: &LoginSettings) -> PathBuf {
        self.files.dir().join(Self::file_name(settings))
    }

    /// The stored session, if there is one for this issuer and client. An unreadable file counts as none; a
    /// store that is not safe to use is an error.
    pub fn read(&self, settings: &LoginSettings) -> Result<Option<Session>, StoreError> {
        let Some(bytes) = self.files.read(&Self::file_name(settings))? else { return Ok(None) };
        match serde_json::from_slice::<Session>(&bytes) {
            Ok(session) if session.issuer == settings.issuer && session.client_id == settings.client_id => {
                Ok(Some(session))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(provider = %settings.name, error = %e, "ignoring an unreadable login session file");
                Ok(None)
            }
        }
    }

    /// Stores a session (see [`FileStore::write`]).
    pub fn write(&self, settings: &LoginSettings, session: &Session) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(session).map_err(|e| StoreError::Io {
            what: "encode",
            path: self.path(settings),
            source: std::io::Error::other(e),
        })?;
        self.files.write(&Self::file_name(settings), &bytes)
    }

    /// Removes a login's session; whether there was one.
    pub fn remove(&self, settings: &LoginSettings) -> Result<bool, StoreError> {
        self.files.remove(&Self::file_name(settings))
    }

    /// Removes every session in the store; how many there were.
    pub fn remove_all(&self) -> Result<usize, StoreError> {
        self.files.remove_all(".json")
    }

    /// Waits for and takes the lock of a login's session, without blocking the async runtime.
    pub async fn lock(&self, settings: &LoginSettings) -> Result<StoreLock, StoreError> {
        self.files.lock(&Self::file_name(settings)).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn session(token: &str) -> Session {
        Session {
            issuer: "https://issuer.example".into(),
            client_id: "kubeauth".into(),
            scopes: vec!["email".into()],
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            id_token: Some(format!("id-{token}")),
            access_token: format!("access-{token}"),
            refresh_token: Some(format!("refresh-{token}")),
            expires_at: 4_000_000_000,
        }
    }

    #[test]
    fn sessions_are_stored_privately_per_issuer_client_and_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::in_dir(dir.path().join("sessions"));
        let settings = LoginSettings::oidc("okta", "https://issuer.example", "kubeauth");
        assert_eq!(store.read(&settings).unwrap(), None);
        store.write(&settings, &session("one")).unwrap();
        assert_eq!(store.read(&settings).unwrap(), Some(session("one")));
        let path = store.path(&settings);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777, 0o700);

        // Other scopes, client or issuer: another session.
        let mut other = settings.clone();
        other.scopes.push("groups".into());
        assert_ne!(store.path(&other), path);
        assert_eq!(store.read(&other).unwrap(), None);
        let other_client = LoginSettings::oidc("okta", "https://issuer.example", "another");
        assert_ne!(store.path(&other_client), path);

        assert!(store.remove(&settings).unwrap());
        assert!(!store.remove(&settings).unwrap());
        store.write(&settings, &session("two")).unwrap();
        store.write(&other, &session("three")).unwrap();
        assert_eq!(store.remove_all().unwrap(), 2);
        assert_eq!(store.read(&other).unwrap(), None);
    }

    #[test]
    fn a_file_for_another_issuer_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::in_dir(dir.path());
        let settings = LoginSettings::oidc("okta", "https://issuer.example", "kubeauth");
        let mut foreign = session("x");
        foreign.issuer = "https://elsewhere.example".into();
        store.write(&settings, &foreign).unwrap();
        assert_eq!(store.read(&settings).unwrap(), None);
        std::fs::write(store.path(&settings), "not json").unwrap();
        assert_eq!(store.read(&settings).unwrap(), None);
    }

    #[test]
    fn debug_output_has_no_token() {
        let text = format!("{:?}", session("s3cr3t"));
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("alice@example.com"));
        let mut settings = LoginSettings::oidc("corp", "https://issuer.example", "client");
        settings.client_secret = Some("client-s3cr3t".to_owned().into());
        assert!(!format!("{settings:?}").contains("client-s3cr3t"));
    }
}
