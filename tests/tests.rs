//! Lightbox integration tests: one binary, real `nats-server -js` and real SeaweedFS S3 servers
//! on free loopback ports, started per test and stopped by `Drop` guards.

/// Servers shared by the integration tests below (NATS, S3, store, client).
mod stack;

/// The worker runtime in process, against a real nats-server: concurrency caps, retries,
/// panics, dead letters, dedupe, cancellation, deadlines, micro service, queue limits.
mod runtime;

/// Convert jobs through the real `lightbox-convert` binary and S3: end to end, bad inputs,
/// SIGKILL mid-job, SIGTERM drain.
mod processes;

/// The routing rule through the CLI: `lightbox submit render` sends a 2048² still to
/// `render.heavy` and a thumbnail to `render.light`.
mod routing;

/// The crate graph holds the architecture: `cargo metadata` checked against the dependency
/// rules in ARCHITECTURE.md (scene without Embree, renderer without transports, functions
/// without async-nats or each other, convert's closure without Embree).
mod architecture;

/// Render jobs through the real `lightbox-render` binaries on `render.light` and `render.heavy`:
/// concurrency between queues, STEP through the tessellation cache and a continuation,
/// cancellation, bad models and limits.
mod render;

/// The least-privilege NATS config in `infra/nats/auth.conf`: what each function user may and may
/// not do, refused passwords, and no secrets in worker logs.
mod security;

/// Each function runs real jobs bind-only as its own `auth.conf` user (render on `render.light`,
/// tessellate on an uncached STEP file with its lock bucket, a STEP render through a
/// continuation), and a render naming a tessellation-cache key as output fails, writing nothing.
mod security_functions;

/// Escalations tried as `backend` and as each function user, all refused: continuations aimed at
/// JetStream API, event or KV subjects, reading or deleting other functions' jobs, stream and
/// consumer management, other functions' consumers, queues, locks, dead letters and services.
mod security_escalation;

/// Deployment files: hadolint on every Dockerfile, runtime libraries against `ldd`, Kubernetes
/// manifests against their schemas and the queues, and the container health check.
mod infra;

/// Tessellate jobs through the real `lightbox-tessellate` binary and S3: STEP to instanced GLB,
/// the content cache (hits, and one meshing for concurrent requests), bad, crashing and hanging
/// inputs failing in one delivery.
mod tessellate;

/// The committed bad-input corpus (`tests/corpus/`): up to date with its generator, and every
/// case failing once with a clear message through the real convert, render and tessellate
/// binaries while the workers keep serving and nothing is written.
mod corpus_run;

/// A multi-file `.gltf` (WaterBottle: `.bin` and four PNGs) under one key prefix through the real
/// `lightbox-render` binary; a missing sibling and a reference out of the prefix fail naming it.
mod gltf_files;

/// Multi-file models (a `.gltf` with its `.bin` and PNGs, a USD stage with sibling textures)
/// converted by the real `lightbox-convert` binary from their key prefix; a missing sibling fails.
mod convert_files;

/// The `lightbox` command as operators use it: only `infra apply` changes the server (raised
/// limits survive `dlq list`, `queues`, `status`), unknown and malformed ids, NATS down, server and
/// identity from flags, `nats` contexts and the environment, and `--json` reads.
mod ops;

/// The committed JSON Schemas as publishers use them: good and bad render outputs through
/// Python's `jsonschema`, the renderer agreeing with each verdict, no drift from the renderer.
mod schemas;

/// Terminal state is the contract: a job whose worker dies on every delivery is dead-lettered by a
/// worker started later (auth.conf users, bind-only, no advisory listener); a bucket outage at
/// finish leaves the job queued and one terminal event is stored later without running it again;
/// oversized results and errors are summarised; the waiting job is settled when the job it waits
/// for is dead-lettered, found done or cancelled; drain hand-backs use up no deliveries.
mod terminal;

/// A real 3-node JetStream cluster (tests/nats_cluster.rs): a worker given the three URLs keeps
/// serving when its node and then the node leading `JOBS` are SIGKILLed; three workers started
/// together on a fresh cluster all start and serve, and the CLI reads through the same list from
/// `--server` and a `nats` context; a partitioned `JOBS` leader is replaced and jobs flow after
/// the heal; the k8s `NATS_URL` is three servers; a bind-only worker with nothing to bind to fails
/// at once, naming `lightbox infra apply`.
mod cluster;

/// OTLP trace export through the real `lightbox-convert` binary to a test receiver: the job's
/// span continues the submitted `traceparent`, names the service and the job, and is flushed on
/// drain.
mod otlp;

/// Cooperative stops: a deadline, a cancel and the drain let the handler clean up (a render
/// stopped mid-upload leaves no outputs, a drained tessellation releases its lock and kills its
/// OCCT child, a SIGKILLed worker's child dies with it); the deadline counts from submission; a
/// bind-only worker whose consumer is deleted binds again or exits naming it; `lightbox cancel`.
mod cooperative;
