//! A check of a binary USD (`.usdc`, "crate") file's table of contents before `openusd` reads it.
//!
//! openusd 0.6 allocates tables at the sizes a file declares (token bytes, string, field, path and
//! spec counts) before it reads them, so a few lying bytes ask for hundreds of gigabytes and abort
//! the process (found by `cargo fuzz`, `fuzz/regressions/usd_import`). This check reads the same
//! leading counts of every section and refuses a file whose counts cannot fit in its section, or
//! whose tables would not fit in the memory budget. It reads only fixed-size fields: nothing here
//! allocates in proportion to the file's claims.

use std::fmt;

/// What a crate file's tables would need, or why the file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateError(pub String);

impl fmt::Display for CrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrateError {}

/// LZ4 cannot expand a block by more than this factor.
const LZ4_MAX_RATIO: u64 = 255;
/// Integer tables are coded with at least two bits per value, then LZ4-compressed.
const MAX_INTS_PER_BYTE: u64 = 4 * LZ4_MAX_RATIO;
/// Bytes openusd keeps per entry of each table (generous: values, indices, paths).
const BYTES_PER_ENTRY: u64 = 64;

fn u64_at(bytes: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Checks a crate file's sections against their own sizes and the memory `budget` (bytes).
/// Bytes that are not a crate file pass (other readers handle them).
pub fn check(bytes: &[u8], budget: u64) -> Result<(), CrateError> {
    if !bytes.starts_with(b"PXR-USDC") {
        return Ok(());
    }
    let fail = |reason: String| Err(CrateError(format!("usdc: {reason}")));
    let len = bytes.len() as u64;
    let Some(toc) = u64_at(bytes, 16) else {
        return fail("the file ends inside its header".into());
    };
    let Some(count) = u64_at(bytes, toc) else {
        return fail(format!(
            "the table of contents at {toc} is outside the file"
        ));
    };
    if count == 0 || count >= 64 {
        return fail(format!("{count} sections"));
    }
    let mut tables = 0u64;
    for i in 0..count {
        let entry = toc + 8 + i * 32;
        let (Some(name), Some(start), Some(size)) = (
            bytes.get(entry as usize..entry as usize + 16),
            u64_at(bytes, entry + 16),
            u64_at(bytes, entry + 24),
        ) else {
            return fail(format!("section {i} of the table of contents is cut off"));
        };
        let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default())
            .into_owned();
        if start.checked_add(size).is_none_or(|end| end > len) {
            return fail(format!(
                "section {name} ({size} bytes at {start}) lies outside the {len}-byte file"
            ));
        }
        let count_at = |k: u64| u64_at(bytes, start + 8 * k).unwrap_or(0);
        // Each table: (what, declared entries, largest possible for the section's size).
        // Compressed blocks are read whole into memory first: they must fit in the section.
        let ints = size.saturating_mul(MAX_INTS_PER_BYTE);
        let claims: Vec<(&str, u64, u64)> = match name.as_str() {
            "TOKENS" => vec![
                (
                    "token bytes",
                    count_at(1),
                    size.saturating_mul(LZ4_MAX_RATIO),
                ),
                ("tokens", count_at(0), count_at(1).saturating_add(1)),
                ("compressed token bytes", count_at(2), size),
            ],
            "STRINGS" => vec![("strings", count_at(0), size / 4)],
            "FIELDS" | "FIELDSETS" | "SPECS" => vec![
                ("entries", count_at(0), ints),
                ("compressed bytes", count_at(1), size),
            ],
            "PATHS" => vec![
                ("paths", count_at(0), ints),
                ("path nodes", count_at(1), ints),
                ("compressed bytes", count_at(2), size),
            ],
            _ => Vec::new(),
        };
        for (what, declared, possible) in claims {
            if declared > possible {
                return fail(format!(
                    "section {name} declares {declared} {what}, more than its {size} bytes can hold"
                ));
            }
            tables = tables.saturating_add(declared.saturating_mul(BYTES_PER_ENTRY));
        }
    }
    if tables > budget {
        return fail(format!(
            "its tables need about {} MiB, over the memory budget of {} MiB",
            tables.div_ceil(1 << 20),
            budget.div_ceil(1 << 20)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate file with one section whose leading counts are `counts`.
    fn crate_file(section: &str, counts: &[u64], size: u64) -> Vec<u8> {
        let mut bytes = b"PXR-USDC".to_vec();
        bytes.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0]);
        let body_start = 24u64;
        let toc = body_start + size;
        bytes.extend_from_slice(&toc.to_le_bytes());
        let mut body: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        body.resize(size as usize, 0);
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        let mut name = [0u8; 16];
        name[..section.len()].copy_from_slice(section.as_bytes());
        bytes.extend_from_slice(&name);
        bytes.extend_from_slice(&body_start.to_le_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes
    }

    #[test]
    fn honest_counts_pass_and_lying_ones_fail() {
        assert!(check(&crate_file("TOKENS", &[10, 100, 40], 64), 1 << 30).is_ok());
        let err = check(&crate_file("FIELDSETS", &[10, 1 << 33], 64), 1 << 30).unwrap_err();
        assert!(err.0.contains("compressed bytes"), "{err}");
        let err = check(&crate_file("TOKENS", &[10, 1 << 40, 40], 64), 1 << 30).unwrap_err();
        assert!(
            err.0.contains("declares 1099511627776 token bytes"),
            "{err}"
        );
        let err = check(&crate_file("STRINGS", &[1 << 30], 64), 1 << 30).unwrap_err();
        assert!(err.0.contains("strings"), "{err}");
        let err = check(&crate_file("PATHS", &[3, 1 << 50], 64), 1 << 30).unwrap_err();
        assert!(err.0.contains("path nodes"), "{err}");
    }

    #[test]
    fn tables_over_the_budget_fail() {
        let file = crate_file("SPECS", &[1_000_000, 4000], 4096);
        assert!(check(&file, 1 << 30).is_ok());
        let err = check(&file, 1 << 20).unwrap_err();
        assert!(err.0.contains("over the memory budget of 1 MiB"), "{err}");
    }

    #[test]
    fn broken_tables_of_contents_fail_and_other_bytes_pass() {
        let mut file = crate_file("TOKENS", &[1, 2, 3], 64);
        let toc_at = 16;
        file[toc_at..toc_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check(&file, 1 << 30).is_err());
        assert!(check(&file[..20], 1 << 30).is_err());
        assert!(check(b"#usda 1.0\n", 1 << 30).is_ok());
    }
}

#[cfg(test)]
mod regressions {
    #[test]
    fn the_fuzzed_fieldsets_claim_is_refused_before_openusd_reads_it() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/usd_import/usdc-fieldsets-compressed-size.usdc"
        ))
        .unwrap();
        let err = super::check(&bytes, 8 << 30).unwrap_err();
        assert!(
            err.0
                .contains("section FIELDSETS declares 3242591731706757308 compressed bytes"),
            "{err}"
        );
    }
}
