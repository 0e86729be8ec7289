//! Test and benchmark models generated with OCCT by the shim (`lb_write_sample`), so the
//! repository carries no CAD files.

use std::path::Path;

use crate::ffi::{self, OcctError};

/// The generated models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// An L bracket with fillets and three drilled holes (one part).
    Bracket,
    /// A revolved flange with six bolt holes (one part).
    Flange,
    /// A hollow duct lofted through a circle, an ellipse and a tilted circle (B-spline faces).
    Duct,
    /// A double-row ball bearing: 140 placements of 5 parts; the 134 balls instance one part.
    Bearing,
    /// A STEP file with a single curve and no solids (a bad input).
    CurveOnly,
    /// An assembly coloured at the levels STEP files carry: a near-white solid whose top and
    /// three sides are styled brass and one side translucent red, a two-solid part with one
    /// solid coloured, a blue part placed plain, with a green instance colour and inside a
    /// sub-assembly placed yellow, and an uncoloured part in that sub-assembly (`styled` in
    /// `occt/shim.cpp` has the values).
    Styled,
}

impl Sample {
    pub const ALL: [Sample; 6] = [
        Sample::Bracket,
        Sample::Flange,
        Sample::Duct,
        Sample::Bearing,
        Sample::CurveOnly,
        Sample::Styled,
    ];

    fn kind(self) -> i32 {
        match self {
            Sample::Bracket => 0,
            Sample::Flange => 1,
            Sample::Duct => 2,
            Sample::Bearing => 3,
            Sample::CurveOnly => 4,
            Sample::Styled => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sample::Bracket => "bracket",
            Sample::Flange => "flange",
            Sample::Duct => "duct",
            Sample::Bearing => "bearing",
            Sample::CurveOnly => "curve-only",
            Sample::Styled => "styled",
        }
    }
}

/// Writes a sample model as a STEP (AP214) file.
pub fn write_step(sample: Sample, path: &Path) -> Result<(), OcctError> {
    ffi::write_sample(sample.kind(), path)
}

/// A sample model's STEP bytes (written through a temporary file).
pub fn step_bytes(sample: Sample) -> Result<Vec<u8>, OcctError> {
    let path = std::env::temp_dir().join(format!(
        "lightbox-sample-{}-{}-{:?}.step",
        sample.name(),
        std::process::id(),
        std::thread::current().id()
    ));
    write_step(sample, &path)?;
    let bytes = std::fs::read(&path).map_err(|err| OcctError {
        status: ffi::OcctStatus::Failure,
        message: format!("reading {}: {err}", path.display()),
    });
    let _ = std::fs::remove_file(&path);
    bytes
}
