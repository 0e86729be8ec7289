//! Foundation benchmark (prints numbers; not a test). Against a local nats-server it measures:
//! publish → handler-start latency for a no-op function, no-op jobs per second for one worker
//! next to a bare async-nats pull+ack loop in the same run, process start → consuming, idle RSS,
//! and a 2048x2048 PNG → WebP q90 conversion.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use bytes::Bytes;
use futures::StreamExt;
use lightbox_runtime::client::Client;
use lightbox_runtime::job::{Envelope, Function};
use lightbox_runtime::worker::{Handler, Job, Outcome, Worker};
use lightbox_runtime::JobError;
use lightbox_tests::{local_store, worker_config, NatsServer, TempDir};
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Deserialize, serde::Serialize)]
struct Noop {
    sent_ns: u64,
}

struct NoopHandler {
    latencies: Option<mpsc::UnboundedSender<u64>>,
    handled: Arc<AtomicU64>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

impl Handler for NoopHandler {
    type Request = Noop;
    const FUNCTION: Function = Function::Convert;
    const DEFAULT_QUEUE: &'static str = "convert";
    const DEFAULT_CONCURRENCY: usize = 2;

    async fn handle(&self, job: Job<Noop>) -> Result<Outcome, JobError> {
        if let Some(tx) = &self.latencies {
            let _ = tx.send(now_ns().saturating_sub(job.request.sent_ns));
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::default())
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e6
}

async fn publish_many(client: &Client, n: usize) {
    let mut acks = Vec::new();
    for _ in 0..n {
        let envelope = Envelope::new(Function::Convert, Noop { sent_ns: now_ns() });
        acks.push(
            client
                .js
                .publish("convert", Bytes::from(envelope.to_json()))
                .await
                .unwrap(),
        );
        if acks.len() >= 500 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

async fn bare_loop(client: &Client, n: usize) -> f64 {
    publish_many(client, n).await;
    let consumer = client
        .infra
        .jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".into()),
            filter_subject: "convert".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    let mut messages = consumer.messages().await.unwrap();
    let mut done = 0;
    while done < n {
        let message = messages.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        done += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(messages);
    client.infra.jobs.delete_consumer("bare").await.unwrap();
    rate
}

/// The bare loop plus the same per-job writes the runtime makes (status read, started and final
/// events with their KV entries), 256 jobs at a time: shows what the outcome reporting costs.
async fn bare_loop_with_reporting(client: &Client, n: usize) -> f64 {
    publish_many(client, n).await;
    let consumer = client
        .infra
        .jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".into()),
            filter_subject: "convert".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 1024,
            ..Default::default()
        })
        .await
        .unwrap();
    let reporter = lightbox_runtime::events::Reporter {
        js: client.js.clone(),
        kv: client.infra.kv.clone(),
    };
    let start = Instant::now();
    let messages = consumer.messages().await.unwrap();
    messages
        .take(n)
        .for_each_concurrent(256, |message| {
            let reporter = reporter.clone();
            async move {
                let message = message.unwrap();
                let envelope = lightbox_runtime::job::parse_envelope(&message.payload).unwrap();
                let id = envelope.id.to_string();
                let _ = reporter.status(&id).await;
                let started = lightbox_runtime::events::JobEvent::new(
                    &id,
                    "convert",
                    lightbox_runtime::events::JobState::Started,
                    1,
                    "bare",
                );
                reporter.report(&started, false).await.unwrap();
                let done = lightbox_runtime::events::JobEvent::new(
                    &id,
                    "convert",
                    lightbox_runtime::events::JobState::Succeeded,
                    1,
                    "bare",
                );
                reporter.report(&done, true).await.unwrap();
                message.ack().await.unwrap();
            }
        })
        .await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.infra.jobs.delete_consumer("bare").await.unwrap();
    rate
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let store_dir = TempDir::new("bench-store");
    let client = Client::connect(&nats.nats_config()).await?;
    println!(
        "Lightbox foundation benchmark (nats-server 2.15.1 on 127.0.0.1; this machine: {} cores)",
        std::thread::available_parallelism()?.get()
    );
    println!();

    // 1. Throughput: bare pull+ack loop, then the runtime, on the same server and queue.
    let n = 5000;
    let bare = bare_loop(&client, n).await;
    let bare_reporting = bare_loop_with_reporting(&client, n).await;
    publish_many(&client, n).await;
    let handled = Arc::new(AtomicU64::new(0));
    let mut config = worker_config(&nats, local_store(&store_dir), "convert", 256);
    config.max_ack_pending = Some(1024);
    let start = Instant::now();
    let worker = Worker::start(
        config,
        NoopHandler {
            latencies: None,
            handled: handled.clone(),
        },
    )
    .await?;
    while worker.counters.succeeded.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let runtime_rate = n as f64 / start.elapsed().as_secs_f64();
    worker.shutdown().await?;

    // 2. Latency: one job at a time into an idle worker with a waiting pull request.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = Worker::start(
        worker_config(&nats, local_store(&store_dir), "convert", 2),
        NoopHandler {
            latencies: Some(tx),
            handled: Arc::new(AtomicU64::new(0)),
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for _ in 0..500 {
        let envelope = Envelope::new(Function::Convert, Noop { sent_ns: now_ns() });
        client
            .submit_raw(
                "convert",
                &envelope.id.to_string(),
                Bytes::from(envelope.to_json()),
                None,
            )
            .await?;
        latencies.push(rx.recv().await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.shutdown().await?;
    latencies.sort_unstable();

    // 3. Process start → consuming, and idle RSS, for the real convert binary.
    let binary = std::env::current_exe()?
        .parent()
        .unwrap()
        .join("lightbox-convert");
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    if binary.exists() {
        for i in 0..5 {
            let log_dir = TempDir::new("bench-proc");
            let log = log_dir.path().join("log");
            let file = std::fs::File::create(&log)?;
            let started = Instant::now();
            let mut child = std::process::Command::new(&binary)
                .env("NATS_URL", nats.url())
                .env("LIGHTBOX_STORE_DIR", store_dir.path())
                .env("LIGHTBOX_INSTANCE", format!("bench-{i}"))
                .stderr(file)
                .spawn()?;
            while !std::fs::read_to_string(&log)?.contains("consuming") {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            starts.push(started.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss.push(rss_kb(child.id()) as f64 / 1024.0);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    starts.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);

    // 4. Convert a 2048x2048 PNG to WebP q90.
    let png = lightbox_tests::noisy_png(2048, 2048, 7);
    let smooth = lightbox_convert::samples::test_card_png(2048, 2048);
    let params = lightbox_convert::ConvertParams {
        format: lightbox_runtime::requests::ImageFormat::Webp,
        quality: Some(90),
        lossless: false,
        resize: None,
    };
    let mut convert_rows = Vec::new();
    for (name, input) in [("test card", &smooth), ("noisy photo-like", &png)] {
        let start = Instant::now();
        let out =
            lightbox_convert::convert_bytes(input, &params, &lightbox_convert::Limits::default())?;
        convert_rows.push((
            name,
            start.elapsed().as_secs_f64() * 1000.0,
            input.len(),
            out.bytes.len(),
            out.encode_ms,
        ));
    }

    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| publish → handler start, p50 | {:.3} ms | <= 1 ms |",
        percentile(&latencies, 0.5)
    );
    println!(
        "| publish → handler start, p99 | {:.3} ms | <= 5 ms |",
        percentile(&latencies, 0.99)
    );
    println!("| no-op jobs/s, bare async-nats pull+ack loop | {bare:.0} | reference |");
    println!("| no-op jobs/s, Lightbox runtime (1 instance, 256 slots) | {runtime_rate:.0} | |");
    println!(
        "| ratio runtime / bare | {:.2} | >= 0.8 |",
        runtime_rate / bare
    );
    println!("| no-op jobs/s, bare loop + the same event/KV writes per job | {bare_reporting:.0} | reference for the runtime's own cost |");
    println!(
        "| ratio runtime / (bare + same writes) | {:.2} | |",
        runtime_rate / bare_reporting
    );
    if !starts.is_empty() {
        println!(
            "| process start → consuming (median of 5) | {:.1} ms | <= 100 ms |",
            starts[starts.len() / 2]
        );
        println!(
            "| idle RSS (median of 5) | {:.1} MB | <= 30 MB |",
            rss[rss.len() / 2]
        );
    } else {
        println!("| process start → consuming | not measured: build lightbox-convert --release first | |");
    }
    for (name, ms, png_bytes, webp_bytes, encode_ms) in convert_rows {
        println!(
            "| convert 2048² {name} PNG → WebP q90 | {ms:.0} ms (encode {encode_ms:.0} ms); {} KB → {} KB ({:.0}% of PNG) | |",
            png_bytes / 1024,
            webp_bytes / 1024,
            100.0 * webp_bytes as f64 / png_bytes as f64
        );
    }
    Ok(())
}
