//! Backstage's own kubernetes backend, unmodified from npm (`@backstage/plugin-kubernetes-backend` on
//! `@backstage/backend-defaults`, installed by `cargo xtask test`), as a test peer: it runs on loopback beside
//! `kubeauth serve`, on the same app-config and the same API server, so that a test can compare their answers.
//!
//! It runs as a Backstage app runs it (`createBackend()`, the plugin added, `backend.start()`), with the least
//! config that needs no database and no sign-in: a static plugin key store (a fresh P-256 key pair),
//! `dangerouslyDisableDefaultAuthPolicy`, and `discovery.endpoints` sending the catalog (and auth, permission)
//! plugins to the test's catalog stand-in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{Supervised, free_port};

/// The running backend; stops when dropped.
#[derive(Debug)]
pub struct BackstageBackend {
    url: String,
    config: PathBuf,
    process: Supervised,
    _scratch: tempfile::TempDir,
}

impl BackstageBackend {
    /// The folder Backstage's backend packages are installed in (`cargo xtask test` installs them), or a
    /// failure saying so.
    pub fn modules() -> PathBuf {
        let modules = crate::oidc::node_peers_dir().join("backstage-backend/node_modules");
        assert!(
            modules.join("@backstage/plugin-kubernetes-backend").is_dir(),
            "Backstage's kubernetes backend is not in {}: `cargo xtask test` installs it",
            modules.display()
        );
        modules
    }

    /// Starts the backend on `app_config` (the `kubernetes` section and anything else both servers read) with
    /// its catalog at `catalog_url` (a base URL whose `/api/catalog/...` answers), and waits until it answers.
    pub async fn start(app_config: &str, catalog_url: &str) -> Self {
        let modules = Self::modules();
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let (private_key, public_key) = crate::pki::signing_key_pem();
        let (private_file, public_file) =
            (scratch.path().join("plugin-key.pem"), scratch.path().join("plugin-key.pub"));
        std::fs::write(&private_file, private_key).expect("write the key");
        std::fs::write(&public_file, public_key).expect("write the key");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let config = scratch.path().join("app-config.yaml");
        std::fs::write(
            &config,
            format!(
                "backend:\n  baseUrl: {url}\n  listen:\n    host: 127.0.0.1\n    port: {port}\n  auth:\n    \
                 dangerouslyDisableDefaultAuthPolicy: true\n    pluginKeyStore:\n      type: static\n      static:\n        \
                 keys:\n          - publicKeyFile: {}\n            privateKeyFile: {}\n            keyId: kubeauth-test\n\
                 discovery:\n  endpoints:\n    - target: '{catalog_url}/api/{{{{pluginId}}}}'\n      plugins: [catalog, auth, permission]\n\
                 {app_config}",
                public_file.display(),
                private_file.display(),
            ),
        )
        .expect("write the config");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/backstage/backend.cjs");
        // In the folder of its package.json, where a Backstage app runs (the backend looks for it).
        let args = [
            "-C".to_owned(),
            modules.parent().expect("the packages' folder").display().to_string(),
            format!("BACKSTAGE_BACKEND_MODULES={}", modules.display()),
            "NODE_ENV=production".to_owned(),
            "node".to_owned(),
            script.display().to_string(),
            "--config".to_owned(),
            config.display().to_string(),
        ];
        let process =
            Supervised::start("backstage-backend", Path::new("env"), &args, &scratch.path().join("backend.log"), None);
        let backend = Self { url, config, process, _scratch: scratch };
        backend.wait_ready().await;
        backend
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let address = self.url.trim_start_matches("http://").to_owned();
        loop {
            if let Ok(answer) = crate::http::get(&address, "/.backstage/health/v1/readiness", &[]).await
                && answer.status == 200
            {
                return;
            }
            assert!(
                !self.process.has_exited() && Instant::now() < deadline,
                "Backstage's backend did not start:\n{}",
                self.process.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The whole app-config file it runs on (kubeauth can read the same file).
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
