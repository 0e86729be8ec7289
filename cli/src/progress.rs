//! A one-line progress bar for job events on stderr (plain lines when stderr is not a terminal).

use std::io::{IsTerminal, Write};

use lightbox_runtime::events::{JobEvent, JobState};

pub struct Bar {
    job_id: String,
    tty: bool,
    last_state: Option<JobState>,
}

impl Bar {
    pub fn new(job_id: &str) -> Self {
        Self {
            job_id: job_id.to_owned(),
            tty: std::io::stderr().is_terminal(),
            last_state: None,
        }
    }

    pub fn update(&mut self, event: &JobEvent) {
        let mut err = std::io::stderr();
        match (&event.progress, event.state) {
            (Some(progress), JobState::Progress) if progress.total > 0 => {
                let fraction = (progress.done as f64 / progress.total as f64).clamp(0.0, 1.0);
                let filled = (fraction * 30.0).round() as usize;
                let eta = progress
                    .eta_ms
                    .map(|ms| format!(" eta {:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default();
                let line = format!(
                    "[{}{}] {:>3.0}% {}{}",
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    fraction * 100.0,
                    progress.message,
                    eta
                );
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
            }
            _ if self.last_state != Some(event.state) && !event.state.is_terminal() => {
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K");
                }
                let attempt = if event.attempt > 1 {
                    format!(" (attempt {})", event.attempt)
                } else {
                    String::new()
                };
                let _ = writeln!(err, "{} {}{attempt}", self.job_id, event.state.as_str());
            }
            _ => {}
        }
        self.last_state = Some(event.state);
        let _ = err.flush();
    }

    pub fn finish(&mut self, event: &JobEvent) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        match event.state {
            JobState::Succeeded => {
                let run = event
                    .timings_ms
                    .get("run")
                    .map(|ms| format!(" in {ms:.0} ms"))
                    .unwrap_or_default();
                let _ = writeln!(
                    err,
                    "{} succeeded{run}: {}",
                    self.job_id,
                    event.outputs.join(", ")
                );
            }
            state => {
                let why = event
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("");
                let _ = writeln!(err, "{} {}: {why}", self.job_id, state.as_str());
            }
        }
    }
}
