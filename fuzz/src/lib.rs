//! What the fuzz targets run, with their limits, and the generated seed corpora.
//!
//! Each target in `fuzz_targets/` is one line around a function here. Seeds are written by the
//! targets themselves: run a target binary with `LIGHTBOX_FUZZ_WRITE_SEEDS=<dir>` and it writes
//! valid inputs from the project's own generators into `<dir>` and exits (`tools/fuzz.sh` does
//! this before each run), so the corpus never goes stale and nothing is hand-made.

use std::path::Path;

use lightbox_convert::{ConvertParams, Limits};
use lightbox_scene::ImportLimits;
use lightbox_runtime::job::{parse_envelope, parse_request, Continuation, Envelope, Function};
use lightbox_runtime::requests::{ConvertRequest, ImageFormat, RenderRequest, Size, TessellateRequest};

pub mod seeds;

/// Import limits small enough that no input can legitimately need more than a few hundred MB:
/// any bigger allocation (or RSS over `-rss_limit_mb`) is an allocation before a limit check.
pub fn import_limits() -> ImportLimits {
    ImportLimits {
        max_instanced_triangles: 100_000,
        max_unique_triangles: 100_000,
        max_vertices_per_accessor: 100_000,
        max_instances: 10_000,
        max_node_depth: 64,
        max_texture_pixels: 1 << 20,
        ..ImportLimits::default()
    }
}

/// Convert limits for the image target: 1 MiB in, 512² pixels decoded.
pub fn image_limits() -> Limits {
    Limits {
        max_input_bytes: 1 << 20,
        max_pixels: 1 << 18,
    }
}

/// The image target's input is one control byte, then the image. The control byte picks the
/// output: bits 0-1 the format (WebP, PNG, JPEG, WebP), bit 2 lossless, bits 3-7 a resize
/// (0: none; n: `8n` x `4(32-n)`). `functions/convert/tests/fuzz_regressions.rs` repeats this.
pub fn image_params(control: u8) -> ConvertParams {
    let format = match control & 3 {
        1 => ImageFormat::Png,
        2 => ImageFormat::Jpeg,
        _ => ImageFormat::Webp,
    };
    let n = u32::from(control >> 3);
    ConvertParams {
        format,
        quality: Some(80),
        lossless: control & 4 != 0,
        resize: (n > 0).then(|| Size {
            width: 8 * n,
            height: 4 * (32 - n),
        }),
    }
}

/// The control byte that selects `params` in [`image_params`] (for seeds).
pub fn image_control(format: ImageFormat, lossless: bool, resize_n: u8) -> u8 {
    let f = match format {
        ImageFormat::Png => 1,
        ImageFormat::Jpeg => 2,
        _ => 0,
    };
    f | if lossless { 4 } else { 0 } | (resize_n.min(31) << 3)
}

/// `image_decode`: the convert function's pure core, as the handler calls it.
pub fn image_decode(data: &[u8]) {
    let Some((&control, image)) = data.split_first() else {
        return;
    };
    let _ = lightbox_convert::convert_bytes(image, &image_params(control), &image_limits());
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs one input the way a worker experiences it. The importers wrap third-party parsers
/// (gltf-json's validation, openusd) in `catch_unwind` and report a panic there as an error, by
/// design; libFuzzer's own panic hook would abort on such a caught panic, so this installs a hook
/// that records the message instead. A panic that escapes `run` still aborts, with its message
/// (and a backtrace under `RUST_BACKTRACE=1`). `LIGHTBOX_FUZZ_STRICT_PANICS=1` makes caught
/// panics crashes too, to collect them for the upstream crates.
pub fn with_caught_panics_allowed<R>(run: impl FnOnce() -> R) -> R {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let backtrace = std::backtrace::Backtrace::capture();
            let text = format!("{info}\n{backtrace}");
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    let panic = LAST_PANIC.with(|p| p.borrow_mut().take());
    match (result, panic) {
        (Ok(value), None) => value,
        (Ok(value), Some(message)) => {
            if std::env::var_os("LIGHTBOX_FUZZ_STRICT_PANICS").is_some() {
                eprintln!("panic caught inside the code under test: {message}");
                std::process::abort();
            }
            value
        }
        (Err(_), message) => {
            eprintln!("panic: {}", message.unwrap_or_default());
            std::process::abort();
        }
    }
}

/// `glb_import`: the importer, then what the convert function does with an imported scene.
pub fn glb_import(data: &[u8]) {
    if let Ok(scene) = lightbox_scene::import_gltf_with_limits(data, &import_limits()) {
        exercise_scene(&scene);
    }
}

/// `usd_import`: the USD importer (usda, usdc, usdz sniffed from the content).
pub fn usd_import(data: &[u8]) -> Result<(), lightbox_scene::UsdImportError> {
    let scene = lightbox_scene::import_usd_with_limits(data, &import_limits())?;
    exercise_scene(&scene);
    Ok(())
}

/// A scene that imported is counted and written out again, as the convert function does for
/// GLB ⇄ USD jobs.
fn exercise_scene(scene: &lightbox_scene::Scene) {
    let _ = scene.instanced_triangle_count();
    let _ = scene.bounds();
    let _ = lightbox_scene::export::export_glb(scene);
    let _ = lightbox_scene::export_usda(scene);
}

/// `job_parsing`: what a worker does with a message payload (`lightbox_runtime::worker::process` and
/// `run_job`): parse the envelope, or dig an id out of a malformed one for the failure report;
/// report under a subject token; type the request for each function; check render specs the
/// way the render handler does; and re-serialise the continuation it would publish.
pub fn job_payload(data: &[u8]) {
    let job_id = match parse_envelope(data) {
        Ok(envelope) => {
            let id = envelope.id.to_string();
            // The envelope a worker re-publishes (continuations, replays) must parse again.
            let again = parse_envelope(&envelope.to_json());
            assert!(
                again.is_ok(),
                "a parsed envelope does not parse after re-serialising: {:?}",
                again.err()
            );
            if let Some(then) = &envelope.then {
                continuation(then);
            }
            typed_requests(&envelope);
            id
        }
        Err(err) => {
            let _ = (err.is_retryable(), err.kind(), err.to_string());
            lightbox_runtime::job::claimed_id(data).unwrap_or_else(|| "seq-0".to_owned())
        }
    };
    let event = lightbox_runtime::events::JobEvent::new(
        job_id.as_str(),
        "convert",
        lightbox_runtime::events::JobState::Failed,
        1,
        "fuzz",
    );
    let _ = event.subject();
    let _ = serde_json::to_vec(&event).expect("events serialise");
    // The worker also reads a `traceparent` header; fuzz it with the same bytes.
    let _ = lightbox_runtime::telemetry::TraceParent::parse(&String::from_utf8_lossy(data));
}

fn continuation(then: &Continuation) {
    let _ = then.job_id();
    let _ = then.job.get("function").and_then(|f| f.as_str());
    let payload = serde_json::to_vec(&then.job).expect("a JSON value serialises");
    // The continued job is parsed by the next worker: it must not panic either.
    let _ = parse_envelope(&payload);
}

fn typed_requests(envelope: &Envelope) {
    let _ = envelope.function.as_str().parse::<Function>();
    if let Ok(request) = parse_request::<ConvertRequest>(&envelope.request) {
        let params = ConvertParams::from_request(&request);
        let _ = lightbox_convert::model_format(request.format);
        let _ = (request.input.file_name(), request.input.extension());
        let _ = (request.format.extension(), request.format.content_type());
        let _ = lightbox_convert::derived_output_key(request.input.as_str().as_bytes(), &params);
    }
    if let Ok(request) = parse_request::<RenderRequest>(&envelope.request) {
        let _ = request.queue();
        let _ = (request.model.file_name(), request.model.extension());
        for queue in ["render.light", "render.heavy"] {
            let limits = lightbox_render::RenderLimits::for_queue(queue);
            if let Ok(specs) = lightbox_render::parse_specs(&request.outputs, &limits) {
                for spec in &specs {
                    let plan = spec.resolve().expect("parse_specs checked the spec");
                    let _ = plan.frame_angles.len();
                }
            }
        }
    }
    if let Ok(request) = parse_request::<TessellateRequest>(&envelope.request) {
        let _ = (request.input.file_name(), request.input.extension());
    }
}

/// Writes the seeds of `target` into the directory named by `LIGHTBOX_FUZZ_WRITE_SEEDS` and
/// exits, when that variable is set; otherwise does nothing. Called from each target's `init`.
pub fn seed_step(target: &str) {
    let Some(dir) = std::env::var_os("LIGHTBOX_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir);
    match seeds::write(target, dir) {
        Ok(count) => {
            println!("{target}: wrote {count} seeds to {}", dir.display());
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!(
                "{target}: could not write seeds to {}: {err}",
                dir.display()
            );
            std::process::exit(1);
        }
    }
}
