//! OTLP trace export as an operator turns it on: the real `lightbox-convert` binary with the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` pointed at a receiver in this test (a small HTTP/1.1
//! server on loopback accepting `POST /v1/traces`, decoded with `opentelemetry-proto`'s types)
//! runs a job submitted with a known `traceparent`; the span it exports continues that trace
//! (same trace id, the submitter's span as parent) and names the service and the job, and the
//! span of the job it continues with hangs under it. The batch delay is set far beyond the test,
//! so the spans arrive only because the worker flushes them when it drains on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lightbox_runtime::events::JobState;
use lightbox_runtime::job::{Continuation, Envelope, Function};
use lightbox_runtime::telemetry::TraceParent;
use lightbox_tests::{function_binary, FunctionProcess};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request the receiver was sent: its path, `Content-Type` and decoded body.
struct Received {
    path: String,
    content_type: String,
    request: ExportTraceServiceRequest,
}

/// A collector stand-in: accepts OTLP/HTTP protobuf exports on a free loopback port and keeps
/// every request. Answers 200 with an empty `ExportTraceServiceResponse`. It runs on a thread
/// and runtime of its own, so it answers while the test blocks (waiting for the worker to exit).
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(stream, kept.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            endpoint,
            received,
            stop: Some(stop),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves one keep-alive connection: requests with a `Content-Length` body, one after another.
async fn serve(mut stream: TcpStream, received: Arc<Mutex<Vec<Received>>>) {
    let mut buffer = Vec::new();
    loop {
        // Read up to the end of the headers.
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .expect("the exporter sends a Content-Length")
            .parse()
            .unwrap();
        let body_start = head_end + 4;
        while buffer.len() < body_start + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[body_start..body_start + length].to_vec();
        buffer.drain(..body_start + length);
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let (status, answer) = match (method.as_str(), path.as_str()) {
            ("POST", "/v1/traces") => match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(request) => {
                    received.lock().unwrap().push(Received {
                        path,
                        content_type: header("content-type").unwrap_or_default(),
                        request,
                    });
                    ("200 OK", Vec::new())
                }
                Err(err) => ("400 Bad Request", err.to_string().into_bytes()),
            },
            _ => ("404 Not Found", Vec::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err()
            || stream.write_all(&answer).await.is_err()
        {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A string or integer attribute's value, as text.
fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn job_spans_go_to_the_otlp_endpoint_continuing_the_incoming_traceparent() {
    let stack = crate::stack::stack().await;
    let receiver = Receiver::start();
    let input = stack
        .upload("inputs/otlp/card.png", lightbox_tests::noisy_png(64, 48, 3))
        .await;
    let mut env = lightbox_tests::function_env(&stack.nats, &stack.s3.env());
    env.extend([
        ("LIGHTBOX_INSTANCE".to_string(), "otlp-1".to_string()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            receiver.endpoint.clone(),
        ),
        // No OTEL_SERVICE_NAME: the function's own name is the default.
        (
            "OTEL_RESOURCE_ATTRIBUTES".to_string(),
            "deployment.environment=otlp-test,team=render".to_string(),
        ),
        // Ten minutes: nothing is sent on the timer during this test, only by the drain flush.
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "600000".to_string()),
    ]);
    let mut worker = FunctionProcess::spawn(
        &function_binary("lightbox-convert"),
        &env,
        &stack.logs,
        "otlp",
    );
    lightbox_tests::wait_consuming(&worker, Duration::from_secs(30)).await;
    assert!(
        worker.log_text().contains("exporting job spans over OTLP"),
        "{}",
        worker.log_text()
    );

    // The submitter's span: this is the parent the job's span must name.
    let incoming =
        TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
    // The job continues with a second convert job: its span must hang under the first one's.
    let continued = Envelope::new(
        Function::Convert,
        serde_json::json!({"input": input.as_str(), "format": "png"}),
    );
    let continued_id = continued.id.to_string();
    let mut envelope = Envelope::new(
        Function::Convert,
        serde_json::json!({"input": input.as_str(), "format": "webp"}),
    );
    envelope.then = Some(Continuation {
        subject: "convert".into(),
        job: serde_json::to_value(&continued).unwrap(),
    });
    let job_id = envelope.id.to_string();
    stack
        .client
        .submit_raw(
            "convert",
            &job_id,
            Bytes::from(envelope.to_json()),
            Some(&incoming),
        )
        .await
        .unwrap();
    let event = stack
        .client
        .wait(&job_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(event.state, JobState::Succeeded, "{event:?}");
    assert_eq!(event.trace_id.as_deref(), Some(incoming.trace_id.as_str()));
    let next = stack
        .client
        .wait(&continued_id, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(next.state, JobState::Succeeded, "{next:?}");

    // SIGTERM: the worker drains, flushes its spans and exits 0. The receiver keeps a request
    // before it answers, and the flush waits for the answer, so all is here once it has exited.
    worker.signal("TERM");
    assert_eq!(
        worker.wait_exit(Duration::from_secs(60)),
        Some(true),
        "{}",
        worker.log_text()
    );

    let received = receiver.received.lock().unwrap();
    assert!(
        !received.is_empty(),
        "no OTLP export arrived\n{}",
        worker.log_text()
    );
    for request in received.iter() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.content_type, "application/x-protobuf");
    }
    let spans_of = |id: &str| {
        let mut found = Vec::new();
        for request in received.iter() {
            for resource_spans in &request.request.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for scope_spans in &resource_spans.scope_spans {
                    for span in &scope_spans.spans {
                        if attribute(&span.attributes, "job_id").as_deref() == Some(id) {
                            found.push((resource.clone(), span.clone()));
                        }
                    }
                }
            }
        }
        found
    };
    let found = spans_of(&job_id);
    assert_eq!(
        found.len(),
        1,
        "one span for job {job_id}; received: {:?}",
        received.iter().map(|r| &r.request).collect::<Vec<_>>()
    );
    let (resource, span) = &found[0];
    assert_eq!(span.name, "job");
    assert_eq!(
        hex(&span.trace_id),
        incoming.trace_id,
        "the incoming trace id"
    );
    assert_eq!(
        hex(&span.parent_span_id),
        incoming.parent_id,
        "the incoming span as parent"
    );
    assert_eq!(span.span_id.len(), 8);
    assert_ne!(hex(&span.span_id), incoming.parent_id, "a span of its own");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(
        attribute(&span.attributes, "function").as_deref(),
        Some("convert")
    );
    assert_eq!(attribute(&span.attributes, "attempt").as_deref(), Some("1"));
    assert_eq!(
        attribute(resource, "service.name").as_deref(),
        Some("lightbox-convert")
    );
    assert_eq!(
        attribute(resource, "deployment.environment").as_deref(),
        Some("otlp-test")
    );
    assert_eq!(attribute(resource, "team").as_deref(), Some("render"));
    // The continuation's span: same trace, the first job's span as its parent.
    let continued_spans = spans_of(&continued_id);
    assert_eq!(continued_spans.len(), 1, "one span for job {continued_id}");
    let (_, next_span) = &continued_spans[0];
    assert_eq!(hex(&next_span.trace_id), incoming.trace_id);
    assert_eq!(
        hex(&next_span.parent_span_id),
        hex(&span.span_id),
        "the continuation's span hangs under the job that published it"
    );
    // The job's log lines travel as the span's events.
    let events: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert!(
        events.contains(&"started") && events.contains(&"succeeded"),
        "{events:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
