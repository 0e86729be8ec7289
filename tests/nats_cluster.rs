//! A real 3-node NATS JetStream cluster on loopback for the cluster tests and `./just
//! chaos-cluster`: three `nats-server` processes with JetStream and cluster routes on free ports,
//! optionally with the least-privilege users of `infra/nats/auth.conf`.
//!
//! Every connection to a node goes through a small TCP proxy of this harness: one in front of its
//! client port (the port clients are given and the one the node advertises), one in front of its
//! route port for routes it learns by gossip, and one per ordered pair of nodes for the routes each
//! node dials. So [`NatsCluster::partition`] cuts a node off from the others and from its clients
//! (open connections dropped, new ones closed at once) without root or network tools, and
//! [`NatsCluster::heal`] restores it. [`NatsCluster::kill`] SIGKILLs a node and
//! [`NatsCluster::restart`] brings it back on the same ports and store.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use lightbox_tests::nats_cluster::NatsCluster;
//! let mut cluster = NatsCluster::start();
//! let client = cluster.nats_config().connect("test").await?;
//! let leader = NatsCluster::stream_leader(&client, "JOBS").await;
//! if let Some(node) = leader {
//!     cluster.kill(node);
//! }
//! # Ok(())
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lightbox_runtime::config::NatsConfig;

use crate::{free_port, tool, wait_for_port, TempDir};

/// Number of nodes.
pub const NODES: usize = 3;

/// A TCP proxy on a free loopback port in front of one upstream port, which can be cut (every open
/// connection shut down, new ones closed at once) and restored.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts listening on a free port, forwarding every connection to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let port = free_port(None);
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy listens");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (cut, open, stop) = (cut.clone(), open.clone(), stop.clone());
            std::thread::spawn(move || {
                for incoming in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(downstream) = incoming else { continue };
                    if cut.load(Ordering::SeqCst) {
                        let _ = downstream.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        let _ = downstream.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = downstream.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    {
                        let mut open = open.lock().unwrap();
                        open.retain(|s| s.peer_addr().is_ok());
                        for stream in [&downstream, &upstream] {
                            if let Ok(clone) = stream.try_clone() {
                                open.push(clone);
                            }
                        }
                    }
                    pipe(&downstream, &upstream);
                    pipe(&upstream, &downstream);
                }
            });
        }
        Self {
            port,
            cut,
            open,
            stop,
        }
    }

    /// Drops every open connection and closes new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies one direction of a proxied connection on its own thread; either side closing closes both.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 32 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// One node: its nats-server process, real ports and the proxies in front of them.
pub struct Node {
    pub name: String,
    /// The node's own client port (behind `client_proxy`).
    server_port: u16,
    /// The node's own route port (behind `route_proxy` and the pair proxies).
    route_port: u16,
    /// Clients connect here; the node advertises this address to clients.
    pub client_proxy: Proxy,
    /// The route address the node advertises to the cluster (routes learnt by gossip).
    route_proxy: Proxy,
    child: Option<Child>,
    dir: TempDir,
    config: PathBuf,
}

impl Node {
    /// `nats://127.0.0.1:<client proxy port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_proxy.port)
    }

    fn spawn(&mut self, env: &[(String, String)]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))?;
        let child = Command::new(tool("nats-server"))
            .arg("-c")
            .arg(&self.config)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning nats-server")?;
        self.child = Some(child);
        wait_for_port(self.server_port, Duration::from_secs(10))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's log (nats-server's stderr), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

/// Three nats-server processes forming cluster `lightbox`, named `n0`, `n1`, `n2`.
pub struct NatsCluster {
    pub nodes: Vec<Node>,
    /// `pair_proxies[(from, to)]`: the proxy `from` dials to reach `to`'s route port.
    pair_proxies: Vec<((usize, usize), Proxy)>,
    /// The environment nats-server reads `$VAR`s from (auth.conf passwords).
    env: Vec<(String, String)>,
    /// Set when started with `auth.conf`: the admin identity the harness itself uses.
    admin: Option<(String, String)>,
}

impl NatsCluster {
    /// Starts three open nodes (no users) and waits until each listens, not until JetStream has
    /// elected a meta leader: riding that out is what start-up retries are for.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts three nodes with the committed `infra/nats/auth.conf` in each node's config and
    /// `passwords` (`(user, password)`, `admin` among them) as its `LIGHTBOX_<USER>_PASSWORD`
    /// variables; the harness itself connects as `admin`.
    pub fn start_with_auth(passwords: &[(&str, &str)]) -> Self {
        let env = passwords
            .iter()
            .map(|(user, password)| {
                (
                    format!("LIGHTBOX_{}_PASSWORD", user.to_uppercase()),
                    password.to_string(),
                )
            })
            .collect();
        let admin = passwords
            .iter()
            .find(|(user, _)| *user == "admin")
            .map(|(_, password)| password.to_string())
            .expect("an admin password");
        Self::start_inner(Some((env, admin)))
    }

    fn start_inner(auth: Option<(Vec<(String, String)>, String)>) -> Self {
        let mut nodes = Vec::new();
        for index in 0..NODES {
            let server_port = free_port(None);
            let route_port = free_port(None);
            nodes.push(Node {
                name: format!("n{index}"),
                server_port,
                route_port,
                client_proxy: Proxy::start(server_port),
                route_proxy: Proxy::start(route_port),
                child: None,
                dir: TempDir::new(&format!("nats-n{index}")),
                config: PathBuf::new(),
            });
        }
        let mut pair_proxies = Vec::new();
        for from in 0..NODES {
            for (to, node) in nodes.iter().enumerate() {
                if from != to {
                    pair_proxies.push(((from, to), Proxy::start(node.route_port)));
                }
            }
        }
        let auth_conf = auth.as_ref().map(|_| {
            std::fs::read_to_string(crate::workspace_root().join("infra/nats/auth.conf"))
                .expect("infra/nats/auth.conf")
        });
        for (index, node) in nodes.iter_mut().enumerate() {
            let routes: Vec<String> = pair_proxies
                .iter()
                .filter(|((from, _), _)| *from == index)
                .map(|(_, proxy)| format!("\"nats-route://127.0.0.1:{}\"", proxy.port))
                .collect();
            let store = node.dir.path().join("js");
            let mut config = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nclient_advertise: \"127.0.0.1:{client_proxy}\"\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{\n  name: lightbox\n  listen: \"127.0.0.1:{route}\"\n  advertise: \"127.0.0.1:{route_proxy}\"\n  \
                 routes: [{routes}]\n}}\n",
                name = node.name,
                client = node.server_port,
                client_proxy = node.client_proxy.port,
                store = store.display(),
                route = node.route_port,
                route_proxy = node.route_proxy.port,
                routes = routes.join(", "),
            );
            if let Some(text) = &auth_conf {
                config.push_str(text);
            }
            node.config = node.dir.path().join("node.conf");
            std::fs::write(&node.config, config).expect("node config");
        }
        let (env, admin) = match auth {
            Some((env, admin_password)) => (env, Some(("admin".to_owned(), admin_password))),
            None => (Vec::new(), None),
        };
        let mut cluster = Self {
            nodes,
            pair_proxies,
            env,
            admin,
        };
        for index in 0..NODES {
            let env = cluster.env.clone();
            cluster.nodes[index]
                .spawn(&env)
                .expect("nats-server starts");
        }
        cluster
    }

    /// Every node's client URL, comma separated: what `NATS_URL` is given.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A connection to the whole server list, as the harness's identity (admin with auth).
    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig {
            url: self.url(),
            user: self.admin.as_ref().map(|(user, _)| user.clone()),
            password: self.admin.as_ref().map(|(_, password)| password.clone()),
            replicas: NODES,
            ..NatsConfig::default()
        }
    }

    /// The node index named `name` (`n1` → 1).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The node index of the server `client` is connected to now.
    pub fn connected_node(&self, client: &async_nats::Client) -> Option<usize> {
        self.index_of(&client.server_info().server_name)
    }

    /// The node leading `stream` (`JOBS`, `EVENTS`, `KV_jobs`), asked with
    /// `$JS.API.STREAM.INFO.<stream>` (as admin where users are configured); `None` while no
    /// leader is known or no node answers.
    pub async fn stream_leader(client: &async_nats::Client, stream: &str) -> Option<usize> {
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            client.request(format!("$JS.API.STREAM.INFO.{stream}"), "".into()),
        )
        .await
        .ok()?
        .ok()?;
        let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
        let leader = info.pointer("/cluster/leader")?.as_str()?;
        leader.strip_prefix('n')?.parse().ok()
    }

    /// Waits up to `timeout` for `stream` to have a leader, then returns it.
    pub async fn wait_stream_leader(
        client: &async_nats::Client,
        stream: &str,
        timeout: Duration,
    ) -> Option<usize> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(leader) = Self::stream_leader(client, stream).await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// SIGKILLs node `index` (its store stays).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again on the same ports and store.
    pub fn restart(&mut self, index: usize) {
        let env = self.env.clone();
        self.nodes[index].spawn(&env).expect("nats-server restarts");
    }

    /// Cuts node `index` off: its clients and every route to or from it are dropped, new ones
    /// closed at once, until [`NatsCluster::heal`].
    pub fn partition(&self, index: usize) {
        for proxy in self.proxies_of(index) {
            proxy.cut();
        }
    }

    pub fn heal(&self, index: usize) {
        for proxy in self.proxies_of(index) {
            proxy.restore();
        }
    }

    fn proxies_of(&self, index: usize) -> Vec<&Proxy> {
        let node = &self.nodes[index];
        let mut proxies = vec![&node.client_proxy, &node.route_proxy];
        proxies.extend(
            self.pair_proxies
                .iter()
                .filter(|((from, to), _)| *from == index || *to == index)
                .map(|(_, proxy)| proxy),
        );
        proxies
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {} ---\n{}", node.name, node.log_text()))
            .collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
