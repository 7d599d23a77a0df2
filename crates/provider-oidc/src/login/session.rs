//! The on-disk store of login sessions: one JSON file per (provider, issuer, client, scopes), mode 0600 in a
//! 0700 folder, and a lock file beside it so that parallel kubectl calls refresh once.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::LoginSettings;

/// What a login leaves behind: the tokens, and what they are for.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
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

/// Where sessions are kept.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

/// A held lock on one session file; released when dropped.
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
}

impl SessionStore {
    /// A store in `dir` (created with mode 0700 on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a provider's session: its name, and a hash of the issuer, client and scopes.
    pub fn path(&self, settings: &LoginSettings) -> PathBuf {
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
        self.dir.join(format!("{safe}-{short}.json"))
    }

    /// The stored session, if there is one and it is readable.
    pub fn read(&self, settings: &LoginSettings) -> Option<Session> {
        let text = std::fs::read_to_string(self.path(settings)).ok()?;
        match serde_json::from_str::<Session>(&text) {
            Ok(session) if session.issuer == settings.issuer && session.client_id == settings.client_id => {
                Some(session)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(provider = %settings.name, error = %e, "ignoring an unreadable login session file");
                None
            }
        }
    }

    /// Stores a session: written to a temporary file (0600) and renamed over the old one.
    pub fn write(&self, settings: &LoginSettings, session: &Session) -> std::io::Result<()> {
        self.create_dir()?;
        let path = self.path(settings);
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
        file.write_all(&serde_json::to_vec(session).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    }

    /// Removes a provider's session; whether there was one.
    pub fn remove(&self, settings: &LoginSettings) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(settings)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes every session in the store; how many there were.
    pub fn remove_all(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Waits for and takes the lock of a provider's session.
    pub fn lock(&self, settings: &LoginSettings) -> std::io::Result<SessionLock> {
        self.create_dir()?;
        let path = self.path(settings).with_extension("lock");
        let file = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
        file.lock()?;
        Ok(SessionLock { _file: file })
    }

    fn create_dir(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)
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
        let store = SessionStore::new(dir.path().join("sessions"));
        let settings = LoginSettings::oidc("okta", "https://issuer.example", "kubeauth");
        assert_eq!(store.read(&settings), None);
        store.write(&settings, &session("one")).unwrap();
        assert_eq!(store.read(&settings), Some(session("one")));
        let path = store.path(&settings);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777, 0o700);

        // Other scopes, client or issuer: another session.
        let mut other = settings.clone();
        other.scopes.push("groups".into());
        assert_ne!(store.path(&other), path);
        assert_eq!(store.read(&other), None);
        let other_client = LoginSettings::oidc("okta", "https://issuer.example", "another");
        assert_ne!(store.path(&other_client), path);

        assert!(store.remove(&settings).unwrap());
        assert!(!store.remove(&settings).unwrap());
        store.write(&settings, &session("two")).unwrap();
        store.write(&other, &session("three")).unwrap();
        assert_eq!(store.remove_all().unwrap(), 2);
        assert_eq!(store.read(&other), None);
    }

    #[test]
    fn a_file_for_another_issuer_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        let settings = LoginSettings::oidc("okta", "https://issuer.example", "kubeauth");
        let mut foreign = session("x");
        foreign.issuer = "https://elsewhere.example".into();
        store.write(&settings, &foreign).unwrap();
        assert_eq!(store.read(&settings), None);
        std::fs::write(store.path(&settings), "not json").unwrap();
        assert_eq!(store.read(&settings), None);
    }

    #[test]
    fn debug_output_has_no_token() {
        let text = format!("{:?}", session("s3cr3t"));
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("alice@example.com"));
        let mut settings = LoginSettings::google("client");
        settings.client_secret = Some("client-s3cr3t".to_owned().into());
        assert!(!format!("{settings:?}").contains("client-s3cr3t"));
    }
}
