//! Object keys: validated at deserialisation, so a job can never name a path outside the store.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// An object key that passed validation: relative, no `..` or `.` segments, no empty segments,
/// no leading `/`, no backslashes and no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ObjectKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid object key {key:?}: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    /// Validates a key.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let reason = if key.is_empty() {
            Some("empty")
        } else if key.len() > MAX_KEY_BYTES {
            Some("longer than 1024 bytes")
        } else if key.starts_with('/') {
            Some("must be relative (no leading `/`)")
        } else if key.chars().any(|c| c.is_control()) {
            Some("contains a control character")
        } else if key.contains('\\') {
            Some("contains a backslash")
        } else if key.split('/').any(|segment| segment == "..") {
            Some("contains a `..` segment")
        } else if key.split('/').any(|segment| segment == ".") {
            Some("contains a `.` segment")
        } else if key.split('/').any(|segment| segment.is_empty()) {
            Some("contains an empty segment")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(KeyError { key, reason }),
            None => Ok(Self(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name part of the key.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The extension of the file name, lower-cased, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name();
        name.rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ObjectKey::new(text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ObjectKey::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in ["inputs/a.png", "outputs/x/y-1.webp", "a"] {
            assert!(ObjectKey::new(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "empty"),
            ("/etc/passwd", "relative"),
            ("../x", ".."),
            ("inputs/../../x", ".."),
            ("inputs/./x", "`.`"),
            ("inputs//x", "empty segment"),
            ("inputs/a\u{0}b", "control"),
            ("inputs\\a", "backslash"),
        ] {
            let err = ObjectKey::new(bad).unwrap_err();
            assert!(err.to_string().contains(reason), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<ObjectKey>("\"../x\"").is_err());
    }
}
