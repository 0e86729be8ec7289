//! Fault injection for tests: an input that carries a marker makes the child crash, hang or
//! exhaust its address space, when the [`crate::Sandbox`] enables it. Workers enable it only
//! from a test-only setting (`LIGHTBOX_TESSELLATE_FAULT_INJECTION=1`).

/// Marks an input that asks for a fault: `lightbox-test-fault: crash` (or `hang`, `alloc`),
/// anywhere in the bytes (a comment in a STEP or usda file).
pub const FAULT_MARKER: &str = "lightbox-test-fault:";

/// How the child misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `abort()`: killed by SIGABRT, as a crash in C++ code would be.
    Crash,
    /// Sleeps until the time limit or a cancellation kills it.
    Hang,
    /// Reserves memory until the address-space limit refuses, then exits as out of memory.
    Alloc,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Crash, Fault::Hang, Fault::Alloc];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Hang => "hang",
            Fault::Alloc => "alloc",
        }
    }

    pub fn from_name(name: &str) -> Option<Fault> {
        Self::ALL.into_iter().find(|fault| fault.name() == name)
    }

    /// The fault the first [`FAULT_MARKER`] in `input` asks for (its name within the 16 bytes
    /// after the marker).
    pub fn find_in(input: &[u8]) -> Option<Fault> {
        let marker = FAULT_MARKER.as_bytes();
        let at = input.windows(marker.len()).position(|w| w == marker)?;
        let rest = &input[at + marker.len()..];
        let rest = &rest[..rest.len().min(16)];
        Self::ALL.into_iter().find(|fault| {
            let name = fault.name().as_bytes();
            rest.windows(name.len()).any(|w| w == name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_fault() {
        assert_eq!(
            Fault::find_in(b"HEADER;\n/* lightbox-test-fault: hang */"),
            Some(Fault::Hang)
        );
        assert_eq!(
            Fault::find_in(b"# lightbox-test-fault:alloc\n"),
            Some(Fault::Alloc)
        );
        assert_eq!(Fault::find_in(b"lightbox-test-fault: nothing"), None);
        assert_eq!(Fault::find_in(b"crash without a marker"), None);
        for fault in Fault::ALL {
            assert_eq!(Fault::from_name(fault.name()), Some(fault));
        }
    }
}
