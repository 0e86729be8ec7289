//! Test support for Lightbox's integration tests: real servers on free loopback ports, stopped by
//! `Drop` guards, and helpers to start workers (in process or as the real function binaries).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lightbox_runtime::config::{NatsConfig, WorkerConfig};
use lightbox_runtime::store::{S3Settings, StoreBackend, StoreConfig, DEFAULT_PREFIXES};

/// The committed bad-input corpus (`tests/corpus/`): its generator, writer and reader.
pub mod corpus;

/// A real 3-node JetStream cluster on loopback with proxies to kill, partition and heal nodes.
pub mod nats_cluster;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A pinned tool from `.tools/bin` (installed by `tools/setup.sh`), or `LIGHTBOX_TOOLS_BIN`.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("LIGHTBOX_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".tools/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run tools/setup.sh (or `just test`)",
        path.display()
    );
    path
}

/// A function binary built by `cargo build --bins` next to this test binary.
pub fn function_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Test binaries live in target/<profile>/deps/, bins in target/<profile>/.
    let candidates: Vec<PathBuf> = [exe.parent(), exe.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: build it first with `cargo build --workspace --bins`",
                candidates.last().unwrap().display()
            )
        })
}

/// A fresh, empty temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "lightbox-{label}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// A free TCP port on 127.0.0.1 (and, with `plus`, that port + `plus` free too).
pub fn free_port(plus: Option<u16>) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let _ = NEXT.compare_exchange(
            0,
            20000 + (std::process::id() % 8000) as u16,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    loop {
        let port = NEXT.fetch_add(7, Ordering::SeqCst);
        if port > 40000 {
            NEXT.store(20000, Ordering::SeqCst);
            continue;
        }
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && plus.map(|d| free(port + d)).unwrap_or(true) {
            return port;
        }
    }
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listened on port {port} within {timeout:?}")
}

/// A real `nats-server -js` on a free port with its own store directory.
pub struct NatsServer {
    pub port: u16,
    child: Option<Child>,
    pub dir: TempDir,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with_config(None)
    }

    /// Starts with an optional server config file (for auth tests).
    pub fn start_with_config(config: Option<PathBuf>) -> Self {
        Self::start_with(config, Vec::new())
    }

    /// Starts with a server config file and environment (for `$VAR` substitution in it).
    pub fn start_with(config: Option<PathBuf>, env: Vec<(String, String)>) -> Self {
        let mut server = Self {
            port: free_port(None),
            child: None,
            dir: TempDir::new("nats"),
            config,
            env,
        };
        server.spawn().expect("nats-server starts");
        server
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(tool("nats-server"));
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.child = Some(command.spawn().context("spawning nats-server")?);
        wait_for_port(self.port, Duration::from_secs(10))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig {
            url: self.url(),
            ..NatsConfig::default()
        }
    }

    /// Stops the server hard and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("nats-server restarts");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Access key and secret of the test S3 identity.
pub const S3_ACCESS_KEY: &str = "lightbox-test-access";
pub const S3_SECRET_KEY: &str = "lightbox-test-secret-5f1c";
pub const S3_BUCKET: &str = "lightbox";

/// A real SeaweedFS (`weed mini`) S3 server bound to 127.0.0.1 with credentials.
pub struct SeaweedS3 {
    pub s3_port: u16,
    child: Option<Child>,
    dir: TempDir,
    ports: [u16; 4],
}

impl SeaweedS3 {
    pub fn start() -> Self {
        // A port found free can be taken by another process before weed binds it (free_port
        // only probes); weed then exits. Start again on other ports, a few times.
        let mut last_error = None;
        for _ in 0..3 {
            let dir = TempDir::new("weed");
            // gRPC ports are the HTTP port + 10000, so both must be free.
            let ports = [
                free_port(Some(10000)),
                free_port(Some(10000)),
                free_port(Some(10000)),
                free_port(Some(10000)),
            ];
            let mut server = Self {
                s3_port: ports[3],
                child: None,
                dir,
                ports,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(err) => last_error = Some(err),
            }
        }
        panic!("SeaweedFS starts: {:#}", last_error.unwrap())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let config = self.dir.path().join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{"name": "lightbox", "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}).to_string(),
        )?;
        let [master, volume, filer, s3] = self.ports;
        let log = std::fs::File::create(self.dir.path().join("weed.log"))?;
        let child = Command::new(tool("weed"))
            .arg("mini")
            .arg(format!("-dir={}", self.dir.path().join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", config.display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning weed mini")?;
        self.child = Some(child);
        let listening = wait_for_port(s3, Duration::from_secs(60));
        // A service of weed that could not bind its port ends the process soon after start.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            self.child = None;
            let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            bail!("weed mini exited during start-up ({status}): {tail}");
        }
        listening
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A store configuration for this server (bucket auto-created on first write).
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            backend: StoreBackend::S3(S3Settings {
                endpoint: Some(self.endpoint()),
                bucket: S3_BUCKET.into(),
                region: "us-east-1".into(),
                access_key_id: Some(S3_ACCESS_KEY.into()),
                secret_access_key: Some(S3_SECRET_KEY.into()),
                path_style: true,
                allow_http: true,
            }),
            ..StoreConfig::default()
        }
    }

    /// The environment a function process needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LIGHTBOX_S3_BUCKET".into(), S3_BUCKET.into()),
            ("LIGHTBOX_S3_ENDPOINT".into(), self.endpoint()),
            ("LIGHTBOX_S3_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
        ]
    }

    /// Stops the server (its data stays); `start_again` brings it back on the same ports.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.spawn().expect("SeaweedFS restarts");
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local-filesystem store configuration in a temp dir.
pub fn local_store(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::Local {
            root: dir.path().to_path_buf(),
        },
        ..StoreConfig::default()
    }
}

/// A worker configuration for tests: fast retries, short leases, small drain grace.
pub fn worker_config(
    nats: &NatsServer,
    store: StoreConfig,
    queue: &str,
    concurrency: usize,
) -> WorkerConfig {
    worker_config_with(nats.nats_config(), store, queue, concurrency)
}

/// [`worker_config`] for any NATS connection (a cluster's server list, a user).
pub fn worker_config_with(
    nats: NatsConfig,
    store: StoreConfig,
    queue: &str,
    concurrency: usize,
) -> WorkerConfig {
    WorkerConfig {
        nats,
        store,
        queue: queue.into(),
        concurrency,
        ack_wait: Some(Duration::from_secs(3)),
        max_deliver: None,
        max_ack_pending: None,
        drain_grace: Duration::from_secs(10),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        instance: format!("test-{}", rand_suffix()),
        // A free port each: tests run many workers at once.
        metrics_addr: Some("127.0.0.1:0".into()),
    }
}

/// The environment for a function process (NATS, store, short leases).
pub fn function_env(nats: &NatsServer, store: &[(String, String)]) -> Vec<(String, String)> {
    function_env_with(&nats.url(), store)
}

/// [`function_env`] for any `NATS_URL` (a cluster's comma-separated server list).
pub fn function_env_with(nats_url: &str, store: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("NATS_URL".to_string(), nats_url.to_string()),
        ("LIGHTBOX_ACK_WAIT_SECS".to_string(), "3".to_string()),
        (
            "LIGHTBOX_METRICS_ADDR".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("LIGHTBOX_BACKOFF_BASE_MS".to_string(), "100".to_string()),
        ("LIGHTBOX_BACKOFF_MAX_MS".to_string(), "500".to_string()),
        ("LIGHTBOX_LOG".to_string(), "info".to_string()),
        (
            "LIGHTBOX_ALLOWED_PREFIXES".to_string(),
            DEFAULT_PREFIXES.to_string(),
        ),
    ];
    env.extend(store.iter().cloned());
    env
}

/// A function process; killed on drop.
pub struct FunctionProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl FunctionProcess {
    pub fn spawn(binary: &Path, env: &[(String, String)], log_dir: &TempDir, label: &str) -> Self {
        let log = log_dir.path().join(format!("{label}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("function process starts");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<bool> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a worker process reports it is consuming (its log says so).
pub async fn wait_consuming(process: &FunctionProcess, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if process.log_text().contains("consuming") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("worker did not start consuming:\n{}", process.log_text());
}

/// A noisy RGB PNG (noise defeats compression, so conversion takes real time).
pub fn noisy_png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let base = ((x + y) % 256) as u8;
        image::Rgb([
            base,
            (state & 0xff) as u8,
            ((state >> 8) & 0x3f) as u8 + base / 2,
        ])
    });
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png encodes");
    out
}
