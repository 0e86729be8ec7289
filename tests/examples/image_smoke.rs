//! Smoke test of the runtime images built by `tools/images.sh build`; `tools/images.sh smoke`
//! runs it (CI does, through `tools/images.sh`). Not a `cargo test`: it needs podman and the
//! images, which only that script makes.
//!
//! One nats-server and one SeaweedFS start on this host; each function image then runs as a
//! container on the host network (read-only root filesystem, as in the Kubernetes manifests)
//! and must
//! - run its process as the image's non-root uid (10001), read from `/proc`,
//! - pass its own HEALTHCHECK (`podman healthcheck run`, which runs `--check` inside it),
//! - carry the CA bundle that NATS TLS and S3 over HTTPS verify against,
//! - finish one real job from the store and write a valid output,
//! - on SIGTERM while a job runs, finish that job (drain) and exit 0 within the drain grace.
//!
//! The CLI image runs `lightbox queues` against the same server.
//!
//! Usage: `cargo run -p lightbox-tests --example image_smoke -- [--tag TAG] NAME...` where NAME
//! is an `infra/docker/NAME.Dockerfile` (`convert`, `render`, `render-gpu`, `tessellate`, `cli`)
//! and the image is `localhost/lightbox-NAME:TAG`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use lightbox_runtime::client::Client;
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::{ObjectKey, Store};
use lightbox_tests::{noisy_png, NatsServer, SeaweedS3};
use serde_json::{json, Value};

/// The uid every runtime stage switches to (`USER 10001`).
const IMAGE_UID: &str = "10001";
/// Drain grace given to the containers; SIGTERM must lead to exit 0 well within it.
const DRAIN_GRACE_SECS: u64 = 60;

/// One job to run: where it goes, what it asks, and what its output must start with.
struct JobSpec {
    function: Function,
    queue: &'static str,
    request: Value,
    magic: &'static [&'static [u8]],
}

/// A function image and the two jobs that exercise it: a quick one, and one that runs long
/// enough (a few seconds) to still be running when SIGTERM arrives.
struct FunctionImage {
    name: &'static str,
    queue: &'static str,
    env: Vec<(&'static str, &'static str)>,
    job: JobSpec,
    long_job: JobSpec,
}

const PNG: &[u8] = b"\x89PNG";
const WEBP: &[u8] = b"RIFF";
const GLB: &[u8] = b"glTF";

fn podman(args: &[&str]) -> anyhow::Result<Output> {
    Command::new("podman")
        .args(args)
        .output()
        .with_context(|| format!("running podman {}", args.join(" ")))
}

/// Runs podman and returns its stdout, failing with its stderr.
fn podman_ok(args: &[&str]) -> anyhow::Result<String> {
    let output = podman(args)?;
    ensure!(
        output.status.success(),
        "podman {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A running container, removed on drop.
struct Container {
    name: String,
}

impl Container {
    fn logs(&self) -> String {
        podman(&["logs", &self.name])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default()
    }

    fn running(&self) -> bool {
        podman_ok(&["inspect", "--format", "{{.State.Running}}", &self.name])
            .map(|s| s == "true")
            .unwrap_or(false)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

struct Smoke {
    tag: String,
    nats: NatsServer,
    s3: SeaweedS3,
    client: Client,
    store: Store,
}

impl Smoke {
    fn image(&self, name: &str) -> String {
        format!("localhost/lightbox-{name}:{}", self.tag)
    }

    /// The environment of a function container: this host's servers, the smoke's own instance
    /// name and drain grace.
    fn container_env(&self, image: &FunctionImage) -> Vec<String> {
        let mut env = vec![
            format!("NATS_URL={}", self.nats.url()),
            format!("LIGHTBOX_INSTANCE=smoke-{}", image.name),
            format!("LIGHTBOX_QUEUE={}", image.queue),
            format!("LIGHTBOX_DRAIN_GRACE_SECS={DRAIN_GRACE_SECS}"),
            "LIGHTBOX_LOG=info".to_owned(),
        ];
        env.extend(self.s3.env().into_iter().map(|(k, v)| format!("{k}={v}")));
        env.extend(image.env.iter().map(|(k, v)| format!("{k}={v}")));
        env
    }

    fn start(&self, image: &FunctionImage) -> anyhow::Result<Container> {
        let container = Container {
            name: format!("lightbox-smoke-{}-{}", image.name, std::process::id()),
        };
        let _ = podman(&["rm", "--force", &container.name]);
        let env = self.container_env(image);
        let image_ref = self.image(image.name);
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &container.name,
            "--network=host",
            // As readOnlyRootFilesystem in Kubernetes: only /tmp (a tmpfs here, an emptyDir
            // there) is writable.
            "--read-only",
            // podman's periodic health checks need systemd; the smoke runs the check itself.
            "--health-interval=disable",
        ];
        for pair in &env {
            args.push("--env");
            args.push(pair);
        }
        args.push(&image_ref);
        podman_ok(&args)?;
        let start = Instant::now();
        while !container.logs().contains("consuming") {
            if !container.running() || start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} did not start consuming:\n{}",
                    image.name,
                    container.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(container)
    }

    async fn submit(&self, spec: &JobSpec) -> anyhow::Result<String> {
        let envelope = Envelope::new(spec.function, spec.request.clone());
        let id = self.client.submit(spec.queue, &envelope).await?;
        Ok(id.to_string())
    }

    /// Waits for a job's end and checks it succeeded with outputs that start as they should.
    async fn finished_well(&self, id: &str, spec: &JobSpec) -> anyhow::Result<JobEvent> {
        let event = self
            .client
            .wait(id, Duration::from_secs(300), |_| {})
            .await?;
        ensure!(
            event.state == JobState::Succeeded,
            "job {id} ended {:?}: {:?}",
            event.state,
            event.error
        );
        ensure!(!event.outputs.is_empty(), "job {id} wrote no output");
        for output in &event.outputs {
            let bytes = self
                .store
                .get(&ObjectKey::new(output.clone())?, None)
                .await?;
            ensure!(
                spec.magic.iter().any(|magic| bytes.starts_with(magic)),
                "output {output} of job {id} does not start like {:?}",
                spec.magic
            );
        }
        Ok(event)
    }

    async fn check_function(&self, image: &FunctionImage) -> anyhow::Result<String> {
        let started = Instant::now();
        let container = self.start(image)?;

        // The process runs as the image's user, not as root.
        let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &container.name])?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .context("no Uid line")?
            .split_whitespace()
            .collect();
        ensure!(
            uids.iter().all(|uid| *uid == IMAGE_UID),
            "{} runs as uid {uids:?}, not {IMAGE_UID}",
            image.name
        );

        // The image's own HEALTHCHECK (`--check` over NATS to this instance) passes.
        let health = podman(&["healthcheck", "run", &container.name])?;
        ensure!(
            health.status.success(),
            "{}: health check failed: {}{}",
            image.name,
            String::from_utf8_lossy(&health.stdout),
            String::from_utf8_lossy(&health.stderr)
        );

        // The system roots that rustls-native-certs loads for NATS TLS and S3 over HTTPS.
        let roots = podman(&[
            "exec",
            &container.name,
            "test",
            "-s",
            "/etc/ssl/certs/ca-certificates.crt",
        ])?;
        ensure!(
            roots.status.success(),
            "{}: no CA bundle in the image",
            image.name
        );

        // One real job.
        let id = self.submit(&image.job).await?;
        self.finished_well(&id, &image.job).await?;

        // SIGTERM while a job runs: the job finishes, then the process exits 0.
        let long = self.submit(&image.long_job).await?;
        let waiting = Instant::now();
        loop {
            let state = self.client.status(&long).await?.map(|e| e.state);
            match state {
                Some(JobState::Started | JobState::Progress) => break,
                Some(state) if state.is_terminal() => bail!(
                    "{}: the long job ended ({state:?}) before SIGTERM could be sent; make it longer",
                    image.name
                ),
                _ if waiting.elapsed() > Duration::from_secs(60) => {
                    bail!("{}: the long job did not start", image.name)
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        podman_ok(&["kill", "--signal", "TERM", &container.name])?;
        let stopping = Instant::now();
        let exit = tokio::task::spawn_blocking({
            let name = container.name.clone();
            move || podman_ok(&["wait", &name])
        })
        .await??;
        let drain_s = stopping.elapsed().as_secs_f64();
        ensure!(
            exit == "0",
            "{}: exit code {exit} after SIGTERM:\n{}",
            image.name,
            container.logs()
        );
        ensure!(
            drain_s < DRAIN_GRACE_SECS as f64,
            "{}: took {drain_s:.1} s to stop, past the drain grace",
            image.name
        );
        let logs = container.logs();
        ensure!(
            logs.contains("draining") && logs.contains("drained, exiting"),
            "{}: no drain in the log:\n{logs}",
            image.name
        );
        let event = self.finished_well(&long, &image.long_job).await?;
        ensure!(
            event.attempt == 1,
            "{}: the job running at SIGTERM was given back (attempt {}) instead of finished",
            image.name,
            event.attempt
        );
        Ok(format!(
            "{}: uid {IMAGE_UID}, healthy, job ok, SIGTERM drained a running job and exited 0 in {drain_s:.1} s ({:.0} s)",
            image.name,
            started.elapsed().as_secs_f64()
        ))
    }

    /// The CLI image: non-root, and `lightbox queues` reads the server.
    fn check_cli(&self) -> anyhow::Result<String> {
        let image = self.image("cli");
        let user = podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image])?;
        ensure!(user == IMAGE_UID, "cli image user is {user:?}");
        let nats = format!("NATS_URL={}", self.nats.url());
        let queues = podman_ok(&[
            "run",
            "--rm",
            "--network=host",
            "--read-only",
            "--env",
            &nats,
            &image,
            "queues",
        ])?;
        for queue in ["render.light", "render.heavy", "tessellate", "convert"] {
            ensure!(
                queues.contains(queue),
                "lightbox queues in the cli image does not list {queue}:\n{queues}"
            );
        }
        let id = podman_ok(&["run", "--rm", "--entrypoint", "id", &image, "-u"])?;
        ensure!(id == IMAGE_UID, "cli image runs as uid {id}");
        Ok("cli: uid 10001, `lightbox queues` lists the four queues".to_owned())
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        self.store
            .put(&ObjectKey::new(key.to_owned())?, Bytes::from(bytes))
            .await?;
        Ok(key.to_owned())
    }
}

/// The function images and their jobs, with inputs uploaded.
async fn function_images(smoke: &Smoke) -> anyhow::Result<Vec<FunctionImage>> {
    let card = smoke
        .upload(
            "inputs/smoke/card.png",
            lightbox_convert::samples::test_card_png(640, 480),
        )
        .await?;
    let noise = smoke
        .upload("inputs/smoke/noise.png", noisy_png(2400, 2400, 7))
        .await?;
    let bearing = smoke
        .upload(
            "models/smoke/bearing.glb",
            lightbox_testmodels::bearing_glb(0.15),
        )
        .await?;
    let bracket = smoke
        .upload(
            "inputs/smoke/bracket.step",
            lightbox_tessellate::samples::step_bytes(
                lightbox_tessellate::samples::Sample::Bracket,
            )?,
        )
        .await?;
    let bearing_step = smoke
        .upload(
            "inputs/smoke/bearing.step",
            lightbox_tessellate::samples::step_bytes(
                lightbox_tessellate::samples::Sample::Bearing,
            )?,
        )
        .await?;
    // An output is the render spec itself (flattened), plus an optional key.
    let render = |queue: &'static str, spec: Value, engine: &str| JobSpec {
        function: Function::Render,
        queue,
        request: json!({"model": bearing, "outputs": [spec], "engine": engine}),
        magic: &[PNG, WEBP],
    };
    Ok(vec![
        FunctionImage {
            name: "convert",
            queue: "convert",
            env: vec![],
            job: JobSpec {
                function: Function::Convert,
                queue: "convert",
                request: json!({"input": card, "format": "webp", "quality": 90}),
                magic: &[WEBP],
            },
            long_job: JobSpec {
                function: Function::Convert,
                queue: "convert",
                request: json!({"input": noise, "format": "webp", "lossless": true}),
                magic: &[WEBP],
            },
        },
        FunctionImage {
            name: "render",
            queue: "render.light",
            env: vec![],
            job: render(
                "render.light",
                json!({"width": 128, "height": 128, "samples": 8}),
                "native",
            ),
            long_job: render(
                "render.light",
                json!({"width": 320, "height": 320, "samples": 48}),
                "native",
            ),
        },
        FunctionImage {
            name: "tessellate",
            queue: "tessellate",
            env: vec![],
            job: JobSpec {
                function: Function::Tessellate,
                queue: "tessellate",
                request: json!({"input": bracket}),
                magic: &[GLB],
            },
            long_job: JobSpec {
                function: Function::Tessellate,
                queue: "tessellate",
                request: json!({"input": bearing_step, "linear_deflection": 0.00005, "angular_deflection": 0.1}),
                magic: &[GLB],
            },
        },
        FunctionImage {
            name: "render-gpu",
            queue: "render.heavy",
            // No GPU here: Cycles renders on the CPU, which still proves Blender's module loads
            // and renders inside the image.
            env: vec![("LIGHTBOX_CYCLES_DEVICE", "CPU")],
            job: render(
                "render.heavy",
                json!({"width": 1088, "height": 32, "samples": 2}),
                "cycles",
            ),
            long_job: render(
                "render.heavy",
                json!({"width": 1088, "height": 96, "samples": 4}),
                "cycles",
            ),
        },
    ])
}

/// `lightbox infra apply` from the CLI image, as the Kubernetes Job runs it, before anything
/// else touches the server. `Ok(None)` when this build's CLI has no such command yet (it is
/// being added); then the smoke's own client creates the definitions.
fn apply_with_cli_image(image: &str, nats: &NatsServer) -> anyhow::Result<Option<String>> {
    let url = format!("NATS_URL={}", nats.url());
    let output = podman(&[
        "run",
        "--rm",
        "--network=host",
        "--read-only",
        "--env",
        &url,
        image,
        "infra",
        "apply",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("unrecognized subcommand 'infra'") {
        println!("note  cli: this build of lightbox has no `infra apply`; the smoke's client creates the streams");
        return Ok(None);
    }
    ensure!(
        output.status.success(),
        "lightbox infra apply in the cli image failed: {stderr}"
    );
    Ok(Some(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

async fn run(tag: String, names: Vec<String>) -> anyhow::Result<()> {
    // JetStream's default file store is 75 % of the free disk, which CI machines full of
    // images and build output may not have for the streams' reservations (3 GiB): say how much.
    let config_dir = lightbox_tests::TempDir::new("smoke-nats-config");
    let config = config_dir.path().join("nats.conf");
    std::fs::write(
        &config,
        "jetstream { max_file_store: 16GiB, max_memory_store: 1GiB }\n",
    )?;
    let nats = NatsServer::start_with_config(Some(config));
    let s3 = SeaweedS3::start();
    let mut failures = 0;
    let mut passed = 0;
    // The definitions come first, from the CLI image as the Kubernetes Job makes them, whenever
    // that image is there (tools/images.sh keeps it while it tests the others one by one).
    let cli_image = format!("localhost/lightbox-cli:{tag}");
    let cli_built = podman(&["image", "exists", &cli_image])?.status.success();
    if names.iter().any(|n| n == "cli") || cli_built {
        match apply_with_cli_image(&cli_image, &nats) {
            Ok(Some(applied)) => {
                println!(
                    "ok    cli: `lightbox infra apply` created {} definitions",
                    applied.lines().count()
                );
            }
            Ok(None) => {}
            Err(err) => {
                failures += 1;
                println!("FAIL  cli: {err:#}");
            }
        }
    }
    let client = Client::connect(&nats.nats_config()).await?;
    let store = Store::connect(s3.store_config())?;
    let smoke = Smoke {
        tag,
        nats,
        s3,
        client,
        store,
    };
    let images = function_images(&smoke).await?;
    for name in &names {
        let result = if name == "cli" {
            smoke.check_cli()
        } else {
            match images.iter().find(|i| i.name == name) {
                Some(image) => smoke.check_function(image).await,
                None => Err(anyhow::anyhow!(
                    "no smoke test for the image {name}: add it to tests/examples/image_smoke.rs"
                )),
            }
        };
        match result {
            Ok(line) => {
                passed += 1;
                println!("ok    {line}");
            }
            Err(err) => {
                failures += 1;
                println!("FAIL  {name}: {err:#}");
            }
        }
    }
    println!("images: {passed} passed, {failures} failed");
    ensure!(failures == 0, "{failures} image(s) failed the smoke test");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut tag = "ci".to_owned();
    let mut names = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tag" => tag = args.next().context("--tag needs a value")?,
            _ => names.push(arg),
        }
    }
    ensure!(
        !names.is_empty(),
        "usage: image_smoke [--tag TAG] NAME... (see tools/images.sh)"
    );
    tokio::runtime::Runtime::new()?.block_on(run(tag, names))
}
