//! Project tasks.
//!
//! - `cargo xtask test [-- ARGS]`: provides the test environment (kube-apiserver, etcd, kubectl), then runs
//!   every test of the workspace inside a loopback-only network namespace; ARGS go to `cargo test`.
//! - `cargo xtask envtest`: provides the test environment only, and prints where it is.
//! - `cargo xtask schema [--check]`: writes `docs/config.schema.json` (or checks that it is current).
//! - `cargo xtask fuzz [--time SECONDS] [--target NAME] [--jobs N]`: runs the fuzz targets of `fuzz/` (cargo-fuzz,
//!   installed if missing) for SECONDS each (default 600), in the loopback-only namespace; fails on any crash,
//!   hang or memory blow-up, and writes `target/fuzz/report.md`.
//! - `cargo xtask features`: checks each published crate alone with no default features and with each of its
//!   features alone (features unify across a workspace build, so only this shows a missing one).
//! - `cargo xtask package`: `cargo package` of every published crate, in dependency order.
//! - `cargo xtask downstream`: builds crates that use the library as a downstream project does, from path
//!   dependencies outside the workspace (none of its config, no `K8S_OPENAPI_ENABLED_VERSION`), and reports
//!   how many crates each builds and how long a clean build takes.
//! - `cargo xtask bench [--runs N] [--seconds S]`: benchmarks of whole `kubeauth` processes (release build), and
//!   of the proxy of `kubeauth serve` against `kubectl proxy` and direct with wrk, written to
//!   `target/bench/report.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("envtest") => envtest().map(|dir| println!("{}", dir.display())),
        Some("schema") => schema(args.iter().any(|a| a == "--check")),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("downstream") => downstream(),
        Some("features") => features(),
        Some("package") => package(),
        _ => Err("usage: cargo xtask test [-- CARGO_TEST_ARGS] | envtest | schema [--check] | downstream | features | package | bench [--runs N] [--seconds S] | fuzz [--time SECONDS] [--target NAME] [--jobs N]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("kubeauth").join("envtest")
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{shown} failed ({status})")) }
}

/// The folder holding kube-apiserver, etcd and kubectl: `KUBEBUILDER_ASSETS` if it has all three, else the
/// cache, filled once per machine by `xtask/scripts/provision-envtest.sh`.
fn envtest() -> Result<PathBuf, String> {
    let complete = |dir: &Path| ["kube-apiserver", "etcd", "kubectl"].iter().all(|b| dir.join(b).is_file());
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) {
        if complete(&assets) {
            return Ok(assets);
        }
        eprintln!(
            "xtask: KUBEBUILDER_ASSETS ({}) lacks kube-apiserver, etcd or kubectl; using the cache",
            assets.display()
        );
    }
    let cache = cache_dir();
    let started = Instant::now();
    run(Command::new("bash").arg(root().join("xtask/scripts/provision-envtest.sh")).arg(&cache)).map_err(|e| {
        format!("{e}\nthe end-to-end tests need kube-apiserver, etcd and kubectl; see the messages above")
    })?;
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!("xtask: test environment ready in {:.0?}", started.elapsed());
    }
    Ok(cache.join("bin"))
}

/// Environment for every test process: the binaries, and every cloud SDK's metadata endpoint pointed at
/// nothing, so no credential chain probes a real one even outside the network namespace.
fn test_env(command: &mut Command, bin: &Path) {
    command
        .env("KUBEAUTH_ENVTEST_BIN", bin)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("GCE_METADATA_IP", "127.0.0.1:9")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
        .env_remove("AWS_PROFILE")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
}

fn loopback_namespace_works() -> bool {
    Command::new("unshare")
        .args(["-n", "--", "sh", "-c", "ip link set lo up"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Python test peers (moto, awscli) in virtual environments under the cache, made once per machine.
fn python_peers() -> Result<PathBuf, String> {
    let dir = cache_dir().parent().map(|p| p.join("python")).ok_or("no cache folder")?;
    run(Command::new("bash").arg(root().join("xtask/scripts/provision-python.sh")).arg(&dir))
        .map_err(|e| format!("{e}\nthe AWS tests need moto and awscli from PyPI; see the messages above"))?;
    Ok(dir)
}

/// The Node.js test peers (oidc-provider) under the cache, installed once per machine.
fn node_peers() -> Result<PathBuf, String> {
    let dir = cache_dir().parent().map(|p| p.join("node")).ok_or("no cache folder")?;
    run(Command::new("bash").arg(root().join("xtask/scripts/provision-node.sh")).arg(&dir))
        .map_err(|e| format!("{e}\nthe OIDC login tests need oidc-provider from npm; see the messages above"))?;
    Ok(dir)
}

fn test(args: &[String]) -> Result<(), String> {
    let bin = envtest()?;
    let python = python_peers()?;
    let node = node_peers()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let extra: Vec<String> = args.iter().skip_while(|a| *a == "--").cloned().collect();

    // Build first, with the registries reachable; the tests then run offline.
    run(Command::new(&cargo).current_dir(root()).args(["test", "--workspace", "--locked", "--no-run"]))?;

    let mut command = if loopback_namespace_works() {
        let mut c = Command::new("unshare");
        c.args(["-n", "--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"]);
        c.arg(&cargo);
        c
    } else {
        eprintln!(
            "xtask: warning: cannot make a loopback-only network namespace (unshare -n needs root or user namespaces); \
             running the tests with the host's network"
        );
        Command::new(&cargo)
    };
    command.current_dir(root()).args(["test", "--workspace", "--locked", "--offline"]).args(&extra);
    test_env(&mut command, &bin);
    command.env("KUBEAUTH_PYTHON_PEERS", &python);
    command.env("KUBEAUTH_NODE_PEERS", &node);
    let result = run_counting(&mut command);
    let leftovers = leftover_processes(&bin).and(leftover_processes(&python)).and(leftover_processes(&node));
    let totals = result?;
    leftovers?;
    // One closing line for the whole run (cargo's own last line is that of the last crate's doc tests).
    println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
    if totals.passed == 0 {
        return Err("no test ran".into());
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test`, passing its output through, and adds up its `test result:` lines.
fn run_counting(command: &mut Command) -> Result<Totals, String> {
    use std::io::BufRead as _;
    let shown = format!("{command:?}");
    let mut child =
        command.stdout(std::process::Stdio::piped()).spawn().map_err(|e| format!("cannot run {shown}: {e}"))?;
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| -> u64 {
                    rest.split([';', '.'])
                        .find_map(|part| part.trim().strip_suffix(word).and_then(|n| n.trim().parse().ok()))
                        .unwrap_or(0)
                };
                totals.passed += count("passed");
                totals.failed += count("failed");
                totals.ignored += count("ignored");
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() { Ok(totals) } else { Err(format!("{shown} failed ({status})")) }
}

/// Fails if any process of the test environment outlived the tests (after giving supervisors a moment).
fn leftover_processes(bin: &Path) -> Result<(), String> {
    let marker = bin.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&marker);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = Command::new("pkill").args(["-KILL", "-f", &marker]).status();
            return Err(format!(
                "processes of the test environment were left behind (now killed):\n{}",
                left.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn processes_mentioning(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id().to_string();
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) && e.file_name() != me.as_str())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then(|| format!("{} {}", e.file_name().to_string_lossy(), cmdline.trim()))
        })
        .collect()
}

fn schema(check: bool) -> Result<(), String> {
    let path = root().join("docs/config.schema.json");
    let text = kubeauth_cluster_locator::config_schema_text();
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            return Err(format!("{} is stale: run `cargo xtask schema`", path.display()));
        }
        return Ok(());
    }
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// One timed command: whole processes, each from exec to exit.
struct Case {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    runs: usize,
}

/// Sorted durations of `case.runs` runs, after a few unmeasured ones.
fn time_case(case: &Case) -> Result<Vec<Duration>, String> {
    let once = || -> Result<Duration, String> {
        let mut command = Command::new(&case.program);
        command.args(&case.args);
        for (k, v) in &case.env {
            command.env(k, v);
        }
        let started = Instant::now();
        let out = command.output().map_err(|e| format!("{}: {e}", case.name))?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            return Err(format!("{} failed: {}", case.name, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(elapsed)
    };
    for _ in 0..3 {
        once()?;
    }
    let mut samples = (0..case.runs).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
    samples.sort();
    Ok(samples)
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times whole `kubeauth token` processes, as kubectl starts them, beside `aws eks get-token`.
const FUZZ_TARGETS: [&str; 7] =
    ["config", "exec_info", "eks_token", "auth_headers", "catalog_entity", "proxy_path", "backstage_token"];

fn fuzz(args: &[String]) -> Result<(), String> {
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: u64 =
        value("--time").map(|t| t.parse().map_err(|_| "--time takes seconds")).transpose()?.unwrap_or(600);
    let jobs: usize = value("--jobs").map(|t| t.parse().map_err(|_| "--jobs takes a number")).transpose()?.unwrap_or(2);
    let targets: Vec<String> = match value("--target") {
        Some(t) if FUZZ_TARGETS.contains(&t.as_str()) => vec![t],
        Some(t) => return Err(format!("no fuzz target {t}; there are {}", FUZZ_TARGETS.join(", "))),
        None => FUZZ_TARGETS.iter().map(|t| (*t).to_owned()).collect(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if Command::new(&cargo).args(["fuzz", "--version"]).output().map_or(true, |o| !o.status.success()) {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new(&cargo).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    // cargo-fuzz needs nightly flags: the nightly toolchain if there is one, else the stable one unlocked.
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    // Through rustup's `cargo` so that `+nightly` picks the toolchain for cargo-fuzz and everything it runs.
    let toolchain_args = |c: &mut Command| {
        c.env_remove("CARGO").env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
        if nightly {
            c.arg("+nightly");
        } else {
            c.env("RUSTC_BOOTSTRAP", "1");
        }
    };
    let mut build = Command::new("cargo");
    toolchain_args(&mut build);
    build.current_dir(root().join("fuzz")).args(["fuzz", "build", "-O"]);
    if targets.len() == 1 {
        build.arg(&targets[0]);
    }
    run(&mut build)?;

    let out_dir = root().join("target/fuzz");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for batch in targets.chunks(jobs.max(1)) {
        let mut running = Vec::new();
        for target in batch {
            let corpus = root().join("fuzz/corpus").join(target);
            std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
            let log = out_dir.join(format!("{target}.log"));
            let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let mut command = if loopback_namespace_works() {
                let mut c = Command::new("unshare");
                c.args(["-n", "--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh", "cargo"]);
                c
            } else {
                Command::new("cargo")
            };
            toolchain_args(&mut command);
            command
                .current_dir(root().join("fuzz"))
                .args(["fuzz", "run", "-O", target])
                .arg(&corpus)
                .arg(root().join("fuzz/seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .args(["-timeout=10", "-rss_limit_mb=2048", "-malloc_limit_mb=1024", "-print_final_stats=1"])
                .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
                .stderr(log_file);
            eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", log.display());
            let child = command.spawn().map_err(|e| format!("cannot start cargo fuzz: {e}"))?;
            running.push((target.clone(), child, log));
        }
        for (target, mut child, log) in running {
            let status = child.wait().map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let stat = |name: &str| {
                text.lines()
                    .rev()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                    .unwrap_or_else(|| "?".into())
            };
            let runs = stat("stat::number_of_executed_units:");
            let peak = stat("stat::peak_rss_mb:");
            let corpus = std::fs::read_dir(root().join("fuzz/corpus").join(&target)).map(|d| d.count()).unwrap_or(0);
            let outcome = if status.success() {
                "no crash, no hang, no memory blow-up".to_owned()
            } else {
                failures.push(target.clone());
                format!("FAILED (see {})", log.display())
            };
            rows.push(format!("| {target} | {seconds} s | {runs} | {corpus} | {peak} MB | {outcome} |"));
        }
    }
    let report = format!(
        "# kubeauth fuzzing\n\ncargo-fuzz (libFuzzer, AddressSanitizer), `-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024`, \
         in a loopback-only network namespace.\n\n| target | time | executions | corpus | peak RSS | outcome |\n|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    std::fs::write(out_dir.join("report.md"), &report).map_err(|e| e.to_string())?;
    print!("{report}");
    if failures.is_empty() { Ok(()) } else { Err(format!("fuzz targets failed: {}", failures.join(", "))) }
}

/// The criterion benchmark of the cached-credential path; its markdown section.
fn criterion_bench() -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut text = String::new();
    for (package, bench) in [
        ("kubeauth-core", "credential_cache"),
        ("kubeauth-server", "access"),
        ("kubeauth-cluster-locator", "kubeconfig"),
    ] {
        let out = Command::new(&cargo)
            .current_dir(root())
            .args(["bench", "--locked", "-p", package, "--bench", bench, "--"])
            .args(["--warm-up-time", "2", "--measurement-time", "5"])
            .output()
            .map_err(|e| format!("cannot run cargo bench: {e}"))?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(format!("the criterion benchmark failed:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    // "NAME\n    time:   [low median high]" (or on one line when the name is short).
    let mut rows = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.split_once("time:").map(|(n, r)| (n.trim(), r)) {
            if !rest.0.is_empty() {
                name = rest.0.to_owned();
            }
            let values: Vec<&str> = rest.1.trim().trim_matches(|c| c == '[' || c == ']').split_whitespace().collect();
            if values.len() == 6 {
                rows.push(format!(
                    "| {name} | {} {} | {} {} – {} {} |",
                    values[2], values[3], values[0], values[1], values[4], values[5]
                ));
            }
        } else if !trimmed.is_empty()
            && !line.starts_with(' ')
            && !trimmed.starts_with("Benchmarking")
            && !trimmed.starts_with("Found")
            && !trimmed.starts_with("change")
        {
            name = trimmed.to_owned();
        }
    }
    Ok(format!(
        "## Per-request costs (criterion)\n\nWhat every request through the credential layer pays once its credential is cached, what per-user access (permission rules and impersonation) adds to a proxied request, and what a kubeconfig locator adds to each listing of the clusters.\n\n| benchmark | median per call | 95% interval |\n|---|---|---|\n{}\n",
        rows.join("\n")
    ))
}

/// The proxy benchmark (tests/bench/proxy.rs) against a real kube-apiserver, with wrk, in the loopback-only
/// network namespace; its markdown section.
fn proxy_bench(kubeauth: &Path, out_dir: &Path, args: &[String]) -> Result<String, String> {
    let bin = envtest()?;
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("xtask: installing wrk (the load generator of the proxy benchmark)");
        run(Command::new("apt-get").args(["install", "-y", "-q", "wrk"]))
            .map_err(|e| format!("{e}\nthe proxy benchmark needs wrk; install it and run again"))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).current_dir(root()).args([
        "bench",
        "--locked",
        "-p",
        "kubeauth-e2e",
        "--bench",
        "proxy",
        "--no-run",
    ]))?;
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args.get(i + 1).cloned().ok_or("--seconds takes a number")?,
        None => "8".into(),
    };
    let section = out_dir.join("proxy.md");
    let mut command = if loopback_namespace_works() {
        let mut c = Command::new("unshare");
        c.args(["-n", "--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"]).arg(&cargo);
        c
    } else {
        Command::new(&cargo)
    };
    command
        .current_dir(root())
        .args(["bench", "--locked", "--offline", "-p", "kubeauth-e2e", "--bench", "proxy", "--", "--kubeauth"])
        .arg(kubeauth)
        .arg("--out")
        .arg(&section)
        .args(["--seconds", &seconds]);
    test_env(&mut command, &bin);
    run(&mut command)?;
    std::fs::read_to_string(&section).map_err(|e| format!("{}: {e}", section.display()))
}

fn bench(args: &[String]) -> Result<(), String> {
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).and_then(|n| n.parse().ok()).ok_or("--runs takes a number")?,
        None => 200,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).current_dir(root()).args(["build", "--release", "--locked", "-p", "kubeauth-cli"]))?;
    let kubeauth = root().join("target/release/kubeauth");
    let python = python_peers()?;

    let scratch = std::env::temp_dir().join(format!("kubeauth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let config = scratch.join("app-config.yaml");
    // No API server is contacted: `kubeauth token` only produces the credential.
    std::fs::write(
        &config,
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: sa\n          url: https://127.0.0.1:6443\n          authProvider: serviceAccount\n          serviceAccountToken: bench-token\n        - name: eks\n          url: https://127.0.0.1:6443\n          authProvider: aws\n          authMetadata:\n            kubernetes.io/aws-region: us-west-2\n",
    )
    .map_err(|e| e.to_string())?;
    // Static credentials, nothing else: no credential source probes anything.
    let aws_env = vec![
        ("AWS_ACCESS_KEY_ID", "AKIAKUBEAUTHBENCH001".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench/secret".to_owned()),
        ("AWS_REGION", "us-west-2".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent/kubeauth-bench".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kubeauth-bench".to_owned()),
    ];
    let mut kubeauth_env = aws_env.clone();
    kubeauth_env.push(("KUBEAUTH_CACHE_DIR", scratch.join("cache").display().to_string()));
    kubeauth_env.push((
        "KUBERNETES_EXEC_INFO",
        r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#
            .to_owned(),
    ));
    let token_args = |cluster: &str| {
        vec!["token".into(), "--cluster".into(), cluster.into(), "--config".into(), config.display().to_string()]
    };
    let cases = [
        Case {
            name: "`kubeauth token`, aws cluster, warm cache",
            program: kubeauth.clone(),
            args: token_args("eks"),
            env: kubeauth_env.clone(),
            runs,
        },
        Case {
            name: "`kubeauth token`, serviceAccount cluster",
            program: kubeauth.clone(),
            args: token_args("sa"),
            env: kubeauth_env.clone(),
            runs,
        },
        Case {
            name: "`aws eks get-token` (awscli 1.x)",
            program: python.join("awscli/bin/aws"),
            args: ["eks", "get-token", "--cluster-name", "eks", "--region", "us-west-2"].map(String::from).to_vec(),
            env: aws_env,
            runs: (runs / 10).max(10),
        },
    ];
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    for case in &cases {
        let samples = time_case(case)?;
        medians.push(quantile(&samples, 0.5));
        rows.push(format!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            case.name,
            samples.len(),
            ms(samples[0]),
            ms(quantile(&samples, 0.5)),
            ms(quantile(&samples, 0.9)),
            ms(quantile(&samples, 0.99))
        ));
    }
    let ratio = medians[2].as_secs_f64() / medians[0].as_secs_f64();
    let report = format!(
        "# kubeauth benchmarks\n\nWhole processes, release build, {} cores, everything on one machine; each run is one process from exec to exit, as kubectl runs its exec plugin.\n\n| benchmark | runs | min | median | p90 | p99 |\n|---|---|---|---|---|---|\n{}\n\n`aws eks get-token` / `kubeauth token` (aws, warm cache), medians: **{ratio:.0}x**\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        rows.join("\n")
    );
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let cached = criterion_bench()?;
    let proxy = proxy_bench(&kubeauth, &out_dir, args)?;
    let report = format!("{report}\n{cached}\n{proxy}");
    std::fs::write(out_dir.join("report.md"), &report).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{report}");
    println!("\nwritten to {}", out_dir.join("report.md").display());
    Ok(())
}

/// A project that uses the library: its name, its `[dependencies]` (`{root}` is the workspace), its `main.rs`.
struct Downstream {
    name: &'static str,
    dependencies: &'static str,
    main: &'static str,
}

/// The downstream projects `cargo xtask downstream` builds: a provider crate on the contract alone, an
/// application with the toolkit and one provider, and one that embeds the server. Each adds exactly what the
/// README's library section says a user adds.
const DOWNSTREAM: [Downstream; 3] = [
    Downstream {
        name: "provider-on-the-contract",
        dependencies: "kubeauth-core = { path = \"{root}/crates/auth-core\" }\n",
        main: "use kubeauth_core::{ClusterDetails, Credential};\n\nfn main() {\n    let cluster = ClusterDetails::new(\"dev\", \"https://dev.example.com\");\n    let credential = Credential::bearer(\"token\");\n    println!(\"{} {:?}\", cluster.name, credential.kind());\n}\n",
    },
    Downstream {
        name: "toolkit-with-one-provider",
        dependencies: "kubeauth = { path = \"{root}/crates/facade\", default-features = false, features = [\"service-account\"] }\nk8s-openapi = { version = \"0.29\", features = [\"latest\"] }\ntokio = { version = \"1\", features = [\"rt\", \"macros\"] }\n",
        main: "use kubeauth::{AppConfig, Kubeauth, ResolveContext};\n\n#[tokio::main(flavor = \"current_thread\")]\nasync fn main() -> Result<(), Box<dyn std::error::Error>> {\n    let env = ResolveContext::from_process_env();\n    let config = AppConfig::from_yaml_str(\"kubernetes:\\n  clusterLocatorMethods: []\\n\", None)?;\n    let kubeauth = Kubeauth::from_config(&config, &env)?;\n    println!(\"{} clusters\", kubeauth.clusters().await?.len());\n    // A locator left out of the build is a clear error, not a silent nothing.\n    let gke = AppConfig::from_yaml_str(\"kubernetes:\\n  clusterLocatorMethods:\\n    - type: gke\\n      projectId: p\\n\", None)?;\n    let error = Kubeauth::from_config(&gke, &env).expect_err(\"gke is left out\").to_string();\n    assert!(error.contains(\"needs the `gke` feature\"), \"{error}\");\n    Ok(())\n}\n",
    },
    Downstream {
        name: "server-embedded",
        dependencies: "kubeauth-server = { path = \"{root}/crates/server\", default-features = false, features = [\"service-account\"] }\nk8s-openapi = { version = \"0.29\", features = [\"latest\"] }\n",
        main: "use kubeauth_server::KubeauthServer;\n\nfn main() {\n    println!(\"{}\", std::any::type_name::<KubeauthServer>());\n}\n",
    },
];

/// Builds each [`DOWNSTREAM`] project in a folder outside the workspace, with its own clean target folder so
/// that the time is a user's first build; prints and writes `target/downstream/report.md`.
fn downstream() -> Result<(), String> {
    let root = root();
    let scratch = std::env::temp_dir().join(format!("kubeauth-downstream-{}", std::process::id()));
    let mut rows = Vec::new();
    let documented = std::fs::read_to_string(root.join("docs/development.md")).map_err(|e| e.to_string())?;
    let mut wrong = Vec::new();
    for project in &DOWNSTREAM {
        let dir = scratch.join(project.name);
        std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
        let manifest = format!(
            "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\n{}",
            project.name,
            project.dependencies.replace("{root}", &root.display().to_string())
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("src/main.rs"), project.main).map_err(|e| e.to_string())?;
        // The workspace's lock file as a start, so that the build uses the versions already downloaded.
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).map_err(|e| e.to_string())?;
        let cargo = |args: &[&str]| {
            let mut command = Command::new("cargo");
            command
                .args(args)
                .current_dir(&dir)
                .env_remove("K8S_OPENAPI_ENABLED_VERSION")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO")
                .env_remove("RUSTC")
                .env_remove("RUSTFLAGS");
            command
        };
        let started = Instant::now();
        run(cargo(&["build", "--offline", "--quiet"]).env("CARGO_TARGET_DIR", dir.join("target")))
            .map_err(|e| format!("{}: a downstream project does not build: {e}", project.name))?;
        let seconds = started.elapsed().as_secs_f64();
        // Each project also runs: what it checks holds outside the workspace too.
        run(&mut Command::new(dir.join("target/debug").join(project.name)))
            .map_err(|e| format!("{}: the downstream project failed: {e}", project.name))?;
        let tree = cargo(&["tree", "--offline", "--edges", "normal,build", "--prefix", "none", "--format", "{p}"])
            .output()
            .map_err(|e| e.to_string())?;
        let crates: std::collections::BTreeSet<String> = String::from_utf8_lossy(&tree.stdout)
            .lines()
            .map(|l| l.trim_end_matches(" (*)").to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!("xtask: {} built in {seconds:.0} s, {} crates", project.name, crates.len());
        // docs/development.md states each project's crate count: a change to it is a change to the docs too.
        let stated = documented
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", project.name)))
            .and_then(|l| l.split('|').nth(3))
            .and_then(|cell| cell.trim().parse::<usize>().ok());
        if stated != Some(crates.len()) {
            wrong.push(format!(
                "{}: {} crates, docs/development.md says {}",
                project.name,
                crates.len(),
                stated.map_or("nothing".into(), |n| n.to_string())
            ));
        }
        rows.push(format!("| `{}` | {} | {seconds:.0} s |", project.name, crates.len()));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let report = format!(
        "# Downstream builds\n\nProjects outside the workspace, from path dependencies, without the workspace's config; a clean \
         `cargo build` each, on this machine ({} cores).\n\n| project | crates | clean build |\n|---|---|---|\n{}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        rows.join("\n")
    );
    let out = root.join("target/downstream");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.md"), &report).map_err(|e| e.to_string())?;
    print!("{report}");
    if !wrong.is_empty() {
        return Err(format!("the crate counts changed; update docs/development.md: {}", wrong.join("; ")));
    }
    Ok(())
}

/// `cargo metadata` of the workspace's own packages.
fn workspace_metadata() -> Result<serde_json::Value, String> {
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The workspace's crates from `cargo metadata`: name, whether it is published (not `publish = false`), and
/// its features.
fn workspace_crates() -> Result<Vec<(String, bool, Vec<String>)>, String> {
    let metadata = workspace_metadata()?;
    let packages = metadata["packages"].as_array().ok_or("cargo metadata gave no packages")?;
    Ok(packages
        .iter()
        .map(|p| {
            let published = p["publish"].as_array().is_none_or(|registries| !registries.is_empty());
            let features = p["features"]
                .as_object()
                .map(|f| f.keys().filter(|k| *k != "default").cloned().collect())
                .unwrap_or_default();
            (p["name"].as_str().unwrap_or_default().to_owned(), published, features)
        })
        .collect())
}

/// `cargo check` of each published crate alone: with no default features, then with each feature alone that
/// gates code of the crate itself (a `cfg(feature = …)` in its sources; a feature that only turns on another
/// crate's, as the server's and the command's provider features do, is checked in that crate). A warning
/// fails it as an error does (an import unused without a feature is a wrong `cfg`).
fn features() -> Result<(), String> {
    let started = Instant::now();
    let mut checked = 0;
    for (name, _, features) in workspace_crates()?.into_iter().filter(|(_, published, _)| *published) {
        let sources = crate_sources(&name)?;
        let gating: Vec<&String> =
            features.iter().filter(|f| sources.contains(&format!("feature = \"{f}\""))).collect();
        for feature in std::iter::once(None).chain(gating.into_iter().map(Some)) {
            let mut command = Command::new("cargo");
            command.args(["check", "--quiet", "--locked", "-p", &name, "--no-default-features"]).current_dir(root());
            if let Some(feature) = feature {
                command.args(["--features", feature]);
            }
            let shown = format!(
                "{name} --no-default-features{}",
                feature.map_or(String::new(), |f| format!(" --features {f}"))
            );
            eprintln!("xtask: cargo check -p {shown}");
            let out = command.output().map_err(|e| e.to_string())?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() || stderr.contains("warning:") {
                return Err(format!("cargo check -p {shown}:\n{stderr}"));
            }
            checked += 1;
        }
    }
    eprintln!("xtask: {checked} feature sets checked in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The Rust sources of the workspace crate `name` (its `src/`), concatenated.
fn crate_sources(name: &str) -> Result<String, String> {
    let metadata = workspace_metadata()?;
    let manifest = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == name))
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("{name} is not in the workspace"))?;
    let mut text = String::new();
    let mut dirs = vec![Path::new(manifest).with_file_name("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
            }
        }
    }
    Ok(text)
}

/// `cargo package` of every published crate, as `cargo publish` would make them (the workspace's own crates
/// are found in the order they depend on each other). The packages are not built again here: `cargo xtask
/// downstream` builds the library outside the workspace.
fn package() -> Result<(), String> {
    let mut command = Command::new("cargo");
    command
        .args(["package", "--workspace", "--locked", "--offline", "--no-verify", "--allow-dirty"])
        .current_dir(root());
    for (name, _, _) in workspace_crates()?.into_iter().filter(|(_, published, _)| !*published) {
        command.args(["--exclude", &name]);
    }
    run(&mut command)
}
