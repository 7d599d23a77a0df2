use std::path::{Path, PathBuf};

/// The kube-apiserver, etcd and kubectl binaries of the test environment.
#[derive(Debug, Clone)]
pub struct EnvtestBinaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// kubectl (1.26 or newer, for `client.authentication.k8s.io/v1` exec plugins).
    pub kubectl: PathBuf,
}

const HOW: &str = "run the end-to-end tests with `cargo xtask test`, which provides kube-apiserver, etcd and kubectl \
(or run `cargo xtask envtest` once; or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, etcd and kubectl)";

impl EnvtestBinaries {
    /// Finds the binaries: in `KUBEAUTH_ENVTEST_BIN` (set by `cargo xtask test`), else `KUBEBUILDER_ASSETS`, else
    /// the cache `cargo xtask envtest` fills (`$XDG_CACHE_HOME/kubeauth/envtest/bin` or
    /// `~/.cache/kubeauth/envtest/bin`).
    pub fn locate() -> Result<Self, String> {
        let candidates: Vec<PathBuf> = [
            std::env::var_os("KUBEAUTH_ENVTEST_BIN").map(PathBuf::from),
            std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from),
            Some(Self::cache_dir().join("bin")),
        ]
        .into_iter()
        .flatten()
        .collect();
        for dir in &candidates {
            let found = Self {
                kube_apiserver: dir.join("kube-apiserver"),
                etcd: dir.join("etcd"),
                kubectl: dir.join("kubectl"),
            };
            if [&found.kube_apiserver, &found.etcd, &found.kubectl].iter().all(|p| is_executable(p)) {
                return Ok(found);
            }
        }
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "the test environment is missing (looked for kube-apiserver, etcd and kubectl in {}): {HOW}",
            looked.join(", ")
        ))
    }

    /// The binaries, or a panic that says how to provide them.
    pub fn require() -> Self {
        Self::locate().unwrap_or_else(|message| panic!("{message}"))
    }

    /// Where `cargo xtask envtest` caches the binaries.
    pub fn cache_dir() -> PathBuf {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join("kubeauth").join("envtest")
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
