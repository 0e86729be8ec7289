//! The queue handler: fetch the STEP file, answer from the cache when the same content was
//! tessellated before, otherwise tessellate in a child process and store the GLB under its
//! content key.
//!
//! Concurrent requests for the same content mesh once: jobs in one process queue on an in-process
//! gate per cache key, and processes take a runtime lock (`ctx.locks()`: KV bucket
//! `tessellate_locks` from `infra/nats/tessellate-locks.kv.json`), which only one of them wins.
//! Locks expire after the bucket's `max_age`, so a holder that died frees its lock; waiters poll
//! the cache and take over when the lock is gone.
//!
//! A job the runtime stops (cancel, deadline, drain) stops waiting at once, its OCCT child is
//! killed (the sandbox watches the job's cancel flag) and its lock is released before it
//! returns; the lock and the in-process gate are guards that release themselves when dropped,
//! so even a job whose task is aborted leaves neither behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lightbox_runtime::config::{env_bool, env_parse};
use lightbox_runtime::locks::{Lock, Locks};
use lightbox_runtime::requests::TessellateRequest;
use lightbox_runtime::worker::{Handler, Job, JobContext, Outcome};
use lightbox_runtime::{Function, JobError, ObjectKey, StoreError};
use tracing::{info, warn};

use lightbox_isolate::Sandbox;

use crate::{
    cache_key, params_from_request, scene, tessellate_bytes, Stats, TessellateError,
    TessellationParams,
};

/// Limits of one tessellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest STEP file accepted, in bytes.
    pub max_input_bytes: u64,
    /// Wall-clock limit of the OCCT child.
    pub timeout: Duration,
    /// Address-space limit of the OCCT child, in bytes.
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 256 * 1024 * 1024,
            timeout: Duration::from_secs(300),
            max_memory_bytes: 8 * 1024 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// `LIGHTBOX_TESSELLATE_MAX_INPUT_BYTES`, `LIGHTBOX_TESSELLATE_TIMEOUT_SECS` and
    /// `LIGHTBOX_TESSELLATE_MAX_MEMORY_MB`, else the defaults.
    pub fn from_env() -> Self {
        let defaults = Self::default();
        Self {
            max_input_bytes: env_parse(
                "LIGHTBOX_TESSELLATE_MAX_INPUT_BYTES",
                defaults.max_input_bytes,
            ),
            timeout: Duration::from_secs_f64(env_parse(
                "LIGHTBOX_TESSELLATE_TIMEOUT_SECS",
                defaults.timeout.as_secs_f64(),
            )),
            max_memory_bytes: env_parse(
                "LIGHTBOX_TESSELLATE_MAX_MEMORY_MB",
                defaults.max_memory_bytes / (1024 * 1024),
            ) * 1024
                * 1024,
        }
    }
}

/// The queue handler.
pub struct TessellateHandler {
    pub limits: Limits,
    /// Where and how OCCT runs; each job adds its cancel flag.
    pub sandbox: Sandbox,
    /// In-process single flight: one gate per cache key being produced.
    gates: Mutex<HashMap<ObjectKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl TessellateHandler {
    pub fn new(limits: Limits, sandbox: Sandbox) -> Self {
        Self {
            limits,
            sandbox,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Limits from the environment; this executable is the OCCT child (its `main` serves
    /// [`crate::CHILD`]; `LIGHTBOX_TESSELLATE_FAULT_INJECTION=1` enables test faults).
    pub fn from_env() -> std::io::Result<Self> {
        let limits = Limits::from_env();
        let mut sandbox = crate::sandbox(std::env::current_exe()?, &limits);
        sandbox.fault_injection = env_bool("LIGHTBOX_TESSELLATE_FAULT_INJECTION", false);
        Ok(Self::new(limits, sandbox))
    }

    /// This job's place at the in-process gate for `key`; leaving it (dropping the guard, also
    /// when the job's task is aborted) forgets the gate when nobody else waits at it.
    fn gate<'a>(&'a self, key: &'a ObjectKey) -> Gate<'a> {
        let mut gates = self.gates.lock().expect("gates lock");
        let gate = gates.entry(key.clone()).or_default().clone();
        Gate {
            handler: self,
            key,
            gate,
        }
    }

    /// The cached GLB, if it exists.
    async fn cached(&self, ctx: &JobContext, key: &ObjectKey) -> Result<Option<Bytes>, JobError> {
        if !ctx.store.exists(key).await? {
            return Ok(None);
        }
        Ok(Some(ctx.store.get(key, None).await?))
    }

    /// Takes the cross-process lock for `key`, or waits until the GLB appears. Returns the GLB
    /// when another process produced it, or `None` when this job should produce it (it then
    /// holds the returned lock, or the wait passed the lock's lifetime).
    async fn lock_or_wait(
        &self,
        ctx: &JobContext,
        locks: &Locks,
        lock: &str,
        key: &ObjectKey,
    ) -> Result<(Option<Bytes>, Option<Lock>), JobError> {
        let owner = format!("{}", ctx.id);
        let give_up = Instant::now() + self.limits.timeout + Duration::from_secs(30);
        loop {
            if let Some(held) = locks.try_acquire(lock, &owner).await? {
                return Ok((None, Some(held)));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = ctx.stopped() => return Err(JobError::Cancelled),
            }
            if let Some(glb) = self.cached(ctx, key).await? {
                return Ok((Some(glb), None));
            }
            if Instant::now() > give_up {
                warn!(%lock, "tessellate lock held too long; producing the GLB here");
                return Ok((None, None));
            }
        }
    }

    async fn produce(
        &self,
        ctx: &JobContext,
        input: Bytes,
        params: TessellationParams,
        key: &ObjectKey,
    ) -> Result<(Bytes, Option<Stats>), JobError> {
        if let Some(glb) = self.cached(ctx, key).await? {
            return Ok((glb, None));
        }
        let locks = ctx.locks().await?;
        let lock = key.file_name().trim_end_matches(".glb").to_owned();
        let (found, held) = self.lock_or_wait(ctx, &locks, &lock, key).await?;
        if let Some(glb) = found {
            return Ok((glb, None));
        }
        let result = async {
            // Another process may have finished between our cache check and the lock.
            if let Some(glb) = self.cached(ctx, key).await? {
                return Ok((glb, None));
            }
            ctx.progress(2, 4, None, "tessellating");
            let sandbox = Sandbox {
                cancel: Some(ctx.cancel_flag()),
                ..self.sandbox.clone()
            };
            let max_input = self.limits.max_input_bytes;
            let done = tokio::task::spawn_blocking(move || {
                tessellate_bytes(&input, &params, max_input, &sandbox)
            })
            .await
            .map_err(|err| TessellateError::Task {
                reason: err.to_string(),
            })??;
            let glb = Bytes::from(done.glb);
            ctx.store.put(key, glb.clone()).await?;
            Ok((glb, Some(done.stats)))
        }
        .await;
        if let Some(held) = held {
            if let Err(err) = held.release().await {
                warn!(%lock, error = %err, "could not release tessellate lock; it expires");
            }
        }
        result
    }
}

impl Handler for TessellateHandler {
    type Request = TessellateRequest;
    const FUNCTION: Function = Function::Tessellate;
    const DEFAULT_QUEUE: &'static str = "tessellate";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<TessellateRequest>) -> Result<Outcome, JobError> {
        let Job { request, ctx } = job;
        let params = params_from_request(&request)?;
        if let Some(output) = &request.output {
            ctx.store.check(output)?;
        }
        let fetch_start = Instant::now();
        let input = ctx
            .store
            .get(&request.input, Some(self.limits.max_input_bytes))
            .await
            .map_err(|err| match err {
                StoreError::TooLarge { .. } => {
                    JobError::permanent(format!("{err} (LIGHTBOX_TESSELLATE_MAX_INPUT_BYTES)"))
                }
                other => JobError::from(other),
            })?;
        let fetch_ms = fetch_start.elapsed().as_secs_f64() * 1000.0;
        // Refuse what is plainly no STEP file before starting OCCT or taking locks.
        crate::check_step_bytes(&input, self.limits.max_input_bytes)?;
        ctx.progress(1, 4, None, "fetched input");
        let key = cache_key(&input, &params);
        let input_bytes = input.len();

        let gate = self.gate(&key);
        let produced = {
            let _turn = tokio::select! {
                turn = gate.gate.lock() => turn,
                _ = ctx.stopped() => return Err(JobError::Cancelled),
            };
            self.produce(&ctx, input, params, &key).await
        };
        drop(gate);
        let (glb, stats) = produced?;
        ctx.progress(3, 4, None, "stored GLB");

        let upload_start = Instant::now();
        if let Some(output) = request.output.as_ref().filter(|o| **o != key) {
            ctx.store.put(output, glb.clone()).await?;
        }
        let copy_ms = upload_start.elapsed().as_secs_f64() * 1000.0;
        let hit = stats.is_none();
        let (parts, instances, triangles) = match &stats {
            Some(stats) => (stats.parts, stats.instances, stats.triangles),
            None => {
                let counts = scene::glb_counts(&glb).ok_or_else(|| TessellateError::NotOurGlb {
                    key: key.to_string(),
                })?;
                (counts.parts, counts.instances, counts.triangles)
            }
        };
        let (read_ms, mesh_ms, write_ms) = stats
            .as_ref()
            .map(|s| (s.read_ms, s.mesh_ms, s.write_ms))
            .unwrap_or_default();
        let output = request.output.clone().unwrap_or_else(|| key.clone());
        info!(cache = if hit { "hit" } else { "miss" }, %key, parts, instances, triangles, "tessellated");
        let mut outputs = vec![output.to_string()];
        if output != key {
            outputs.push(key.to_string());
        }
        Ok(Outcome {
            outputs,
            result: serde_json::json!({
                "output": output.as_str(),
                "cache_key": key.as_str(),
                "cache": if hit { "hit" } else { "miss" },
                "parts": parts,
                "instances": instances,
                "triangles": triangles,
                "distinct_triangles": stats.as_ref().map(|s| s.distinct_triangles),
                "glb_bytes": glb.len(),
                "input_bytes": input_bytes,
                "linear_deflection_m": stats.as_ref().map(|s| s.linear_deflection_m),
                "angular_deflection": stats.as_ref().map(|s| s.angular_deflection),
                "timings_ms": {"read": read_ms, "mesh": mesh_ms, "write": write_ms},
            }),
            timings_ms: vec![
                ("fetch".into(), fetch_ms),
                ("read".into(), read_ms),
                ("mesh".into(), mesh_ms),
                ("write".into(), write_ms),
                ("copy".into(), copy_ms),
            ],
            ..Outcome::default()
        })
    }
}

/// A job's place at the in-process gate of one cache key (see [`TessellateHandler::gate`]).
struct Gate<'a> {
    handler: &'a TessellateHandler,
    key: &'a ObjectKey,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let mut gates = self.handler.gates.lock().expect("gates lock");
        // The map and this job hold it: nobody else waits.
        if Arc::strong_count(&self.gate) <= 2 {
            gates.remove(self.key);
        }
    }
}
