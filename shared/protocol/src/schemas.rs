//! JSON Schemas generated from the wire types, committed in `infra/schemas/` for publishers in
//! other languages. A test fails when the committed files drift from the types; run
//! `LIGHTBOX_UPDATE_SCHEMAS=1 cargo test -p lightbox-protocol schemas` to regenerate them.

use crate::events::JobEvent;
use crate::job::Envelope;
use crate::requests::{ConvertRequest, RenderRequest, TessellateRequest};

/// Every committed schema: file name and content.
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    let mut schemas = generated();
    for (_, schema) in &mut schemas {
        drop_null_defaults(schema);
    }
    schemas
}

/// The render spec mirror's optional fields read `Option` but take no null
/// ([`crate::render_spec`]); schemars writes their `None` default as `"default": null`, which
/// would tell publishers null is the default. Absent is: the renderer's default applies.
fn drop_null_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("default") == Some(&serde_json::Value::Null) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

fn generated() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "envelope.schema.json",
            serde_json::to_value(schemars::schema_for!(Envelope)).expect("schema"),
        ),
        (
            "convert.job.schema.json",
            serde_json::to_value(schemars::schema_for!(Envelope<ConvertRequest>)).expect("schema"),
        ),
        (
            "render.job.schema.json",
            serde_json::to_value(schemars::schema_for!(Envelope<RenderRequest>)).expect("schema"),
        ),
        (
            "tessellate.job.schema.json",
            serde_json::to_value(schemars::schema_for!(Envelope<TessellateRequest>))
                .expect("schema"),
        ),
        (
            "convert.result.schema.json",
            serde_json::to_value(schemars::schema_for!(crate::results::ConvertResult))
                .expect("schema"),
        ),
        (
            "render.result.schema.json",
            serde_json::to_value(schemars::schema_for!(crate::results::RenderResult))
                .expect("schema"),
        ),
        (
            "tessellate.result.schema.json",
            serde_json::to_value(schemars::schema_for!(crate::results::TessellateResult))
                .expect("schema"),
        ),
        (
            "job-event.schema.json",
            serde_json::to_value(schemars::schema_for!(JobEvent)).expect("schema"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn committed_schemas_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/schemas");
        let update = std::env::var("LIGHTBOX_UPDATE_SCHEMAS").is_ok();
        for (name, schema) in super::all() {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                committed, text,
                "{name} is out of date: run LIGHTBOX_UPDATE_SCHEMAS=1 cargo test -p lightbox-protocol schemas"
            );
        }
    }
}
