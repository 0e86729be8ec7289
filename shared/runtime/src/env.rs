//! Reading settings from the environment: the leaf every configuration type builds on
//! (`config`, `store`, and the functions' own limits), so none of them imports another.

use std::str::FromStr;

/// A variable's value; unset and empty are the same.
fn value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads a variable, or returns the default when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    value(name).unwrap_or_else(|| default.to_owned())
}

/// Reads a variable that may be unset; an empty value counts as unset.
pub fn env_opt(name: &str) -> Option<String> {
    value(name)
}

/// Reads and parses a variable; an unparsable value falls back to the default with a warning.
pub fn env_parse<T: FromStr>(name: &str, default: T) -> T {
    parse_or(name, value(name).as_deref(), default)
}

/// Reads a boolean (`1`, `true`, `yes`, `on` are true, any other set value is false).
pub fn env_bool(name: &str, default: bool) -> bool {
    bool_or(value(name).as_deref(), default)
}

fn parse_or<T: FromStr>(name: &str, text: Option<&str>, default: T) -> T {
    match text {
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("lightbox: ignoring {name}={text:?}: not a valid value");
            default
        }),
        None => default,
    }
}

fn bool_or(text: Option<&str>, default: bool) -> bool {
    match text {
        Some(text) => matches!(
            text.to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        ),
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The environment itself is left alone: tests run in parallel threads, and setting a
    // variable while another thread reads one is a data race in libc.

    #[test]
    fn unset_and_unparsable_values_fall_back_to_the_default() {
        assert_eq!(parse_or("N", None, 7u32), 7);
        assert_eq!(parse_or("N", Some("not a number"), 7u32), 7);
        assert_eq!(parse_or("N", Some("42"), 7u32), 42);
        assert_eq!(parse_or("N", Some("0.5"), 2.0f64), 0.5);
        assert_eq!(env_parse("LIGHTBOX_ENV_TEST_NEVER_SET", 3u8), 3);
        assert_eq!(env_or("LIGHTBOX_ENV_TEST_NEVER_SET", "x"), "x");
        assert_eq!(env_opt("LIGHTBOX_ENV_TEST_NEVER_SET"), None);
    }

    #[test]
    fn booleans_accept_the_usual_words_for_true() {
        for yes in ["1", "true", "TRUE", "yes", "On"] {
            assert!(bool_or(Some(yes), false), "{yes}");
        }
        for no in ["0", "false", "no", "off", "maybe"] {
            assert!(!bool_or(Some(no), true), "{no}");
        }
        assert!(bool_or(None, true));
        assert!(!bool_or(None, false));
    }
}
