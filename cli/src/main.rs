//! `lightbox`: the command line for people and operators. It submits and follows jobs, inspects
//! queues and dead letters, runs functions' code locally (with `--remote` to go through the
//! queues instead), and runs a local stack.

mod progress;
mod render_cmd;
mod stack;
mod tessellate_cmd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use lightbox_convert::{convert_bytes, ConvertParams, Limits};
use lightbox_runtime::client::{CancelOutcome, Client};
use lightbox_runtime::config::{NatsConfig, NatsContext};
use lightbox_runtime::events::{JobEvent, JobState};
use lightbox_runtime::job::{Envelope, Function, JobId, ENVELOPE_VERSION};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, RenderRequest, Size};
use lightbox_runtime::Queue;
use lightbox_runtime::{ObjectKey, Store, StoreConfig};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(
    name = "lightbox",
    version,
    about = "Lightbox: CAD models to images, as job functions on NATS JetStream"
)]
struct Cli {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(subcommand)]
    command: Command,
}

/// How to reach NATS, as the `nats` CLI takes it. Precedence: these flags, then the `nats`
/// context (`--context`, else the current one in `~/.config/nats/context.txt`), then the
/// environment (`NATS_URL`, `NATS_CREDS`, `NATS_USER`, `NATS_PASSWORD`), then
/// `.lightbox/stack.env` from `lightbox up`.
#[derive(clap::Args, Debug, Default, Clone)]
struct NatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// A `.creds` file (JWT and nkey seed).
    #[arg(long, global = true, value_name = "FILE")]
    creds: Option<String>,
    /// User name (with --password).
    #[arg(long, global = true)]
    user: Option<String>,
    /// Password for --user.
    #[arg(long, global = true)]
    password: Option<String>,
    /// A `nats` CLI context (`~/.config/nats/context/NAME.json`).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
}

impl NatsArgs {
    /// The resolved connection settings: flags over context over environment.
    fn resolve(&self) -> anyhow::Result<NatsConfig> {
        let mut config = NatsConfig::from_env();
        if let Some(context) = NatsContext::selected(self.context.as_deref())? {
            config.apply_context(&context);
        }
        if let Some(server) = &self.server {
            config.url = server.clone();
        }
        if let Some(creds) = &self.creds {
            config.creds_file = Some(creds.clone());
            config.user = None;
            config.password = None;
        }
        if let Some(user) = &self.user {
            config.user = Some(user.clone());
            config.password = self.password.clone();
            config.creds_file = None;
        } else if self.password.is_some() {
            bail!("--password needs --user");
        }
        Ok(config)
    }
}

/// The connection settings of this run, resolved once from the flags in [`run`].
static NATS: std::sync::OnceLock<NatsConfig> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Publish a job: FUNCTION is convert, render or tessellate; JOB is a request (or a whole
    /// envelope) as JSON text or a file path. Prints the job id.
    Submit {
        function: Function,
        job: String,
        /// Queue subject to publish to (defaults to the function's queue).
        #[arg(long)]
        queue: Option<String>,
        /// Follow the job until it ends, with a progress bar.
        #[arg(long)]
        watch: bool,
    },
    /// Follow a job's events with a progress bar; exits non-zero unless it succeeds.
    Watch {
        job_id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Print the final event as JSON on stdout (progress still goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Print a job's latest state (one KV lookup).
    Status {
        job_id: String,
        /// Print the event as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: skipped if still queued, stopped if running.
    Cancel { job_id: String },
    /// Dead letters: jobs that failed for good.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Pending and in-flight jobs per queue.
    Queues {
        /// Print the queues as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Server configuration from `infra/nats/` (the only command that changes it).
    Infra {
        #[command(subcommand)]
        command: InfraCommand,
    },
    /// Convert an image (PNG/JPEG/WebP) or a model (GLB to USDA/USDZ, USD to GLB) locally, or
    /// through the queue with --remote.
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Lossy quality 1-100 (WebP, JPEG).
        #[arg(long)]
        quality: Option<u8>,
        /// Lossless WebP.
        #[arg(long)]
        lossless: bool,
        /// Resize to WxH before encoding.
        #[arg(long)]
        resize: Option<Size>,
        /// Output format (default: from OUTPUT's extension).
        #[arg(long)]
        format: Option<ImageFormatArg>,
        /// Upload the input, run the job on the queue, download the result.
        #[arg(long)]
        remote: bool,
    },
    /// Render a model locally (or through the queues with --remote), printing a timing line per stage.
    Render(render_cmd::RenderArgs),
    /// Tessellate a STEP file to GLB locally with the tessellate function's code.
    Tessellate(tessellate_cmd::TessellateArgs),
    /// Run the local stack: nats-server, SeaweedFS and one instance of each function.
    Up {
        /// Start in the background and return.
        #[arg(long)]
        detach: bool,
    },
    /// Stop a stack started with `up --detach`.
    Down,
    /// Submit a demo convert job (a test card generated in code) to the running stack, show its
    /// progress and download the result.
    Demo,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters (oldest first).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the dead letters as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Publish a dead letter's job to its queue again; ID is its DLQ sequence or job id.
    Replay { id: String },
}

#[derive(Subcommand)]
enum InfraCommand {
    /// Create or update every stream, consumer and KV bucket from `infra/nats/` (run as a user
    /// that may manage JetStream). Every other command and bind-only workers only look them up.
    Apply {
        /// Print what was applied as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImageFormatArg {
    Webp,
    Png,
    Jpeg,
    Glb,
    Usda,
    Usdz,
}

impl From<ImageFormatArg> for ImageFormat {
    fn from(arg: ImageFormatArg) -> Self {
        match arg {
            ImageFormatArg::Webp => ImageFormat::Webp,
            ImageFormatArg::Png => ImageFormat::Png,
            ImageFormatArg::Jpeg => ImageFormat::Jpeg,
            ImageFormatArg::Glb => ImageFormat::Glb,
            ImageFormatArg::Usda => ImageFormat::Usda,
            ImageFormatArg::Usdz => ImageFormat::Usdz,
        }
    }
}

fn main() -> std::process::ExitCode {
    // When started as the OCCT child of a local tessellation, or as the isolated USD reader of
    // local renders and conversions, do only that.
    lightbox_isolate::serve_child_if_requested(&[
        lightbox_tessellate::CHILD,
        render_runtime::scene::usd_isolate::CHILD,
    ]);
    stack::load_stack_env();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Connects and binds to the existing streams and bucket; changes nothing on the server.
async fn connect() -> anyhow::Result<Client> {
    let config = NATS.get_or_init(NatsConfig::from_env);
    Client::bind(config).await.map_err(|err| {
        if format!("{err:#}").contains("cannot reach NATS") {
            err.context("is the stack up? `lightbox up --detach`")
        } else {
            err
        }
    })
}

/// A job id as the user typed it, refused with a clear message when it is not one.
fn parse_job_id(text: &str) -> anyhow::Result<JobId> {
    text.parse().map_err(|_| {
        anyhow::anyhow!(
            "job id {text:?} is malformed: a job id is a UUID such as 0190f5b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
        )
    })
}

/// Prints a value as one line of JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let _ = NATS.set(cli.nats.resolve()?);
    match cli.command {
        Command::Submit {
            function,
            job,
            queue,
            watch,
        } => {
            let client = connect().await?;
            let envelope = envelope_from_text(function, &job)?;
            let queue = match queue {
                Some(queue) => queue,
                None => default_queue(function, &envelope.request)?,
            };
            let id = client.submit(&queue, &envelope).await?;
            println!("{id}");
            if watch {
                return watch_job(&client, &id.to_string(), Duration::from_secs(3600)).await;
            }
        }
        Command::Watch {
            job_id,
            timeout,
            json,
        } => {
            parse_job_id(&job_id)?;
            let client = connect().await?;
            let event = follow_job(&client, &job_id, Duration::from_secs(timeout)).await?;
            if json {
                print_json(&event)?;
            }
            return Ok(exit_code(&event));
        }
        Command::Status { job_id, json } => {
            parse_job_id(&job_id)?;
            let client = connect().await?;
            match client.status(&job_id).await? {
                Some(event) if json => print_json(&event)?,
                Some(event) => println!("{}", serde_json::to_string_pretty(&event)?),
                None => bail!("no job {job_id} is known"),
            }
        }
        Command::Cancel { job_id } => {
            parse_job_id(&job_id)?;
            let client = connect().await?;
            match client.cancel_job(&job_id).await? {
                CancelOutcome::Cancelled(event) => {
                    println!("{job_id}: {}", event.state.as_str())
                }
                CancelOutcome::AlreadyFinished(event) => println!(
                    "{job_id}: already {} (nothing to cancel)",
                    event.state.as_str()
                ),
            }
        }
        Command::Dlq {
            command: DlqCommand::List { limit, json },
        } => {
            let client = connect().await?;
            let letters = client.dead_letters(limit).await?;
            if json {
                print_json(&letters)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>6}  {:<36}  {:<12}  {:>8}  ERROR",
                "SEQ", "JOB", "QUEUE", "ATTEMPTS"
            );
            for letter in &letters {
                println!(
                    "{:>6}  {:<36}  {:<12}  {:>8}  {}",
                    letter.seq, letter.job_id, letter.queue, letter.attempts, letter.error
                );
            }
            eprintln!("{} dead letter(s)", letters.len());
        }
        Command::Dlq {
            command: DlqCommand::Replay { id },
        } => {
            let client = connect().await?;
            let letter = client.replay(&id).await?;
            println!("replayed job {} to {}", letter.job_id, letter.queue);
        }
        Command::Queues { json } => {
            let client = connect().await?;
            let queues = client.queues().await?;
            if json {
                print_json(&queues)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<14} {:>8} {:>9} {:>8} {:>11}",
                "QUEUE", "PENDING", "IN-FLIGHT", "WAITING", "REDELIVERED"
            );
            for queue in queues {
                println!(
                    "{:<14} {:>8} {:>9} {:>8} {:>11}",
                    queue.queue,
                    queue.pending,
                    queue.in_flight,
                    queue.waiting_pulls,
                    queue.redelivered
                );
            }
        }
        Command::Convert {
            input,
            output,
            quality,
            lossless,
            resize,
            format,
            remote,
        } => {
            let format = match format {
                Some(format) => format.into(),
                None => output
                    .extension()
                    .and_then(|e| e.to_str())
                    .and_then(ImageFormat::from_extension)
                    .with_context(|| {
                        format!(
                            "cannot tell the format of {}: use .webp, .png, .jpg, .glb, .usda or .usdz, or --format",
                            output.display()
                        )
                    })?,
            };
            let params = ConvertParams {
                format,
                quality,
                lossless,
                resize,
            };
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            if remote {
                return convert_remote(&input, &bytes, &output, params).await;
            }
            if let Some(model_format) = lightbox_convert::model_format(format) {
                // A .gltf's buffers and images are read from its folder.
                let folder = render_runtime::scene::DirResources::beside(&input)
                    .with_context(|| format!("opening the folder of {}", input.display()))?;
                let converted = tokio::task::spawn_blocking(move || {
                    lightbox_convert::model::convert_model_with(
                        &bytes,
                        &folder,
                        model_format,
                        &render_runtime::ImportLimits::default(),
                    )
                })
                .await??;
                write_atomically(&output, &converted.bytes)?;
                println!(
                    "{} -> {}: {} meshes, {} instances, {} triangles, {} bytes, import {:.1} ms, export {:.1} ms",
                    input.display(),
                    output.display(),
                    converted.meshes,
                    converted.instances,
                    converted.triangles,
                    converted.bytes.len(),
                    converted.import_time.as_secs_f64() * 1000.0,
                    converted.export_time.as_secs_f64() * 1000.0
                );
                return Ok(ExitCode::SUCCESS);
            }
            let started = std::time::Instant::now();
            let converted = convert_bytes(&bytes, &params, &Limits::from_env())?;
            write_atomically(&output, &converted.bytes)?;
            println!(
                "{} -> {}: {}x{} {:?}, {} bytes ({:.0}% of input), decode {:.1} ms, encode {:.1} ms, total {:.1} ms",
                input.display(),
                output.display(),
                converted.width,
                converted.height,
                format,
                converted.bytes.len(),
                100.0 * converted.bytes.len() as f64 / bytes.len().max(1) as f64,
                converted.decode_ms,
                converted.encode_ms,
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        Command::Render(args) if args.remote => return render_remote(&args).await,
        Command::Render(args) => {
            tokio::task::spawn_blocking(move || render_cmd::run(&args)).await??
        }
        Command::Tessellate(args) => {
            tokio::task::spawn_blocking(move || tessellate_cmd::run(&args)).await??
        }
        Command::Infra {
            command: InfraCommand::Apply { json },
        } => {
            let config = NATS.get_or_init(NatsConfig::from_env);
            let nats = config
                .connect_once("lightbox-infra-apply", Duration::from_secs(3))
                .await?;
            let js = async_nats::jetstream::new(nats);
            let applied = lightbox_runtime::infra::apply(&js, &config.overrides()).await?;
            if json {
                print_json(&applied)?;
            } else {
                for item in &applied {
                    println!("applied {} {}", item.kind, item.name);
                }
            }
        }
        Command::Up { detach } => stack::up(detach).await?,
        Command::Down => stack::down()?,
        Command::Demo => return demo().await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Accepts a bare request (wrapped in a new envelope) or a whole envelope (has `version`).
fn envelope_from_text(function: Function, text: &str) -> anyhow::Result<Envelope> {
    let raw = if Path::new(text).is_file() {
        std::fs::read_to_string(text).with_context(|| format!("reading {text}"))?
    } else {
        text.to_owned()
    };
    let value: serde_json::Value =
        serde_json::from_str(&raw).context("the job is not valid JSON")?;
    if value.get("version").is_some() {
        let envelope: Envelope = serde_json::from_value(value).context("invalid job envelope")?;
        if envelope.version != ENVELOPE_VERSION {
            bail!(
                "envelope version {} is not supported (expected {ENVELOPE_VERSION})",
                envelope.version
            );
        }
        if envelope.function != function {
            bail!(
                "the envelope is for {} but you asked for {function}",
                envelope.function
            );
        }
        return Ok(envelope);
    }
    if function == Function::Convert {
        serde_json::from_value::<ConvertRequest>(value.clone())
            .context("invalid convert request")?;
    }
    Ok(Envelope::new(function, value))
}

/// The queue a function's jobs go to; renders by the routing rule ([`Queue::for_render`]).
fn default_queue(function: Function, request: &serde_json::Value) -> anyhow::Result<String> {
    Ok(match function {
        Function::Convert => Queue::Convert.to_string(),
        Function::Tessellate => Queue::Tessellate.to_string(),
        Function::Render => {
            let request: RenderRequest =
                serde_json::from_value(request.clone()).context("invalid render request")?;
            request.queue().to_string()
        }
    })
}

/// Follows a job to its end with a progress bar. Exit code 0 only if it succeeded.
async fn watch_job(
    client: &Client,
    job_id: &str,
    timeout: Duration,
) -> anyhow::Result<std::process::ExitCode> {
    let event = follow_job(client, job_id, timeout).await?;
    Ok(exit_code(&event))
}

/// Follows a job to its terminal event with a progress bar on stderr.
async fn follow_job(client: &Client, job_id: &str, timeout: Duration) -> anyhow::Result<JobEvent> {
    let mut bar = progress::Bar::new(job_id);
    let event = client
        .wait(job_id, timeout, |event| bar.update(event))
        .await?;
    bar.finish(&event);
    Ok(event)
}

/// Exit code 0 only if the job succeeded.
fn exit_code(event: &JobEvent) -> std::process::ExitCode {
    if event.state == JobState::Succeeded {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Writes a file through a temporary sibling and a rename, so OUT is never half-written.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Uploads an input under a content-addressed key (`inputs/cli/<hash>/<name>`).
async fn upload_input(store: &Store, name: &Path, bytes: &[u8]) -> anyhow::Result<ObjectKey> {
    let digest = hex::encode(&Sha256::digest(bytes)[..12]);
    let file_name: String = name
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("input")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let key = ObjectKey::new(format!("inputs/cli/{digest}/{file_name}"))?;
    store.put(&key, Bytes::copy_from_slice(bytes)).await?;
    Ok(key)
}

async fn convert_remote(
    input: &Path,
    bytes: &[u8],
    output: &Path,
    params: ConvertParams,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connect().await?;
    let store = Store::connect(StoreConfig::from_env())?;
    let key = upload_input(&store, input, bytes).await?;
    let request = ConvertRequest {
        input: key,
        output: None,
        format: params.format,
        quality: params.quality,
        lossless: params.lossless,
        resize: params.resize,
    };
    let envelope = Envelope::new(Function::Convert, request);
    let id = client.submit("convert", &envelope).await?;
    eprintln!("submitted job {id} to convert");
    let mut bar = progress::Bar::new(&id.to_string());
    let event = client
        .wait(&id.to_string(), Duration::from_secs(600), |event| {
            bar.update(event)
        })
        .await?;
    bar.finish(&event);
    download_outputs(&store, &event, output).await
}

async fn download_outputs(
    store: &Store,
    event: &JobEvent,
    output: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    if event.state != JobState::Succeeded {
        return Ok(std::process::ExitCode::FAILURE);
    }
    let key = ObjectKey::new(
        event
            .outputs
            .first()
            .context("the job reported no output")?
            .clone(),
    )?;
    let bytes = store.get(&key, None).await?;
    write_atomically(output, &bytes)?;
    println!("{} ({} bytes, from {key})", output.display(), bytes.len());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `lightbox render --remote`: upload the model, submit a render job to the queue the routing
/// rule picks, follow it, and download the image (and turntable frames) like a local run.
async fn render_remote(args: &render_cmd::RenderArgs) -> anyhow::Result<std::process::ExitCode> {
    let spec = render_cmd::spec_from_args(args)?;
    render_cmd::check_remote(args, &spec)?;
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let client = connect().await?;
    let store = Store::connect(StoreConfig::from_env())?;
    let model = upload_input(&store, &args.model, &bytes).await?;
    let serde_json::Value::Object(spec) = serde_json::to_value(&spec)? else {
        bail!("spec is not an object")
    };
    let request = lightbox_runtime::requests::RenderRequest {
        model,
        usd_master: None,
        outputs: vec![lightbox_runtime::requests::RenderOutputRequest { output: None, spec }],
        engine: Some(args.engine.as_str().to_owned()),
        tessellation: None,
        tessellated_by: None,
    };
    let queue = request.queue().as_str();
    let envelope = Envelope::new(Function::Render, request);
    let id = client.submit(queue, &envelope).await?;
    eprintln!("submitted job {id} to {queue}");
    let mut bar = progress::Bar::new(&id.to_string());
    let event = client
        .wait(&id.to_string(), Duration::from_secs(6 * 3600), |event| {
            bar.update(event)
        })
        .await?;
    bar.finish(&event);
    if event.state != JobState::Succeeded {
        return Ok(std::process::ExitCode::FAILURE);
    }
    let code = download_outputs(&store, &event, &args.output).await?;
    let frames = event
        .result
        .as_ref()
        .and_then(|r| r.pointer("/outputs/0/frame_keys"))
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    if !frames.is_empty() {
        let dir = args.output.parent().unwrap_or(Path::new("."));
        let stem = args
            .output
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("frame");
        for (index, frame) in frames.iter().enumerate() {
            let key = ObjectKey::new(frame.as_str().unwrap_or_default())?;
            let extension = key.extension().unwrap_or_else(|| "png".into());
            let path = dir.join(render_runtime::turntable::frame_file_name(
                stem, index, &extension,
            ));
            write_atomically(&path, &store.get(&key, None).await?)?;
        }
        println!(
            "wrote {} frames next to {}",
            frames.len(),
            args.output.display()
        );
    }
    Ok(code)
}

async fn demo() -> anyhow::Result<std::process::ExitCode> {
    let client = connect().await?;
    let store = Store::connect(StoreConfig::from_env())?;
    let card = lightbox_convert::samples::test_card_png(1024, 768);
    let key = upload_input(&store, Path::new("test-card.png"), &card).await?;
    println!(
        "uploaded a generated 1024x768 test card: {key} ({} bytes)",
        card.len()
    );
    let request = ConvertRequest {
        input: key,
        output: None,
        format: ImageFormat::Webp,
        quality: Some(90),
        lossless: false,
        resize: Some(Size {
            width: 512,
            height: 384,
        }),
    };
    let envelope = Envelope::new(Function::Convert, request);
    let id = client.submit("convert", &envelope).await?;
    println!("submitted convert job {id}");
    let mut bar = progress::Bar::new(&id.to_string());
    let event = client
        .wait(&id.to_string(), Duration::from_secs(120), |event| {
            bar.update(event)
        })
        .await?;
    bar.finish(&event);
    let local = PathBuf::from(".lightbox/demo/test-card.webp");
    let code = download_outputs(&store, &event, &local).await?;
    if event.state == JobState::Succeeded {
        println!(
            "result: object {} in the store, downloaded to {}",
            event.outputs[0],
            local.display()
        );
        println!("status: lightbox status {id}    stop the stack: lightbox down");
    }
    Ok(code)
}
