//! The work queues and the one routing rule that picks a render's queue.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::job::Function;

/// A JetStream work-queue subject in stream `JOBS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Queue {
    #[serde(rename = "render.light")]
    RenderLight,
    #[serde(rename = "render.heavy")]
    RenderHeavy,
    #[serde(rename = "tessellate")]
    Tessellate,
    #[serde(rename = "convert")]
    Convert,
}

/// Largest image edge, in pixels, that still goes to `render.light`.
pub const LIGHT_MAX_EDGE: u32 = 1024;

impl Queue {
    /// Every queue, in the order operators see them.
    pub const ALL: [Queue; 4] = [
        Queue::RenderLight,
        Queue::RenderHeavy,
        Queue::Tessellate,
        Queue::Convert,
    ];

    /// The subject jobs are published to.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::RenderLight => "render.light",
            Queue::RenderHeavy => "render.heavy",
            Queue::Tessellate => "tessellate",
            Queue::Convert => "convert",
        }
    }

    /// The function that serves this queue.
    pub fn function(self) -> Function {
        match self {
            Queue::RenderLight | Queue::RenderHeavy => Function::Render,
            Queue::Tessellate => Function::Tessellate,
            Queue::Convert => Function::Convert,
        }
    }

    /// The durable consumer serving this queue (`render.light` → `render-light`).
    pub fn consumer(self) -> String {
        self.as_str().replace('.', "-")
    }

    /// The routing rule for renders: stills with max(width, height) <= 1024 go to
    /// `render.light`; larger stills and every turntable go to `render.heavy`.
    pub fn for_render(max_edge: u32, has_turntable: bool) -> Queue {
        if has_turntable || max_edge > LIGHT_MAX_EDGE {
            Queue::RenderHeavy
        } else {
            Queue::RenderLight
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subject that is not one of the work queues.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{subject:?} is not a work queue (expected one of render.light, render.heavy, tessellate, convert)")]
pub struct UnknownQueue {
    pub subject: String,
}

impl FromStr for Queue {
    type Err = UnknownQueue;
    fn from_str(subject: &str) -> Result<Queue, UnknownQueue> {
        Queue::ALL
            .into_iter()
            .find(|q| q.as_str() == subject)
            .ok_or_else(|| UnknownQueue {
                subject: subject.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_rule() {
        assert_eq!(Queue::for_render(512, false), Queue::RenderLight);
        assert_eq!(Queue::for_render(1024, false), Queue::RenderLight);
        assert_eq!(Queue::for_render(1025, false), Queue::RenderHeavy);
        assert_eq!(Queue::for_render(64, true), Queue::RenderHeavy);
    }

    #[test]
    fn subjects_round_trip() {
        for q in Queue::ALL {
            assert_eq!(q.as_str().parse::<Queue>().unwrap(), q);
            assert_eq!(serde_json::to_string(&q).unwrap(), format!("\"{q}\""));
        }
        assert_eq!(Queue::RenderLight.consumer(), "render-light");
        assert!("$JS.API.STREAM.MSG.DELETE.JOBS".parse::<Queue>().is_err());
    }
}
