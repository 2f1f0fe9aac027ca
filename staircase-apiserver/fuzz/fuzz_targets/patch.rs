//! The patch engines of `staircase_apiserver::patch` on arbitrary JSON: the input is a selector
//! byte, then a document and a patch as two JSON values one after the other (for server-side
//! apply with a schema, an optional third value is the schema; without one, the Widget schema).
#![no_main]

use libfuzzer_sys::fuzz_target;
use staircase_apiserver::patch;
use staircase_apiserver_fuzz::{json_values, widget_schema};

const KINDS: [&str; 5] = [
    "/v1/ConfigMap",
    "/v1/Pod",
    "apps/v1/Deployment",
    "/v1/Service",
    "fuzz.example.com/v1/Widget",
];
const NOW: &str = "2024-01-01T00:00:00Z";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut values = json_values(rest, 3).into_iter();
    let (Some(doc), Some(p)) = (values.next(), values.next()) else {
        return;
    };
    let kind = KINDS[(selector / 8) as usize % KINDS.len()];
    let force = selector & 0x80 != 0;
    match selector % 8 {
        0 => {
            let mut t = doc;
            patch::merge_patch(&mut t, &p);
        }
        1 => {
            let _ = patch::json_patch(&doc, &p);
        }
        2 => {
            let _ = patch::strategic_merge_patch(&doc, &p, kind);
        }
        3 => {
            let _ = patch::apply(Some(&doc), &p, "fuzz", force, kind, NOW);
        }
        4 => {
            let _ = patch::apply(None, &p, "fuzz", force, kind, NOW);
        }
        5 => {
            let schema = values.next().unwrap_or_else(widget_schema);
            let _ =
                patch::apply_with_schema(Some(&doc), &p, "fuzz", force, kind, NOW, Some(&schema));
        }
        6 => {
            let mut new = p;
            patch::update_managed_fields(Some(&doc), &mut new, "fuzz", kind, NOW);
        }
        _ => {
            let schema = values.next().unwrap_or_else(widget_schema);
            let mut new = p;
            patch::update_managed_fields_with_schema(
                Some(&doc),
                &mut new,
                "fuzz",
                kind,
                NOW,
                Some(&schema),
            );
        }
    }
});
