use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// A free TCP port on 127.0.0.1 (bound, then released) for a server that starts later, never one handed out
/// before in this process.
///
/// It is taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): a port from that range
/// may be given, between the check and the server's bind, to any outbound connection of a concurrent test as its
/// source port.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    // A pseudo-random start (time and process id), then every port of the range in turn.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    let span = u32::from(high - low);
    for step in 0..span {
        let port = low + u16::try_from((seed.wrapping_add(step.wrapping_mul(7919))) % span).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port below {high}")
}

/// A server process that cannot outlive the test process.
///
/// It runs under a small shell supervisor that holds a pipe from the test process: when the test process
/// closes the pipe (on drop) or ends in any way, even killed, the supervisor stops the server (TERM, then KILL
/// after 5 s) and removes its scratch folder. So a test run leaves no process and no temp dir behind.
pub struct Supervised {
    name: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised").field("name", &self.name).field("log", &self.log).finish_non_exhaustive()
    }
}

const SUPERVISOR: &str = r#"
log=$1; cleanup=$2; shift 2
rm -f "$log.exited"
"$@" >"$log" 2>&1 </dev/null &
child=$!
( while kill -0 "$child" 2>/dev/null; do sleep 0.2; done; touch "$log.exited" 2>/dev/null ) &
watcher=$!
cat >/dev/null
kill -TERM "$child" 2>/dev/null
for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$child" 2>/dev/null
kill "$watcher" 2>/dev/null
wait 2>/dev/null
# Other servers may share the folder and still be stopping: retry until it is gone.
if [ -n "$cleanup" ]; then
  for _ in $(seq 40); do rm -rf "$cleanup" 2>/dev/null && [ ! -e "$cleanup" ] && break; sleep 0.25; done
fi
exit 0
"#;

impl Supervised {
    /// Starts `program args…`, its output in `log`; `cleanup` is removed when it stops.
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path, cleanup: Option<&Path>) -> Self {
        let mut supervisor = Command::new("bash")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("supervisor")
            .arg(log)
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let stdin = supervisor.stdin.take();
        Self { name: name.to_owned(), supervisor, stdin, log: log.to_owned() }
    }

    /// The last lines of the server's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the server process has ended (on its own: it is only stopped by [`stop`](Self::stop)).
    pub fn has_exited(&self) -> bool {
        let mut marker = self.log.clone().into_os_string();
        marker.push(".exited");
        Path::new(&marker).exists()
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the server and waits for the supervisor to clean up.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.supervisor.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
