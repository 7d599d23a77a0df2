//! The proxy benchmark: the same GET of a namespace's pods, against the same real kube-apiserver, directly,
//! through `kubectl proxy`, and through `kubeauth serve` for a serviceAccount cluster and for an oidc cluster
//! (the user's token in the Backstage header), with a real load generator (`wrk`) at 1 and 64 connections;
//! requests/s, latency percentiles, CPU per request and each proxy's peak RSS. Then a 200-connection soak, and
//! the fan-out of one entity over 50 clusters with the TLS handshakes counted by a forwarder.
//!
//! Run by `cargo xtask bench` (which installs wrk and passes the release `kubeauth` binary):
//! `proxy --kubeauth PATH --out FILE [--seconds N]`. Writes a markdown section to FILE.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubeauth_testkit::{TestCluster, free_port};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubeauth serve --config config` on a free loopback port, listening; the process and the port.
fn start_serve(kubeauth: &Path, config: &Path) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(kubeauth)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubeauth serve");
    let serving = Killed(child);
    wait_for_port(port, "kubeauth serve");
    (serving, port)
}

/// One wrk run's figures.
struct Figures {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// The errors by kind: wrk's socket errors (connect, read, write, timeout) and the answers by status (when
    /// the run's script counts them, see [`STATUS_COUNTER`]).
    error_kinds: String,
}

/// Lua appended to a wrk script: counts the answers by status in each thread and prints `status <code>: <n>`
/// lines at the end, so that a report can say which errors were refusals (503 with `Retry-After`) and which were
/// failures.
const STATUS_COUNTER: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(string.format("status %d: %d\n", code, n)) end
end
"#;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds from wrk's `1.23ms` / `456.00us` / `1.01s`.
fn millis(text: &str) -> f64 {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, headers: &[String], connections: u32, seconds: u64) -> Figures {
    wrk_with(url, headers, None, connections, seconds)
}

fn wrk_script(url: &str, script: &Path, connections: u32, seconds: u64) -> Figures {
    wrk_with(url, &[], Some(script), connections, seconds)
}

fn wrk_with(url: &str, headers: &[String], script: Option<&Path>, connections: u32, seconds: u64) -> Figures {
    let threads = connections.min(2);
    let mut command = Command::new("wrk");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    // A request counts as a timeout after 10 s (wrk's default is 2 s): an entity query that waits its turn
    // within kubeauth.server.limits is measured, not cut.
    command.args([
        "--timeout",
        "10s",
        "--latency",
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{seconds}s"),
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command.arg(url).output().expect("run wrk (cargo xtask bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.split_whitespace().next().unwrap_or("").to_owned()))
    };
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").and_then(|n| n.parse().ok()).unwrap_or(0);
    let socket_line = text.lines().find_map(|l| l.trim().strip_prefix("Socket errors: ")).unwrap_or("");
    let socket_errors: u64 =
        socket_line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()).sum();
    let failed_statuses: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("status "))
        .filter(|l| !l.starts_with('2') && !l.starts_with('3'))
        .map(ToOwned::to_owned)
        .collect();
    let error_kinds = format!(
        "sockets: {}; non-2xx: {non_2xx}{}",
        if socket_line.is_empty() { "none" } else { socket_line },
        if failed_statuses.is_empty() { String::new() } else { format!(" ({})", failed_statuses.join(", ")) }
    );
    Figures {
        requests_per_second: field("Requests/sec:").and_then(|n| n.parse().ok()).unwrap_or(0.0),
        p50_ms: field("50%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        errors: non_2xx + socket_errors,
        error_kinds,
    }
}

/// Resident set size now, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident set size of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let kubeauth = PathBuf::from(arg("--kubeauth").expect("--kubeauth PATH"));
    let out = PathBuf::from(arg("--out").expect("--out FILE"));
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let cluster = TestCluster::builder().start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        cluster.create_namespace("bench").await;
        let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(cluster.admin_client().await, "bench");
        for i in 0..5 {
            let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
            }))
            .unwrap();
            let _ = pods.create(&Default::default(), &pod).await;
        }
    });
    let path = "/api/v1/namespaces/bench/pods";
    let scratch = tempfile::tempdir().expect("temp dir");

    // kubectl proxy with the admin token.
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig_with_token(cluster.admin_token())).unwrap();
    let kubectl_port = free_port();
    let kubectl = Killed(
        Command::new(&cluster.binaries().kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["proxy", "--address", "127.0.0.1", "--port", &kubectl_port.to_string()])
            .env("HOME", scratch.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl proxy"),
    );
    wait_for_port(kubectl_port, "kubectl proxy");

    // kubeauth serve with the same identity: a serviceAccount cluster with the admin token, and the same API
    // server as an oidc cluster whose user token (the admin token standing in) comes with each request. The API
    // server has no metrics API: skipMetricsLookup, so that the objects endpoints measure the objects alone.
    // It keeps its audit log in a file, as a gateway in production does.
    let audit_log = scratch.path().join("audit.log");
    let config = scratch.path().join("app-config.yaml");
    let clusters = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: bench\n          url: {url}\n          caData: {ca}\n          authProvider: serviceAccount\n          serviceAccountToken: {token}\n          skipMetricsLookup: true\n        - name: bench-oidc\n          url: {url}\n          caData: {ca}\n          authProvider: oidc\n          oidcTokenProvider: bench\n          skipMetricsLookup: true\n",
        url = cluster.url(),
        ca = cluster.ca().ca_data(),
        token = cluster.admin_token(),
    );
    let audit = |log: &Path| format!("kubeauth:\n  server:\n    audit:\n      path: {}\n", log.display());
    std::fs::write(&config, format!("{clusters}{}", audit(&audit_log))).unwrap();
    let (serve, kubeauth_port) = start_serve(&kubeauth, &config);

    let targets: [(&str, String, Vec<String>); 4] = [
        (
            "direct (kube-apiserver)",
            format!("{}{path}", cluster.url()),
            vec![format!("Authorization: Bearer {}", cluster.admin_token())],
        ),
        ("kubectl proxy 1.37", format!("http://127.0.0.1:{kubectl_port}{path}"), vec![]),
        (
            "kubeauth serve",
            format!("http://127.0.0.1:{kubeauth_port}/api/kubernetes/proxy{path}"),
            vec!["Backstage-Kubernetes-Cluster: bench".to_owned()],
        ),
        (
            "kubeauth serve, oidc cluster",
            format!("http://127.0.0.1:{kubeauth_port}/api/kubernetes/proxy{path}"),
            vec![
                "Backstage-Kubernetes-Cluster: bench-oidc".to_owned(),
                format!("Backstage-Kubernetes-Authorization-oidc-bench: {}", cluster.admin_token()),
            ],
        ),
    ];
    // Warm every path (connections, caches) before measuring.
    for (_, url, headers) in &targets {
        wrk(url, headers, 4, 2);
    }
    // Rounds that alternate the targets, so that a noisy moment of the machine does not fall on one target
    // alone; each row reports the median of its rounds.
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut samples: Vec<(&str, u32, Figures)> = Vec::new();
    let mut cpu: Vec<(&str, f64)> = Vec::new();
    for _ in 0..rounds {
        for connections in [1u32, 64] {
            for (name, url, headers) in &targets {
                let pid = match *name {
                    "kubectl proxy 1.37" => Some(kubectl.0.id()),
                    "kubeauth serve" | "kubeauth serve, oidc cluster" => Some(serve.0.id()),
                    _ => None,
                };
                let before = pid.map(cpu_seconds);
                let f = wrk(url, headers, connections, seconds);
                if let (Some(pid), Some(before), 64) = (pid, before, connections) {
                    let total = f.requests_per_second * seconds as f64;
                    cpu.push((*name, (cpu_seconds(pid) - before) * 1e6 / total));
                }
                eprintln!(
                    "{name} c={connections}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
                    f.requests_per_second, f.p50_ms, f.p99_ms, f.errors
                );
                samples.push((*name, connections, f));
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut figures: Vec<(&str, u32, Figures)> = Vec::new();
    for connections in [1u32, 64] {
        for (name, _, _) in &targets {
            let rows: Vec<&Figures> =
                samples.iter().filter(|(n, c, _)| n == name && *c == connections).map(|(_, _, f)| f).collect();
            figures.push((
                *name,
                connections,
                Figures {
                    requests_per_second: median(rows.iter().map(|f| f.requests_per_second).collect()),
                    p50_ms: median(rows.iter().map(|f| f.p50_ms).collect()),
                    p99_ms: median(rows.iter().map(|f| f.p99_ms).collect()),
                    errors: rows.iter().map(|f| f.errors).sum(),
                    error_kinds: rows.iter().map(|f| f.error_kinds.as_str()).collect::<Vec<_>>().join(" | "),
                },
            ));
        }
    }
    let cpu: Vec<(&str, f64)> = ["kubectl proxy 1.37", "kubeauth serve", "kubeauth serve, oidc cluster"]
        .into_iter()
        .map(|name| (name, median(cpu.iter().filter(|(n, _)| *n == name).map(|(_, us)| *us).collect())))
        .collect();
    let kubectl_rss = peak_rss_mb(kubectl.0.id());
    let kubeauth_rss = peak_rss_mb(serve.0.id());
    let audit_lines = std::fs::read_to_string(&audit_log).map_or(0, |log| log.lines().count());
    drop(kubectl);

    // Soak: 200 connections for the soak time, half through the proxy and half on the workloads query (the
    // entity resolved in a catalog, its pods fetched), against the same API server; RSS before, peak, after.
    let soak_seconds: u64 = arg("--soak-seconds").and_then(|s| s.parse().ok()).unwrap_or(60);
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("bench-catalog-token-0123456789");
    catalog.add(serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "bench", "namespace": "default", "annotations": {
            "backstage.io/kubernetes-label-selector": "app=bench", "backstage.io/kubernetes-namespace": "bench"}},
        "spec": {"type": "service", "owner": "bench", "lifecycle": "production"}
    }));
    let soak_config = scratch.path().join("soak-config.yaml");
    std::fs::write(
        &soak_config,
        format!(
            "{clusters}{}  catalog:\n    baseUrl: {}\n    token: {}\n",
            audit(&scratch.path().join("soak-audit.log")),
            catalog.url(),
            catalog.token()
        ),
    )
    .unwrap();
    let (soak, soak_port) = start_serve(&kubeauth, &soak_config);
    let script = scratch.path().join("workloads.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = '{{\"entityRef\":\"component:default/bench\",\"auth\":{{}}}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n{STATUS_COUNTER}"),
    )
    .unwrap();
    let proxy_script = scratch.path().join("proxy.lua");
    std::fs::write(
        &proxy_script,
        format!("wrk.headers[\"Backstage-Kubernetes-Cluster\"] = \"bench\"\n{STATUS_COUNTER}"),
    )
    .unwrap();
    let proxy_url = format!("http://127.0.0.1:{soak_port}/api/kubernetes/proxy{path}");
    let workloads_url = format!("http://127.0.0.1:{soak_port}/api/kubernetes/resources/workloads/query");
    // One query by hand first: the load below must be of successful queries.
    let probe = runtime
        .block_on(kubeauth_testkit::http::request(
            &format!("127.0.0.1:{soak_port}"),
            "POST",
            "/api/kubernetes/resources/workloads/query",
            &[("Content-Type", "application/json")],
            br#"{"entityRef":"component:default/bench","auth":{}}"#,
        ))
        .expect("a workloads query");
    assert_eq!(probe.status, 200, "the workloads query failed: {}", probe.text());
    // Warm up, then RSS at the start.
    wrk(&proxy_url, &["Backstage-Kubernetes-Cluster: bench".to_owned()], 4, 2);
    wrk_script(&workloads_url, &script, 4, 2);
    let soak_pid = soak.0.id();
    let rss_start = rss_mb(soak_pid);
    // RSS sampled through the soak: a leak grows to the end, a working set levels off.
    let samples_at: Vec<u64> = [1, 2, 3].iter().map(|q| soak_seconds * q / 3).collect();
    let (proxy_soak, workloads_soak, rss_during) = std::thread::scope(|s| {
        let proxy = s.spawn(|| wrk_script(&proxy_url, &proxy_script, 100, soak_seconds));
        let workloads = s.spawn(|| wrk_script(&workloads_url, &script, 100, soak_seconds));
        let sampler = s.spawn(|| {
            let started = Instant::now();
            let mut taken = Vec::new();
            for at in &samples_at {
                let wait = Duration::from_secs(*at)
                    .saturating_sub(started.elapsed())
                    .saturating_sub(Duration::from_millis(500));
                std::thread::sleep(wait);
                taken.push((*at, rss_mb(soak_pid)));
            }
            taken
        });
        (proxy.join().expect("proxy load"), workloads.join().expect("workloads load"), sampler.join().expect("sampler"))
    });
    let rss_peak = peak_rss_mb(soak_pid);
    std::thread::sleep(Duration::from_secs(2));
    let rss_end = rss_mb(soak_pid);
    // The allocator gives freed memory back within its decay time (jemalloc: 10 s).
    std::thread::sleep(Duration::from_secs(10));
    let rss_settled = rss_mb(soak_pid);
    eprintln!(
        "soak: proxy {:.0} req/s ({} errors: {}), workloads {:.0} req/s ({} errors: {}), RSS {rss_start:.1} / {rss_peak:.1} / {rss_end:.1} / {rss_settled:.1} MB",
        proxy_soak.requests_per_second,
        proxy_soak.errors,
        proxy_soak.error_kinds,
        workloads_soak.requests_per_second,
        workloads_soak.errors,
        workloads_soak.error_kinds
    );

    // Fan-out: an entity's objects (13 object types) from 50 clusters at once (all this API server, under 50
    // names, reached through a forwarder that counts connections: one TLS handshake each), against the same
    // from one cluster; for serviceAccount clusters and for oidc clusters (the user's token in the body).
    let api_server: std::net::SocketAddr = cluster.url().trim_start_matches("https://").parse().unwrap();
    let fanout = |clusters: usize, oidc: bool| -> (f64, u64) {
        let forwarder = runtime.block_on(kubeauth_testkit::forward::CountingForwarder::start(api_server));
        let auth = if oidc {
            "          authProvider: oidc\n          oidcTokenProvider: bench\n          skipMetricsLookup: true\n"
                .to_string()
        } else {
            format!(
                "          authProvider: serviceAccount\n          serviceAccountToken: {}\n          skipMetricsLookup: true\n",
                cluster.admin_token()
            )
        };
        let entries: String = (0..clusters)
            .map(|i| {
                format!(
                    "        - name: c{i}\n          url: {}\n          caData: {}\n{auth}",
                    forwarder.https_url(),
                    cluster.ca().ca_data(),
                )
            })
            .collect();
        let file = scratch.path().join(format!("fanout-{clusters}-{oidc}.yaml"));
        std::fs::write(
            &file,
            format!("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{entries}"),
        )
        .unwrap();
        let (_serve, port) = start_serve(&kubeauth, &file);
        let addr = format!("127.0.0.1:{port}");
        let user =
            if oidc { serde_json::json!({"oidc": {"bench": cluster.admin_token()}}) } else { serde_json::json!({}) };
        let body = serde_json::json!({"entity": {"metadata": {"name": "bench", "annotations": {
            "backstage.io/kubernetes-label-selector": "app=bench", "backstage.io/kubernetes-namespace": "bench"}}}, "auth": user})
        .to_string();
        let median = runtime.block_on(async {
            let mut times = Vec::new();
            for round in 0..7 {
                let started = Instant::now();
                let answer = kubeauth_testkit::http::request(
                    &addr,
                    "POST",
                    "/api/kubernetes/services/bench",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
                .await
                .expect("fan-out request");
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(answer.status, 200, "{}", answer.text());
                let items = answer.json()["items"].as_array().cloned().unwrap_or_default();
                assert_eq!(items.len(), clusters);
                assert!(
                    items.iter().all(|i| i["errors"].as_array().is_some_and(Vec::is_empty)),
                    "every cluster answers: {}",
                    answer.text()
                );
                // The first round opens the connections.
                if round > 0 {
                    times.push(elapsed);
                }
            }
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        });
        (median, forwarder.connections())
    };
    let (fanout_one, handshakes_one) = fanout(1, false);
    let (fanout_fifty, handshakes_fifty) = fanout(50, false);
    let (fanout_fifty_oidc, handshakes_fifty_oidc) = fanout(50, true);
    eprintln!(
        "fan-out: 1 cluster {fanout_one:.1} ms ({handshakes_one} handshakes), 50 clusters {fanout_fifty:.1} ms ({handshakes_fifty}), 50 oidc clusters {fanout_fifty_oidc:.1} ms ({handshakes_fifty_oidc})"
    );

    let get = |name: &str, c: u32| figures.iter().find(|(n, cc, _)| *n == name && *cc == c).map(|(_, _, f)| f).unwrap();
    let mut rows = String::new();
    for (name, connections, f) in &figures {
        rows.push_str(&format!(
            "| {name} | {connections} | {:.0} | {:.3} ms | {:.3} ms | {} |\n",
            f.requests_per_second, f.p50_ms, f.p99_ms, f.errors
        ));
    }
    let direct1 = get("direct (kube-apiserver)", 1).p50_ms;
    let added_kubectl = get("kubectl proxy 1.37", 1).p50_ms - direct1;
    let added_kubeauth = get("kubeauth serve", 1).p50_ms - direct1;
    let throughput_ratio =
        get("kubeauth serve", 64).requests_per_second / get("kubectl proxy 1.37", 64).requests_per_second;
    let oidc_ratio =
        get("kubeauth serve, oidc cluster", 64).requests_per_second / get("kubectl proxy 1.37", 64).requests_per_second;
    let oidc_vs_sa =
        get("kubeauth serve, oidc cluster", 64).requests_per_second / get("kubeauth serve", 64).requests_per_second;
    let added_oidc = get("kubeauth serve, oidc cluster", 1).p50_ms - direct1;
    let section = format!(
        "## The proxy: `kubeauth serve` vs `kubectl proxy` vs direct\n\n\
         `GET {path}` (5 pods) on one kube-apiserver 1.20 + etcd, wrk {seconds} s per run, median of {rounds} alternating rounds, everything on this machine \
         ({} cores) — load generator, proxies, API server and etcd share the CPUs.\n\n\
         | target | connections | requests/s | p50 | p99 | errors (all rounds) |\n|---|---|---|---|---|---|\n{rows}\n\
         - Throughput at 64 connections, kubeauth serve / kubectl proxy: **{throughput_ratio:.2}x** (serviceAccount \
         cluster), **{oidc_ratio:.2}x** (oidc cluster; target ≥ 1.3x)\n\
         - Throughput at 64 connections, oidc cluster / serviceAccount cluster: **{oidc_vs_sa:.2}** (target ≥ 0.90)\n\
         - Median added latency over direct at 1 connection: kubeauth serve **{added_kubeauth:.3} ms** \
         (serviceAccount), **{added_oidc:.3} ms** (oidc), kubectl proxy {added_kubectl:.3} ms\n\
         - Peak RSS: kubeauth serve **{kubeauth_rss:.1} MB**, kubectl proxy {kubectl_rss:.1} MB (target < 30 MB)\n\
         - CPU time per proxied request at 64 connections (target ≤ 100 µs for kubeauth serve): {}\n\
         - kubeauth serve keeps its audit log in a file throughout: {audit_lines} lines written\n\n\
         ### Soak: 200 connections for {soak_seconds} s\n\n\
         100 connections through the proxy (the same GET) and 100 on `POST /resources/workloads/query` (an entity \
         resolved in a catalog, then the 13 object types of its namespace fetched) at once, on one `kubeauth serve`.\n\n\
         | load | requests/s | p50 | p99 | errors | of which |\n|---|---|---|---|---|---|\n\
         | proxy | {:.0} | {:.3} ms | {:.3} ms | {} | {} |\n\
         | workloads query | {:.0} | {:.3} ms | {:.3} ms | {} | {} |\n\n\
         Beyond `kubeauth.server.limits` (requests in flight, queued entity queries) a request is answered `503` with \
         `Retry-After` at once: such answers are counted under their status above, never as timeouts.\n\n\
         RSS of kubeauth serve: {rss_start:.1} MB after warm-up; during the soak {}; peak {rss_peak:.1} MB; \
         {rss_end:.1} MB 2 s after it, **{rss_settled:.1} MB** 12 s after it (target < 30 MB; the allocator returns \
         freed memory within its 10 s decay).\n\n\
         ### Fan-out over clusters\n\n\
         An entity's objects (13 object types, `POST /services/{{id}}`), median of 6 requests after a first one, \
         the API server reached through a forwarder that counts connections (each one TLS handshake) over all 7 requests:\n\n\
         | clusters | wall time | TLS handshakes |\n|---|---|---|\n\
         | 1 (serviceAccount) | {fanout_one:.1} ms | {handshakes_one} |\n\
         | 50 (serviceAccount; 650 API requests a round) | {fanout_fifty:.1} ms ({:.1}x the single cluster's) | {handshakes_fifty} |\n\
         | 50 (oidc, the user's token in the body) | {fanout_fifty_oidc:.1} ms | {handshakes_fifty_oidc} |\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu.iter().map(|(n, us)| format!("{n} {us:.0} µs")).collect::<Vec<_>>().join(", "),
        proxy_soak.requests_per_second,
        proxy_soak.p50_ms,
        proxy_soak.p99_ms,
        proxy_soak.errors,
        proxy_soak.error_kinds,
        workloads_soak.requests_per_second,
        workloads_soak.p50_ms,
        workloads_soak.p99_ms,
        workloads_soak.errors,
        workloads_soak.error_kinds,
        rss_during.iter().map(|(at, mb)| format!("{mb:.1} MB at {at} s")).collect::<Vec<_>>().join(", "),
        fanout_fifty / fanout_one,
    );
    std::fs::write(&out, &section).expect("write the report section");
    print!("{section}");
    drop(serve);
    drop(soak);
    let _ = Path::new(&out);
}
