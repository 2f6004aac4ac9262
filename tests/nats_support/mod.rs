//! Real `nats-server` processes for the federation tests: found on the
//! PATH (or `NATS_SERVER=`), installed from the distribution when missing
//! (as root, with apt-get, once per test binary), started on free
//! loopback ports from generated configs in a temp dir, stopped by PID
//! when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `nats-server` binary, installed if need be; `None` (with the reason
/// printed) when it is missing and cannot be installed.
pub fn nats_server() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Ok(p) = std::env::var("NATS_SERVER") {
                return Some(PathBuf::from(p));
            }
            if let Some(p) = find() {
                return Some(p);
            }
            // SAFETY: getuid has no preconditions.
            let root = unsafe { libc::getuid() } == 0;
            if !root {
                eprintln!("SKIP: nats-server is missing and only root installs it (apt-get install nats-server)");
                return None;
            }
            let ok = Command::new("apt-get")
                .arg("update")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
                && Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "nats-server"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            if !ok {
                eprintln!("SKIP: nats-server is missing and apt-get could not install it");
                return None;
            }
            find()
        })
        .clone()
}

fn find() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join("nats-server"))
        .find(|p| p.is_file());
    found
}

/// Skips the test (returns from it) when no nats-server can be had.
#[macro_export]
macro_rules! need_nats {
    () => {
        match $crate::nats_support::nats_server() {
            Some(p) => p,
            None => {
                eprintln!("SKIP: no nats-server");
                return;
            }
        }
    };
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A temp dir removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!(
            "stagebus-nats-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running nats-server.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub monitor: u16,
    pub cluster_port: u16,
    config: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    dir: Dir,
}

/// What a node's config adds to the basics (listen, monitor, name).
#[derive(Clone, Default)]
pub struct Spec {
    /// Extra config text (authorization, max_payload…).
    pub extra: String,
    /// JetStream on, with its store in the node's dir.
    pub jetstream: bool,
}

impl Node {
    /// Starts one node (no cluster) and waits until it serves; on other
    /// ports if one was taken meanwhile (see [`cluster`]).
    pub fn start(binary: &Path, name: &str, spec: &Spec) -> Node {
        let mut why = String::new();
        for _ in 0..3 {
            let mut node = Node::prepare(binary, name, spec, None);
            match node.try_launch() {
                Ok(()) => return node,
                Err(e) => why = e,
            }
        }
        panic!("nats-server {name} did not start after three tries: {why}");
    }

    fn prepare(binary: &Path, name: &str, spec: &Spec, cluster: Option<(u16, &[u16])>) -> Node {
        let dir = Dir::new(name);
        let port = free_port();
        let monitor = free_port();
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
             ping_interval: \"2s\"\nping_max: 2\n"
        );
        if spec.jetstream {
            conf += &format!(
                "jetstream {{ store_dir: \"{}\", max_mem: 64M, max_file: 256M }}\n",
                dir.0.join("js").display()
            );
        }
        let mut cluster_port = 0;
        if let Some((own, others)) = cluster {
            cluster_port = own;
            let routes: Vec<String> = others
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            conf += &format!(
                "cluster {{ name: sbtest, listen: 127.0.0.1:{own}, routes: [{}] }}\n",
                routes.join(", ")
            );
        }
        conf += &spec.extra;
        conf.push('\n');
        let config = dir.0.join("server.conf");
        std::fs::write(&config, conf).unwrap();
        Node {
            name: name.to_string(),
            port,
            monitor,
            cluster_port,
            config,
            binary: binary.to_path_buf(),
            child: None,
            dir,
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.0.join("server.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(self.monitor, "/healthz").is_some_and(|b| b.contains("ok")) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("it exited ({status}):\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not serving after 20 s:\n{}", self.log()))
    }

    fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!("nats-server {} did not start: {e}", self.name);
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill with the pid of our own child.
            unsafe { libc::kill(c.id() as i32, signal) };
        }
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, same ports and config.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A stopped process must be continued to die of SIGKILL promptly.
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// Starts `n` nodes as one cluster and waits until each has a route to
/// every other. Ports are picked free but taken only when the servers
/// start, so a test running beside may take one first: a node that exits,
/// or a cluster not formed in time, is started again on other ports (three
/// tries).
pub fn cluster(binary: &Path, n: usize, spec: &Spec) -> Vec<Node> {
    let mut why = String::new();
    for attempt in 1..=3 {
        match try_cluster(binary, n, spec) {
            Ok(nodes) => return nodes,
            Err(e) => {
                eprintln!("nats cluster, attempt {attempt}: {e}");
                why = e;
            }
        }
    }
    panic!("no nats cluster after three tries: {why}");
}

fn try_cluster(binary: &Path, n: usize, spec: &Spec) -> Result<Vec<Node>, String> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| {
            let others: Vec<u16> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| *p)
                .collect();
            Node::prepare(
                binary,
                &format!("n{}", i + 1),
                spec,
                Some((ports[i], &others)),
            )
        })
        .collect();
    for node in &mut nodes {
        let log = std::fs::File::create(node.dir.0.join("server.log")).unwrap();
        node.child = Some(
            Command::new(&node.binary)
                .arg("-c")
                .arg(&node.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nats-server"),
        );
    }
    // Generous: a loaded 2-core machine forms the cluster slowly.
    let deadline = Instant::now() + Duration::from_secs(40);
    for node in &mut nodes {
        loop {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "node {} exited ({status}):\n{}",
                    node.name,
                    node.log()
                ));
            }
            let routes = http_get(node.monitor, "/routez")
                .and_then(|b| {
                    let v: serde_json::Value = serde_json::from_str(&b).ok()?;
                    v.get("num_routes")?.as_u64()
                })
                .unwrap_or(0);
            let healthy = http_get(node.monitor, "/healthz").is_some_and(|b| b.contains("\"ok\""));
            if routes as usize >= n - 1 && healthy {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("node {} not ready:\n{}", node.name, node.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(nodes)
}

/// A plain HTTP/1.0 GET on the monitoring port; the body.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
