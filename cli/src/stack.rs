//! `lightbox up` / `lightbox down`: a local stack of nats-server (JetStream, file storage),
//! SeaweedFS (S3 on 127.0.0.1 only, with generated credentials) and one instance of each function.
//! State lives in `.lightbox/` at the repository root; `.lightbox/stack.env` tells other
//! `lightbox` commands how to reach the stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Function binaries started by `up`, when built.
const FUNCTIONS: [(&str, &[(&str, &str)]); 4] = [
    ("lightbox-convert", &[]),
    ("lightbox-tessellate", &[]),
    ("lightbox-render", &[("LIGHTBOX_QUEUE", "render.light")]),
    ("lightbox-render", &[("LIGHTBOX_QUEUE", "render.heavy")]),
];

/// The repository root: the nearest folder above the working directory with `tools/setup.sh`.
fn root() -> anyhow::Result<PathBuf> {
    if let Ok(home) = std::env::var("LIGHTBOX_HOME") {
        return Ok(PathBuf::from(home));
    }
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("tools/setup.sh").is_file() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("run this inside the Lightbox repository (or set LIGHTBOX_HOME)");
        }
    }
}

/// Sets variables from `.lightbox/stack.env` that the environment does not already set.
pub fn load_stack_env() {
    let Ok(root) = root() else { return };
    let Ok(text) = std::fs::read_to_string(root.join(".lightbox/stack.env")) else {
        return;
    };
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if std::env::var_os(key).is_none() {
                std::env::set_var(key, value);
            }
        }
    }
}

fn port(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn random_token(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_for_port(port: u16, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?} (see .lightbox/logs)")
}

struct Started {
    name: String,
    pid: u32,
}

fn spawn(
    root: &Path,
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<Started> {
    use std::os::unix::process::CommandExt;
    let logs = root.join(".lightbox/logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Own process group: a Ctrl-C in the terminal reaches only `lightbox up`, which then
        // stops everything in order (functions drain first).
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Started {
        name: name.to_owned(),
        pid: child.id(),
    })
}

pub async fn up(detach: bool) -> anyhow::Result<()> {
    let root = root()?;
    let state = root.join(".lightbox");
    let pids_file = state.join("pids");
    if let Ok(text) = std::fs::read_to_string(&pids_file) {
        if text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .any(alive)
        {
            println!("the stack is already running (lightbox down stops it)");
            return Ok(());
        }
    }
    let tools = root.join(".tools/bin");
    if !tools.join("nats-server").exists() || !tools.join("weed").exists() {
        eprintln!("installing pinned tools (first run)...");
        let status = Command::new("bash")
            .arg(root.join("tools/setup.sh"))
            .status()?;
        if !status.success() {
            bail!("tools/setup.sh failed");
        }
    }
    std::fs::create_dir_all(state.join("nats"))?;
    std::fs::create_dir_all(state.join("weed"))?;

    // Local S3 credentials, generated once and kept in .lightbox (git-ignored).
    let s3_config = state.join("s3.json");
    let creds_file = state.join("s3.creds");
    let (access, secret) = match std::fs::read_to_string(&creds_file) {
        Ok(text) if text.contains(':') => {
            let (a, s) = text.trim().split_once(':').unwrap_or_default();
            (a.to_owned(), s.to_owned())
        }
        _ => {
            let pair = (format!("lightbox-{}", random_token(4)), random_token(20));
            std::fs::write(&creds_file, format!("{}:{}", pair.0, pair.1))?;
            pair
        }
    };
    std::fs::write(
        &s3_config,
        serde_json::json!({"identities": [{"name": "lightbox", "credentials": [{"accessKey": access, "secretKey": secret}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}).to_string(),
    )?;

    let nats_port = port("LIGHTBOX_NATS_PORT", 4222);
    // nats-server's monitoring port (/varz, /jsz, /healthz), which KEDA's nats-jetstream scaler
    // reads; on 127.0.0.1 like the client port.
    let monitor_port = port("LIGHTBOX_NATS_MONITOR_PORT", 8222);
    let s3_port = port("LIGHTBOX_S3_PORT", 8333);
    let env = vec![
        (
            "NATS_URL".to_owned(),
            format!("nats://127.0.0.1:{nats_port}"),
        ),
        ("LIGHTBOX_S3_BUCKET".to_owned(), "lightbox".to_owned()),
        (
            "LIGHTBOX_S3_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{s3_port}"),
        ),
        ("LIGHTBOX_S3_ALLOW_HTTP".to_owned(), "true".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), access),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret),
    ];

    let mut started = Vec::new();
    started.push(spawn(
        &root,
        "nats-server",
        &tools.join("nats-server"),
        &[
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            nats_port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "-sd".into(),
            state.join("nats").display().to_string(),
        ],
        &[],
    )?);
    started.push(spawn(
        &root,
        "seaweedfs",
        &tools.join("weed"),
        &[
            "mini".into(),
            format!("-dir={}", state.join("weed").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.port={s3_port}"),
            format!("-s3.config={}", s3_config.display()),
        ],
        &[],
    )?);
    let record = |started: &[Started]| -> anyhow::Result<()> {
        let text: String = started
            .iter()
            .map(|s| format!("{} {}\n", s.name, s.pid))
            .collect();
        std::fs::write(&pids_file, text)?;
        Ok(())
    };
    record(&started)?;
    wait_for_port(nats_port, "nats-server", Duration::from_secs(20))?;
    wait_for_port(
        monitor_port,
        "nats-server monitoring",
        Duration::from_secs(20),
    )?;
    wait_for_port(s3_port, "SeaweedFS", Duration::from_secs(60))?;
    let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(state.join("stack.env"), env_text)?;

    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("binary folder")?;
    for (name, extra) in FUNCTIONS {
        let program = bin_dir.join(name);
        let label = match extra.first() {
            Some((_, queue)) => format!("{name}-{}", queue.replace('.', "-")),
            None => name.to_owned(),
        };
        if !program.exists() {
            eprintln!("skipping {name}: not built (cargo build --bins)");
            continue;
        }
        let mut function_env = env.clone();
        function_env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        started.push(spawn(&root, &label, &program, &[], &function_env)?);
        record(&started)?;
    }
    // Wait until every function reports it is consuming.
    for entry in started.iter().skip(2) {
        let log = root.join(format!(".lightbox/logs/{}.log", entry.name));
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("consuming")
        {
            if start.elapsed() > Duration::from_secs(30) || !alive(entry.pid) {
                bail!("{} did not start; see {}", entry.name, log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!("stack up: NATS nats://127.0.0.1:{nats_port} (monitoring http://127.0.0.1:{monitor_port}), S3 http://127.0.0.1:{s3_port} (bucket lightbox)");
    for entry in &started {
        println!(
            "  {:<18} pid {:<8} log .lightbox/logs/{}.log",
            entry.name, entry.pid, entry.name
        );
    }
    if detach {
        println!("running in the background; `lightbox down` stops it");
        return Ok(());
    }
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    down()
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

pub fn down() -> anyhow::Result<()> {
    let root = root()?;
    let pids_file = root.join(".lightbox/pids");
    let Ok(text) = std::fs::read_to_string(&pids_file) else {
        println!("no stack is running");
        return Ok(());
    };
    let entries: Vec<(String, u32)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect();
    // Functions first (they drain), then the servers.
    for stage in [false, true] {
        let group: Vec<&(String, u32)> = entries
            .iter()
            .filter(|(name, _)| (name == "nats-server" || name == "seaweedfs") == stage)
            .collect();
        for (_, pid) in &group {
            signal(*pid, "TERM");
        }
        let start = Instant::now();
        while group.iter().any(|(_, pid)| alive(*pid)) && start.elapsed() < Duration::from_secs(40)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (name, pid) in &group {
            if alive(*pid) {
                eprintln!("{name} did not stop; killing it");
                signal(*pid, "KILL");
            }
        }
    }
    std::fs::remove_file(&pids_file)?;
    let _ = std::fs::remove_file(root.join(".lightbox/stack.env"));
    println!("stack stopped");
    Ok(())
}
