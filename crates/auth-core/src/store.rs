//! The one place kubeauth keeps files of its own on a workstation: a folder of small private files (login
//! sessions, cached credentials of `kubeauth token`), with a lock per file for processes that run in parallel.
//!
//! Where: `$KUBEAUTH_CACHE_DIR` if set, else `$XDG_CACHE_HOME/kubeauth`, else `$HOME/.cache/kubeauth`; never a
//! shared folder such as `/tmp`. Inside it each kind of file has a folder of its own (`sessions/`,
//! `credentials/`).
//!
//! The rules, for every read, write and lock:
//! 1. every folder from the root down is created with mode 0700, and refused unless it is a real folder (not
//!    a symbolic link), owned by the user who runs the process, and writable by nobody else;
//! 2. files are written to a new temporary file (created exclusively, mode 0600, so never through a link an
//!    attacker planted), synced, then renamed over the old one: a reader sees the old file or the new one;
//! 3. files are opened without following symbolic links, and read with a size limit;
//! 4. a lock is an exclusive `flock` on `<name>.lock`, taken without blocking the async runtime (a waiting
//!    caller parks on a blocking thread).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};

/// The largest file the store reads.
pub const MAX_FILE: u64 = 1024 * 1024;

/// Why the store could not read, write or lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No folder for kubeauth's files can be found.
    #[error("no folder for kubeauth's files: set KUBEAUTH_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// A file or folder operation failed.
    #[error("cannot {what} `{}`", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A folder or file is not safe to keep secrets in.
    #[error("refusing `{}`: {reason}", path.display())]
    Unsafe {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file name the store does not take.
    #[error("`{0}` is not a file name of the store")]
    Name(String),
}

/// kubeauth's folder for its own files: `$KUBEAUTH_CACHE_DIR`, else `$XDG_CACHE_HOME/kubeauth` (an absolute
/// path), else `$HOME/.cache/kubeauth`.
pub fn cache_root() -> Result<PathBuf, StoreError> {
    cache_root_from(|name| std::env::var_os(name))
}

/// [`cache_root`] with the variables from `env`.
pub fn cache_root_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StoreError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("KUBEAUTH_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("kubeauth"));
    }
    set("HOME").filter(|h| h.is_absolute()).map(|h| h.join(".cache").join("kubeauth")).ok_or(StoreError::NoCacheDir)
}

/// A folder of small private files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileStore {
    /// The first folder checked: the root of kubeauth's files.
    root: PathBuf,
    /// This store's folder: `root` or a folder under it.
    dir: PathBuf,
}

/// A held lock on one file of a store; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl FileStore {
    /// The store at [`cache_root`].
    pub fn user() -> Result<Self, StoreError> {
        cache_root().map(Self::at)
    }

    /// A store rooted at `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self { root: dir.clone(), dir }
    }

    /// The store of the folder `name` under this one (`sessions`, `credentials`).
    pub fn folder(&self, name: &str) -> Result<Self, StoreError> {
        check_name(name)?;
        Ok(Self { root: self.root.clone(), dir: self.dir.join(name) })
    }

    /// This store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the file `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    /// The contents of the file `name`; `None` when there is none.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name)?;
        if !self.existing_folders_are_safe()? {
            return Ok(None);
        }
        let fd = match rustix::fs::open(&path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(StoreError::Unsafe { path, reason: "it is a symbolic link".into() });
            }
            Err(e) => return Err(io("open", &path, e.into())),
        };
        let file = File::from(fd);
        let metadata = file.metadata().map_err(|e| io("read", &path, e))?;
        if !metadata.is_file() {
            return Err(StoreError::Unsafe { path, reason: "it is not a regular file".into() });
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| io("read", &path, e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(StoreError::Unsafe { path, reason: format!("it is larger than {MAX_FILE} bytes") });
        }
        Ok(Some(bytes))
    }

    /// Replaces the file `name` with `bytes` (mode 0600): written to a new temporary file, synced, renamed.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        self.prepare()?;
        replace_private_file(&path, bytes)
    }

    /// Removes the file `name`; whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("remove", &path, e)),
        }
    }

    /// Removes every file whose name ends with `suffix` (`.json`); how many there were.
    pub fn remove_all(&self, suffix: &str) -> Result<usize, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("list", &self.dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(|e| io("list", &self.dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(suffix) && !name.starts_with('.') {
                std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Waits for and takes the lock of the file `name` (`<name>.lock`), without blocking the async runtime.
    pub async fn lock(&self, name: &str) -> Result<StoreLock, StoreError> {
        let lock_name = format!("{name}.lock");
        let path = self.path(&lock_name)?;
        self.prepare()?;
        let fd = rustix::fs::open(
            &path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => {
                StoreError::Unsafe { path: path.clone(), reason: "it is a symbolic link".into() }
            }
            other => io("open", &path, other.into()),
        })?;
        let file = File::from(fd);
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let waited = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .map_err(|e| io("lock", &path, std::io::Error::other(e)))?;
                waited.map(|file| StoreLock { _file: file }).map_err(|e| io("lock", &path, e))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io("lock", &path, e)),
        }
    }

    /// Creates the folders (0700) and checks each from the root down.
    fn prepare(&self) -> Result<(), StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io("create", &self.dir, e))?;
        for dir in self.folders() {
            check_folder(&dir)?;
        }
        Ok(())
    }

    /// Checks the folders that exist; whether this store's own folder does.
    fn existing_folders_are_safe(&self) -> Result<bool, StoreError> {
        for dir in self.folders() {
            match std::fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                _ => check_folder(&dir)?,
            }
        }
        Ok(true)
    }

    /// The root, then each folder below it down to this store's.
    fn folders(&self) -> Vec<PathBuf> {
        let mut folders = vec![self.root.clone()];
        if let Ok(rest) = self.dir.strip_prefix(&self.root) {
            let mut at = self.root.clone();
            for part in rest.components() {
                at.push(part);
                folders.push(at.clone());
            }
        }
        folders
    }
}

/// A real folder, owned by this user, writable by nobody else.
fn check_folder(dir: &Path) -> Result<(), StoreError> {
    let metadata = std::fs::symlink_metadata(dir).map_err(|e| io("inspect", dir, e))?;
    let refuse = |reason: String| Err(StoreError::Unsafe { path: dir.to_owned(), reason });
    if metadata.file_type().is_symlink() {
        return refuse("it is a symbolic link".into());
    }
    if !metadata.is_dir() {
        return refuse("it is not a folder".into());
    }
    let me = rustix::process::getuid().as_raw();
    if metadata.uid() != me {
        return refuse(format!("it belongs to user id {}, not to this user ({me})", metadata.uid()));
    }
    if metadata.mode() & 0o022 != 0 {
        return refuse(format!("others may write to it (mode {:o}); run `chmod 700` on it", metadata.mode() & 0o777));
    }
    Ok(())
}

/// Names are plain file names: letters, digits, `.`, `_`, `-`; never hidden, never a path.
fn check_name(name: &str) -> Result<(), StoreError> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain { Ok(()) } else { Err(StoreError::Name(name.to_owned())) }
}

/// Replaces the file at `path` with `bytes`, readable by its owner alone (0600): written to a new temporary file
/// beside it (never an existing file, never through a symbolic link), synced, then renamed over it, so that a
/// reader sees the old file or the new one, never a part. The folder is not checked (see [`FileStore`]).
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (temp, mut file) = loop {
        let temp = path.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // create_new: O_CREAT | O_EXCL, which never follows a symbolic link and never reuses a file.
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create", &temp, e)),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("write", path, e));
    }
    Ok(())
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { what, path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_root_follows_the_documented_variables_and_never_falls_back_to_tmp() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
        };
        let root = |vars| cache_root_from(env(vars));
        assert_eq!(root(&[("KUBEAUTH_CACHE_DIR", "/c"), ("HOME", "/h")]).unwrap(), PathBuf::from("/c"));
        assert_eq!(root(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]).unwrap(), PathBuf::from("/x/kubeauth"));
        assert_eq!(root(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]).unwrap(), PathBuf::from("/h/.cache/kubeauth"));
        assert_eq!(root(&[("HOME", "/h")]).unwrap(), PathBuf::from("/h/.cache/kubeauth"));
        assert!(matches!(root(&[]), Err(StoreError::NoCacheDir)));
        assert!(matches!(root(&[("HOME", "")]), Err(StoreError::NoCacheDir)));
    }

    #[tokio::test]
    async fn files_are_private_and_replaced_whole() {
        let scratch = tempfile::tempdir().unwrap();
        let store = FileStore::at(scratch.path().join("kubeauth")).folder("sessions").unwrap();
        assert_eq!(store.read("a.json").unwrap(), None, "nothing yet, and no folder made by a read");
        assert!(!store.dir().exists());
        store.write("a.json", b"one").unwrap();
        store.write("a.json", b"two").unwrap();
        assert_eq!(store.read("a.json").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(mode(&store.path("a.json").unwrap()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&scratch.path().join("kubeauth")), 0o700);
        let names: Vec<_> = std::fs::read_dir(store.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.json"], "no temporary file is left");
        let _lock = store.lock("a.json").await.unwrap();
        assert_eq!(store.remove_all(".json").unwrap(), 1);
        assert!(!store.remove("a.json").unwrap());
        for bad in ["", ".hidden", "../escape", "a/b", "x y"] {
            assert!(matches!(store.write(bad, b""), Err(StoreError::Name(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_symbolic_link_is_never_followed() {
        let scratch = tempfile::tempdir().unwrap();
        let victim = scratch.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let store = FileStore::at(scratch.path().join("kubeauth"));
        store.write("seed", b"x").unwrap();
        std::os::unix::fs::symlink(&victim, store.path("session.json").unwrap()).unwrap();
        let err = store.read("session.json").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A write replaces the link itself; the file it pointed to is untouched.
        store.write("session.json", b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(store.read("session.json").unwrap().as_deref(), Some(&b"new"[..]));

        // A folder that is a link is refused.
        let elsewhere = scratch.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, scratch.path().join("linked")).unwrap();
        let err = FileStore::at(scratch.path().join("linked")).write("a", b"x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_folder_others_may_write_to_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = FileStore::at(&open).write("a", b"x").unwrap_err();
        assert!(err.to_string().contains("others may write to it (mode 777)"), "{err}");
        assert!(FileStore::at(&open).read("a").is_err(), "reads are refused too");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lock_is_held_until_dropped_without_blocking_the_runtime() {
        let scratch = tempfile::tempdir().unwrap();
        let store = FileStore::at(scratch.path());
        let first = store.lock("s").await.unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let lock = store.lock("s").await.unwrap();
                let _ = tx.send(());
                lock
            })
        };
        // The runtime keeps running other work while the second caller waits.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(rx.try_recv().is_err(), "the second caller waits for the first");
        drop(first);
        waiter.await.unwrap();
    }
}
