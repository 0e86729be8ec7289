//! The queue handler: input resolution, limits, progress, cancellation and uploads.
//!
//! A job uploads all its outputs or none ([`Uploads`]). When the runtime stops it (cancel,
//! deadline, drain) the renderer stops at its next pass, an upload in progress is the last
//! one, and what was written is deleted before the handler returns; if the job's task is
//! aborted instead, the guard's `Drop` deletes it from a spawned task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lightbox_runtime::error::error_chain;
use lightbox_runtime::requests::RenderRequest;
use lightbox_runtime::worker::{Handler, Job, JobContext, Outcome};
use lightbox_runtime::{Function, JobError, ObjectKey};
use render_runtime::{EngineError, EngineKind, RenderHooks};
use tracing::info;

use crate::source::{resolve_source, Resolved};
use crate::{frame_key, output_key, plan_outputs, EnginePool, RenderLimits};

/// Progress across all outputs of a job, with an estimate of the time left.
struct JobHooks {
    ctx: JobContext,
    base: AtomicU64,
    total: u64,
    started: Instant,
}

impl RenderHooks for JobHooks {
    fn progress(&self, done: u64, _total: u64) {
        let done = self.base.load(Ordering::Relaxed) + done;
        let fraction = done as f64 / self.total.max(1) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = (fraction > 0.0).then(|| ((elapsed / fraction - elapsed) * 1000.0) as u64);
        self.ctx.progress(done, self.total, eta, "samples");
    }

    fn cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

/// The queue handler for `render.light` and `render.heavy`.
pub struct RenderHandler {
    pub limits: RenderLimits,
    /// Engine for jobs that name none (`LIGHTBOX_RENDER_ENGINE`, default `native`).
    pub default_engine: EngineKind,
    /// The warm engines, one per kind, shared by this instance's concurrent jobs.
    pub engines: Arc<EnginePool>,
}

impl RenderHandler {
    /// A handler with `limits` and the default engine `LIGHTBOX_RENDER_ENGINE` names (native
    /// when unset); an unknown name fails here, at start, rather than in every job.
    pub fn new(limits: RenderLimits) -> Result<Self, EngineError> {
        let default_engine =
            lightbox_runtime::config::env_or("LIGHTBOX_RENDER_ENGINE", "native").parse()?;
        Ok(Self::with_engine(limits, default_engine))
    }

    /// A handler with `limits` whose jobs that name no engine run on `default_engine`.
    pub fn with_engine(limits: RenderLimits, default_engine: EngineKind) -> Self {
        Self {
            engines: Arc::new(EnginePool::new(limits.import)),
            limits,
            default_engine,
        }
    }
}

impl Handler for RenderHandler {
    type Request = RenderRequest;
    const FUNCTION: Function = Function::Render;
    const DEFAULT_QUEUE: &'static str = "render.light";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<RenderRequest>) -> Result<Outcome, JobError> {
        let Job { request, ctx } = job;
        let engine = match &request.engine {
            Some(name) => name
                .parse::<EngineKind>()
                .map_err(|err| JobError::permanent(error_chain(&err)))?,
            None => self.default_engine,
        };
        let outputs = plan_outputs(&request.outputs, engine, &self.limits)?;
        for output in request.outputs.iter().filter_map(|o| o.output.as_ref()) {
            ctx.store.check(output)?;
        }

        // Input resolution: a USD master first, then the model itself; STEP goes through the
        // tessellation cache or a tessellate job that continues this one.
        let fetch_start = Instant::now();
        let (source, key, kind) = resolve_source(&ctx, &request).await?;
        let (source, key, kind) = match source {
            Resolved::Ready(source) => (source, key, kind),
            Resolved::Waiting(tessellate_id) => {
                return Ok(Outcome {
                    result: serde_json::json!({"source": "tessellating", "tessellate_job": tessellate_id}),
                    waiting_for: Some(tessellate_id),
                    ..Outcome::default()
                })
            }
        };
        let model = ctx
            .store
            .get(&key, Some(self.limits.max_model_bytes))
            .await?;
        // A .gltf's buffers and images, and the layers and textures a USD stage names, are
        // fetched from beside it and bundled with it into one GLB or usdz.
        let model = crate::gltf_files::bundle(&ctx, &key, kind, model, &self.limits.import).await?;
        let fetch_ms = fetch_start.elapsed().as_secs_f64() * 1000.0;
        info!(source = source.as_str(), model = %key, bytes = model.len(), "rendering");

        let total: u64 = outputs
            .iter()
            .map(|output| output.plan.samples as u64 * output.plan.frame_angles.len() as u64)
            .sum();
        let hooks = JobHooks {
            ctx: ctx.clone(),
            base: AtomicU64::new(0),
            total,
            started: Instant::now(),
        };
        let engines = self.engines.clone();
        let plans: Vec<_> = outputs.iter().map(|output| output.plan.clone()).collect();
        let model_for_render = model.clone();
        let rendering = tokio::task::spawn_blocking(move || {
            let outcome = engines.render(engine, &model_for_render, kind, &plans, &hooks);
            drop(hooks);
            outcome
        });
        // The renderer polls the same stop flag between passes; the job need not wait for it.
        let rendered = tokio::select! {
            rendered = rendering => rendered,
            _ = ctx.stopped() => return Err(JobError::Cancelled),
        };
        let rendered =
            rendered.map_err(|err| JobError::permanent(format!("renderer crashed: {err}")))??;
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }

        // Upload everything, or nothing: a failure or a stop part-way removes what was written.
        let upload_start = Instant::now();
        let mut written = Uploads::new(&ctx);
        let mut results = Vec::new();
        let mut timings = render_runtime::StageTimings::default();
        let mut rays_per_s = Vec::new();
        for ((planned, output), request_output) in
            outputs.iter().zip(&rendered.outputs).zip(&request.outputs)
        {
            let key = output_key(
                &model,
                &planned.spec,
                engine,
                request_output.output.as_ref(),
            );
            timings.render += output.timings.render;
            timings.denoise += output.timings.denoise;
            timings.encode += output.timings.encode;
            rays_per_s.push(output.mrays_per_s);
            let mut frame_keys = Vec::new();
            let main_bytes = if let Some(animation) = &output.animation {
                for image in &output.images {
                    let frame = frame_key(&key, image.frame.unwrap_or(0), image.format.extension());
                    written.put(&frame, &image.bytes).await?;
                    frame_keys.push(frame.to_string());
                }
                &animation.bytes
            } else {
                &output.images[0].bytes
            };
            written.put(&key, main_bytes).await?;
            results.push(serde_json::json!({
                "key": key.as_str(),
                "bytes": main_bytes.len(),
                "width": output.width,
                "height": output.height,
                "samples": output.samples,
                "sample_source": output.sample_source,
                "denoiser": output.denoiser.as_str(),
                "frames": frame_keys.len().max(1),
                "frame_keys": frame_keys,
                "mrays_per_s": output.mrays_per_s,
            }));
        }
        if ctx.is_cancelled() {
            written.undo().await;
            return Err(JobError::Cancelled);
        }
        written.keep();
        let upload_ms = upload_start.elapsed().as_secs_f64() * 1000.0;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok(Outcome {
            outputs: results
                .iter()
                .filter_map(|r| r["key"].as_str().map(str::to_owned))
                .collect(),
            result: serde_json::json!({
                "source": source.as_str(),
                "engine": engine,
                "model": key.as_str(),
                "outputs": results,
            }),
            timings_ms: vec![
                ("fetch".into(), fetch_ms),
                ("import".into(), ms(rendered.import)),
                ("accel_build".into(), ms(rendered.accel_build)),
                ("render".into(), ms(timings.render)),
                ("denoise".into(), ms(timings.denoise)),
                ("encode".into(), ms(timings.encode)),
                ("upload".into(), upload_ms),
            ],
            waiting_for: None,
        })
    }
}

/// The outputs a job has written so far: kept with [`Uploads::keep`] once all are written,
/// deleted otherwise, by [`Uploads::undo`] or, when the job's task is dropped part-way (an
/// abort), by a task spawned from `Drop`.
struct Uploads {
    ctx: JobContext,
    written: Vec<ObjectKey>,
}

impl Uploads {
    fn new(ctx: &JobContext) -> Self {
        Self {
            ctx: ctx.clone(),
            written: Vec::new(),
        }
    }

    /// Writes one output; on a store failure, or when the job is asked to stop, deletes what
    /// was written and returns the error.
    async fn put(&mut self, key: &ObjectKey, bytes: &[u8]) -> Result<(), JobError> {
        if self.ctx.is_cancelled() {
            self.undo().await;
            return Err(JobError::Cancelled);
        }
        // Recorded before the write: a write cut short by an abort may still have landed.
        self.written.push(key.clone());
        if let Err(err) = self.ctx.store.put(key, Bytes::copy_from_slice(bytes)).await {
            self.undo().await;
            return Err(err.into());
        }
        Ok(())
    }

    /// Deletes everything written so far. A key leaves the list only once it is deleted, so
    /// an abort in the middle leaves the rest to `Drop`.
    async fn undo(&mut self) {
        let count = self.written.len();
        while let Some(key) = self.written.last().cloned() {
            let _ = self.ctx.store.delete(&key).await;
            self.written.pop();
        }
        if count > 0 {
            info!(
                removed = count,
                "removed the outputs written before the job stopped or failed"
            );
        }
    }

    /// Keeps what was written: the job succeeded.
    fn keep(mut self) {
        self.written.clear();
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        if self.written.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let written = std::mem::take(&mut self.written);
        let store = self.ctx.store.clone();
        info!(
            removing = written.len(),
            "removing the outputs of a job that was aborted part-way"
        );
        runtime.spawn(async move {
            for key in &written {
                let _ = store.delete(key).await;
            }
            // The write the abort cut short may still land at the server after its delete:
            // delete that one again once any such request has had time to finish.
            if let Some(last) = written.last() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = store.delete(last).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_runtime::{Store, StoreConfig};

    #[tokio::test]
    async fn uploads_dropped_part_way_are_deleted_and_kept_ones_stay() {
        let root = std::env::temp_dir().join(format!(
            "lightbox-uploads-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let config = StoreConfig {
            backend: lightbox_runtime::store::StoreBackend::Local { root: root.clone() },
            ..StoreConfig::default()
        };
        let store = Store::connect(config).unwrap();
        let ctx = JobContext::detached(Function::Render, store.clone());
        let key = |name: &str| ObjectKey::new(format!("outputs/uploads/{name}.png")).unwrap();

        // A job's task aborted between two uploads.
        let (written_tx, written_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let mut uploads = Uploads::new(&ctx);
                uploads.put(&key("a"), b"a").await.unwrap();
                uploads.put(&key("b"), b"b").await.unwrap();
                written_tx.send(()).unwrap();
                std::future::pending::<()>().await;
                uploads.keep();
            }
        });
        written_rx.await.unwrap();
        assert!(store.exists(&key("a")).await.unwrap());
        task.abort();
        let _ = task.await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while store.exists(&key("a")).await.unwrap() || store.exists(&key("b")).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the aborted job's uploads are deleted");

        // Kept uploads stay.
        let mut uploads = Uploads::new(&ctx);
        uploads.put(&key("c"), b"c").await.unwrap();
        uploads.keep();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.exists(&key("c")).await.unwrap());
        let _ = std::fs::remove_dir_all(&root);
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}
