//! The job envelope: what a publisher puts on a work queue, in a versioned JSON shape.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::JobError;
use crate::queue::Queue;
use crate::requests::{ConvertRequest, RenderRequest, TessellateRequest};

/// The envelope format version this SDK writes and understands.
pub const ENVELOPE_VERSION: u32 = 1;

/// A job id: a UUID v7, so ids sort by submission time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A new, time-ordered job id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of a job that `parent` asks for, named by `salt` (what the job is): the same
    /// parent and salt always give the same id, so a parent that is delivered again asks for
    /// the same job, and the id it reports is the one that job really has. Still a UUID v7,
    /// carrying the parent's timestamp, so it sorts next to the parent.
    pub fn derived(parent: JobId, salt: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(parent.0.as_bytes())
            .chain_update(salt)
            .finalize();
        let head = parent.0.as_bytes();
        let millis = head[..6]
            .iter()
            .fold(0u64, |millis, byte| (millis << 8) | u64::from(*byte));
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest[..10]);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

/// The functions Lightbox runs; each has one request type and one work queue (render has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Convert,
    Render,
    Tessellate,
}

impl Function {
    pub const ALL: [Function; 3] = [Function::Convert, Function::Render, Function::Tessellate];

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Convert => "convert",
            Function::Render => "render",
            Function::Tessellate => "tessellate",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Function {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "convert" => Ok(Function::Convert),
            "render" => Ok(Function::Render),
            "tessellate" => Ok(Function::Tessellate),
            other => Err(format!(
                "unknown function {other:?} (expected convert, render or tessellate)"
            )),
        }
    }
}

/// What travels on a work queue. The request is kept as raw JSON here and typed by the handler,
/// so the runtime can report on a job (id, function) even when its request is malformed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<R = serde_json::Value> {
    /// Envelope format version; a worker refuses versions it does not know.
    pub version: u32,
    /// Job id; publishers also send it as the `Nats-Msg-Id` header so a repeated publish is dropped.
    pub id: JobId,
    /// The function that should run the job.
    pub function: Function,
    /// Function-specific request.
    pub request: R,
    /// Milliseconds since the Unix epoch when the job was submitted.
    #[serde(default)]
    pub submitted_at_ms: u64,
    /// Optional deadline in milliseconds for the whole job, counted from `submitted_at_ms` (a
    /// job past it is stopped and failed; one past it while still queued fails without running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// A job to publish when this one succeeds (a continuation): how a render waits for a
    /// tessellation without holding a render slot. If this job fails for good, the continued
    /// job is failed with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<Continuation>,
}

/// A follow-up job, published by the runtime after the job carrying it succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// Queue subject to publish the follow-up job to.
    pub subject: String,
    /// The follow-up job's whole envelope.
    pub job: serde_json::Value,
}

/// How deep continuations may nest (a job continued by a job continued by ...): deeper chains
/// are refused, so checking one stays cheap whatever a submitter sends.
pub const MAX_CONTINUATION_DEPTH: usize = 4;

impl Continuation {
    /// Checks a continuation the way a submitted job is checked, because the runtime publishes
    /// it with the credentials of the worker that ran the job carrying it: the subject must be
    /// a work queue ([`Queue`]; never a JetStream API or event subject), and the follow-up
    /// envelope must parse ([`parse_envelope`]), be for the function serving that queue, carry
    /// a request of that function's type, and have valid continuations itself. Returns the
    /// queue and the parsed follow-up envelope; the error is permanent and names what is wrong.
    pub fn validate(&self) -> Result<(Queue, Envelope), JobError> {
        self.validate_at(1)
    }

    fn validate_at(&self, depth: usize) -> Result<(Queue, Envelope), JobError> {
        let invalid =
            |reason: String| JobError::permanent(format!("invalid continuation: {reason}"));
        if depth > MAX_CONTINUATION_DEPTH {
            return Err(invalid(format!(
                "continuations nest deeper than {MAX_CONTINUATION_DEPTH}"
            )));
        }
        let queue: Queue = self
            .subject
            .parse()
            .map_err(|err: crate::queue::UnknownQueue| invalid(err.to_string()))?;
        let bytes = serde_json::to_vec(&self.job)
            .map_err(|err| invalid(format!("the continued job does not encode: {err}")))?;
        let envelope =
            parse_envelope(&bytes).map_err(|err| invalid(format!("continued job: {err}")))?;
        if envelope.function != queue.function() {
            return Err(invalid(format!(
                "the continued job is for function {} but would be published to {queue} (served by {})",
                envelope.function,
                queue.function()
            )));
        }
        let typed = match envelope.function {
            Function::Convert => parse_request::<ConvertRequest>(&envelope.request).map(drop),
            Function::Render => parse_request::<RenderRequest>(&envelope.request).map(drop),
            Function::Tessellate => parse_request::<TessellateRequest>(&envelope.request).map(drop),
        };
        typed.map_err(|err| invalid(format!("continued {} job: {err}", envelope.function)))?;
        if let Some(then) = &envelope.then {
            then.validate_at(depth + 1)?;
        }
        Ok((queue, envelope))
    }

    /// The follow-up job's id, if its envelope has one.
    pub fn job_id(&self) -> Option<String> {
        self.job
            .get("id")
            .and_then(|id| id.as_str())
            .map(str::to_owned)
    }
}

/// The id a payload claims in its `id` field, if it is a JSON object with a string there. A
/// malformed envelope is reported under this id, so its submitter still hears about it.
pub fn claimed_id(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

impl<R: Serialize> Envelope<R> {
    /// A new envelope with a fresh id.
    pub fn new(function: Function, request: R) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            id: JobId::new(),
            function,
            request,
            submitted_at_ms: now_ms(),
            deadline_ms: None,
            then: None,
        }
    }

    /// The envelope as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelope serialises")
    }
}

/// The leading fields of an envelope, read before the request is typed.
#[derive(Debug, Deserialize)]
struct EnvelopeHead {
    version: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

/// Parses an envelope from bytes, giving a permanent error that says what is wrong.
pub fn parse_envelope(payload: &[u8]) -> Result<Envelope, JobError> {
    let head: EnvelopeHead = serde_json::from_slice(payload)
        .map_err(|err| JobError::permanent(format!("job is not a JSON object: {err}")))?;
    match head.version {
        None => {
            return Err(JobError::permanent(
                "job envelope is missing field `version`",
            ))
        }
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(ENVELOPE_VERSION as u64) => {}
        Some(other) => {
            return Err(JobError::permanent(format!(
                "unsupported envelope version {other} (this worker understands {ENVELOPE_VERSION})"
            )))
        }
    }
    if head.id.is_none() {
        return Err(JobError::permanent("job envelope is missing field `id`"));
    }
    serde_json::from_slice(payload)
        .map_err(|err| JobError::permanent(format!("invalid job envelope: {err}")))
}

/// Types a request from the envelope's raw JSON, as a permanent error if it does not fit.
/// A request is a JSON object: serde would also fill a struct from an array of its fields in
/// order, which no schema allows, so anything else is refused first.
pub fn parse_request<R: serde::de::DeserializeOwned>(
    request: &serde_json::Value,
) -> Result<R, JobError> {
    let kind = match request {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(JobError::permanent(format!(
            "invalid request: expected a JSON object, found {kind}"
        )));
    }
    R::deserialize(request).map_err(|err| JobError::permanent(format!("invalid request: {err}")))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_v7_and_ordered() {
        let first = JobId::new();
        let second = JobId::new();
        assert_eq!(first.0.get_version_num(), 7);
        assert!(first < second);
        assert_eq!(first.to_string().parse::<JobId>().unwrap(), first);
    }

    #[test]
    fn derived_ids_are_stable_distinct_v7_and_sort_with_their_parent() {
        let parent = JobId::new();
        let child = JobId::derived(parent, b"tessellate");
        assert_eq!(child, JobId::derived(parent, b"tessellate"));
        assert_ne!(child, JobId::derived(parent, b"convert"));
        assert_ne!(child, JobId::derived(JobId::new(), b"tessellate"));
        assert_ne!(child, parent);
        assert_eq!(child.0.get_version_num(), 7);
        assert_eq!(
            child.0.get_timestamp().map(|t| t.to_unix()),
            parent.0.get_timestamp().map(|t| t.to_unix()),
            "a derived id carries its parent's time"
        );
    }

    #[test]
    fn envelope_round_trips() {
        let envelope = Envelope::new(Function::Convert, serde_json::json!({"input": "a.png"}));
        let parsed = parse_envelope(&envelope.to_json()).unwrap();
        assert_eq!(parsed.id, envelope.id);
        assert_eq!(parsed.function, Function::Convert);
    }

    #[test]
    fn a_request_must_be_an_object_even_where_serde_would_take_an_array() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Request {
            input: String,
            quality: u8,
        }
        assert!(parse_request::<Request>(&serde_json::json!({"input": "a", "quality": 1})).is_ok());
        let err = parse_request::<Request>(&serde_json::json!(["a", 1])).unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "invalid request: expected a JSON object, found an array"
        );
        let err = parse_request::<Request>(&serde_json::Value::Null).unwrap_err();
        assert!(err.to_string().contains("found null"), "{err}");
    }

    fn continuation(subject: &str, job: serde_json::Value) -> Continuation {
        Continuation {
            subject: subject.to_owned(),
            job,
        }
    }

    fn render_envelope() -> serde_json::Value {
        serde_json::to_value(Envelope::new(
            Function::Render,
            serde_json::json!({"model": "models/a.step", "outputs": [{"width": 64}]}),
        ))
        .unwrap()
    }

    #[test]
    fn a_continuation_to_a_work_queue_with_a_valid_envelope_is_accepted() {
        let then = continuation("render.light", render_envelope());
        let (queue, envelope) = then.validate().unwrap();
        assert_eq!(queue, Queue::RenderLight);
        assert_eq!(envelope.function, Function::Render);
        assert!(continuation("render.heavy", render_envelope())
            .validate()
            .is_ok());
    }

    #[test]
    fn a_continuation_may_only_target_a_work_queue() {
        let victim = JobId::new();
        for subject in [
            "$JS.API.STREAM.MSG.DELETE.JOBS".to_owned(),
            format!("events.job.{victim}.succeeded"),
            format!("$KV.jobs.{victim}"),
            "dlq.render".to_owned(),
            "render.>".to_owned(),
            "render.*".to_owned(),
            "lightbox.cancel.x".to_owned(),
            String::new(),
        ] {
            let err = continuation(&subject, render_envelope())
                .validate()
                .unwrap_err();
            assert!(!err.is_retryable(), "{subject}");
            assert!(
                err.to_string().starts_with("invalid continuation: ")
                    && err.to_string().contains("is not a work queue"),
                "{subject}: {err}"
            );
        }
    }

    #[test]
    fn a_continued_envelope_is_checked_like_a_submitted_one() {
        let mut wrong_function = render_envelope();
        wrong_function["function"] = "convert".into();
        let mut bad_request = render_envelope();
        bad_request["request"] = serde_json::json!({"model": "../etc/passwd", "outputs": []});
        let mut unknown_field = render_envelope();
        unknown_field["request"]["colour"] = 1.into();
        let mut old_version = render_envelope();
        old_version["version"] = 7.into();
        let cases = [
            (
                continuation("convert", render_envelope()),
                "is for function render but would be published to convert",
            ),
            (
                continuation("render.light", wrong_function),
                "is for function convert but would be published to render.light",
            ),
            (
                continuation("render.light", bad_request),
                "continued render job: invalid request",
            ),
            (
                continuation("render.light", unknown_field),
                "unknown field `colour`",
            ),
            (
                continuation("render.light", old_version),
                "unsupported envelope version 7",
            ),
            (
                continuation("render.light", serde_json::json!("not an envelope")),
                "continued job: job is not a JSON object",
            ),
            (
                continuation("tessellate", serde_json::json!([1, 2])),
                "continued job",
            ),
        ];
        for (then, expected) in cases {
            let err = then.validate().unwrap_err();
            assert!(!err.is_retryable());
            assert!(
                err.to_string().contains(expected),
                "{err} should contain {expected}"
            );
        }
    }

    #[test]
    fn nested_continuations_are_checked_and_bounded() {
        let mut inner = render_envelope();
        inner["then"] = serde_json::json!({
            "subject": "$JS.API.STREAM.MSG.DELETE.JOBS",
            "job": render_envelope(),
        });
        let err = continuation("render.light", inner).validate().unwrap_err();
        assert!(err.to_string().contains("is not a work queue"), "{err}");

        let mut chain = render_envelope();
        for _ in 0..MAX_CONTINUATION_DEPTH {
            let mut outer = render_envelope();
            outer["then"] = serde_json::json!({"subject": "render.light", "job": chain});
            chain = outer;
        }
        let err = continuation("render.light", chain).validate().unwrap_err();
        assert!(err.to_string().contains("nest deeper"), "{err}");
    }

    #[test]
    fn bad_envelopes_are_permanent_errors_that_say_why() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "not a JSON object"),
            (br#"{"id":"x"}"#, "missing field `version`"),
            (
                br#"{"version":7,"id":"x"}"#,
                "unsupported envelope version 7",
            ),
            (br#"{"version":1}"#, "missing field `id`"),
            (
                br#"{"version":1,"id":"0190a0e0-0000-7000-8000-000000000000","request":{}}"#,
                "missing field `function`",
            ),
        ];
        for (payload, expected) in cases {
            let err = parse_envelope(payload).unwrap_err();
            assert!(!err.is_retryable());
            assert!(
                err.to_string().contains(expected),
                "{err} should contain {expected}"
            );
        }
    }
}
