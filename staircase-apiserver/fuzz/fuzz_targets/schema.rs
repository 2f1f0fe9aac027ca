//! `staircase_apiserver::schema` on arbitrary JSON: the input is a selector byte, then an object
//! and, optionally, a schema and an old object as JSON values one after the other. Without a
//! schema (or with selector bit 0 set) the object is checked against the Widget schema; the
//! schema's CEL rules run too (with the old object as `oldSelf`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use staircase_apiserver::schema;
use staircase_apiserver_fuzz::{json_values, widget_schema};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut values = json_values(rest, 3).into_iter();
    let Some(object) = values.next() else {
        return;
    };
    let given = values.next();
    let old = values.next();
    let schema = match given {
        Some(s) if selector & 1 == 0 => s,
        _ => widget_schema(),
    };
    let _ = schema::unknown_fields(&object, &schema);
    let mut pruned = object.clone();
    match schema::validate_and_prune(&mut pruned, &schema) {
        Ok(()) => {
            let _ = schema::validate_rules(&pruned, old.as_ref(), &schema);
        }
        Err(errors) => {
            let _ = schema::format_invalid_message("Widget.fuzz.example.com", "fuzz", &errors);
        }
    }
    if selector & 2 != 0 {
        let _ = schema::validate_rules(&object, old.as_ref(), &schema);
    }
});
