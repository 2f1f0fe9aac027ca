//! Expected strings are taken from the Go sources' format strings, so a failure here means a
//! divergence from what a real kube-apiserver would answer.

use super::*;
use serde_json::json;

fn fe(reason: &str, field: &str, message: &str) -> FieldError {
    FieldError {
        reason: reason.into(),
        field: field.into(),
        message: message.into(),
    }
}

/// Wraps a `spec` schema in a typical CRD root schema.
fn root(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }
    })
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "x"}, "spec": spec})
}

/// Validates `spec` against a spec schema and returns the errors.
fn errors_for(spec_schema: Value, spec: Value) -> Vec<FieldError> {
    let mut o = obj(spec);
    validate_and_prune(&mut o, &root(spec_schema))
        .err()
        .unwrap_or_default()
}

fn one(spec_schema: Value, spec: Value) -> FieldError {
    let errs = errors_for(spec_schema, spec);
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    errs.into_iter().next().unwrap()
}

fn props(p: Value) -> Value {
    json!({"type": "object", "properties": p})
}

// ---- types ----------------------------------------------------------------------------

#[test]
fn type_mismatch_reports_json_type_name() {
    let e = one(
        props(json!({"replicas": {"type": "integer"}})),
        json!({"replicas": "abc"}),
    );
    assert_eq!(
        e,
        fe(
            "FieldValueTypeInvalid",
            "spec.replicas",
            r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        )
    );
}

#[test]
fn every_type_accepts_its_own_kind_and_rejects_others() {
    let cases = [
        ("object", json!({}), json!([]), "array"),
        ("array", json!([]), json!({}), "object"),
        ("string", json!("s"), json!(1), "integer"),
        ("integer", json!(7), json!("1"), "string"),
        ("number", json!(1.5), json!("1"), "string"),
        ("number", json!(2), json!(true), "boolean"),
        ("boolean", json!(false), json!("true"), "string"),
    ];
    for (t, good, bad, bad_name) in cases {
        let schema = props(json!({"f": {"type": t}}));
        assert!(
            errors_for(schema.clone(), json!({"f": good})).is_empty(),
            "{t} rejected its own kind"
        );
        let e = one(schema, json!({"f": bad}));
        assert_eq!(
            e.message,
            format!(
                r#"Invalid value: "{bad_name}": spec.f in body must be of type {t}: "{bad_name}""#
            )
        );
    }
}

#[test]
fn integer_accepts_float_with_zero_fraction() {
    let schema = props(json!({"n": {"type": "integer"}}));
    assert!(errors_for(schema.clone(), json!({"n": 3.0})).is_empty());
    assert!(errors_for(schema.clone(), json!({"n": -4.0})).is_empty());
    // A fractional value also fails go-openapi's int64 range re-parse, reported unattached.
    assert_eq!(
        errors_for(schema, json!({"n": 3.5})),
        vec![
            fe(
                "FieldValueTypeInvalid",
                "spec.n",
                r#"Invalid value: "number": spec.n in body must be of type integer: "number""#
            ),
            fe(
                "FieldValueInvalid",
                "<nil>",
                r#"Invalid value: "": Checked value must be of type integer (default format) in spec.n"#
            ),
        ]
    );
}

#[test]
fn null_is_pruned_for_non_nullable_and_kept_for_nullable() {
    let schema = json!({"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"},
        "b": {"type": "string", "nullable": true}
    }});
    let mut o = obj(json!({"a": null, "b": null}));
    let errs = validate_and_prune(&mut o, &root(schema)).unwrap_err();
    assert_eq!(
        errs,
        vec![fe("FieldValueRequired", "spec.a", "Required value")]
    );
    assert_eq!(o["spec"], json!({"b": null}));
}

#[test]
fn null_array_item_is_a_type_error() {
    let e = one(
        props(json!({"l": {"type": "array", "items": {"type": "string"}}})),
        json!({"l": ["a", null]}),
    );
    assert_eq!(
        e,
        fe(
            "FieldValueTypeInvalid",
            "spec.l[1]",
            r#"Invalid value: "null": spec.l[1] in body must be of type string: "null""#
        )
    );
}

#[test]
fn int_or_string() {
    let schema = props(json!({"port": {"x-kubernetes-int-or-string": true}}));
    assert!(errors_for(schema.clone(), json!({"port": 80})).is_empty());
    assert!(errors_for(schema.clone(), json!({"port": "http"})).is_empty());
    let e = one(schema, json!({"port": true}));
    assert_eq!(
        e.message,
        r#"Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
}

#[test]
fn int_or_string_with_conventional_any_of() {
    let schema = props(json!({"port": {
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": "^[a-z]+$"
    }}));
    assert!(errors_for(schema.clone(), json!({"port": 8080})).is_empty());
    assert!(errors_for(schema.clone(), json!({"port": "http"})).is_empty());
    let errs = errors_for(schema, json!({"port": "HTTP"}));
    assert_eq!(
        errs,
        vec![fe(
            "FieldValueInvalid",
            "spec.port",
            r#"Invalid value: "HTTP": spec.port in body should match '^[a-z]+$'"#
        )]
    );
}

// ---- required / enum ----------------------------------------------------------------------

#[test]
fn required_fields() {
    let schema = json!({"type": "object", "required": ["image", "name"], "properties": {
        "image": {"type": "string"}, "name": {"type": "string"}
    }});
    assert_eq!(
        errors_for(schema, json!({})),
        vec![
            fe("FieldValueRequired", "spec.image", "Required value"),
            fe("FieldValueRequired", "spec.name", "Required value")
        ]
    );
}

#[test]
fn required_at_root_and_root_meta_fields_are_exempt() {
    let schema = json!({"type": "object", "required": ["spec", "metadata", "kind"], "properties": {"spec": {"type": "object"}}});
    let mut o = json!({"apiVersion": "v1"});
    assert_eq!(
        validate_and_prune(&mut o, &schema).unwrap_err(),
        vec![fe("FieldValueRequired", "spec", "Required value")]
    );
}

#[test]
fn enum_strings_and_numbers() {
    let e = one(
        props(json!({"mode": {"type": "string", "enum": ["a", "b"]}})),
        json!({"mode": "x"}),
    );
    assert_eq!(
        e,
        fe(
            "FieldValueNotSupported",
            "spec.mode",
            r#"Unsupported value: "x": supported values: "a", "b""#
        )
    );

    let e = one(
        props(json!({"n": {"type": "integer", "enum": [1, 2]}})),
        json!({"n": 3}),
    );
    assert_eq!(
        e.message,
        r#"Unsupported value: 3: supported values: "1", "2""#
    );
    assert!(
        errors_for(
            props(json!({"n": {"type": "number", "enum": [1.5, 2]}})),
            json!({"n": 1.5})
        )
        .is_empty()
    );
    // Go converts the data to the enum value's type before comparing.
    assert!(
        errors_for(
            props(json!({"n": {"type": "number", "enum": [1.0]}})),
            json!({"n": 1})
        )
        .is_empty()
    );
}

#[test]
fn enum_objects_render_as_json() {
    let e = one(
        props(
            json!({"o": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "enum": [{"a": 1}]}}),
        ),
        json!({"o": {"a": 2}}),
    );
    assert_eq!(
        e.message,
        r#"Unsupported value: {"a":2}: supported values: "{\"a\":1}""#
    );
    assert!(errors_for(props(json!({"o": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "enum": [{"a": 1}]}})), json!({"o": {"a": 1}})).is_empty());
}

// ---- numbers ----------------------------------------------------------------------------

#[test]
fn minimum_and_maximum() {
    let schema = props(json!({"replicas": {"type": "integer", "minimum": 1, "maximum": 10}}));
    assert_eq!(
        one(schema.clone(), json!({"replicas": 0})),
        fe(
            "FieldValueInvalid",
            "spec.replicas",
            "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
        )
    );
    assert_eq!(
        one(schema.clone(), json!({"replicas": 11})).message,
        "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
    );
    assert!(errors_for(schema.clone(), json!({"replicas": 1})).is_empty());
    assert!(errors_for(schema, json!({"replicas": 10})).is_empty());
}

#[test]
fn exclusive_bounds() {
    let schema = props(
        json!({"r": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true}}),
    );
    assert_eq!(
        one(schema.clone(), json!({"r": 0})).message,
        "Invalid value: 0: spec.r in body should be greater than 0"
    );
    assert_eq!(
        one(schema.clone(), json!({"r": 1.0})).message,
        "Invalid value: 1: spec.r in body should be less than 1"
    );
    assert!(errors_for(schema, json!({"r": 0.5})).is_empty());
}

#[test]
fn float_bounds_print_like_go() {
    let schema = props(json!({"r": {"type": "number", "minimum": 0.5, "maximum": 1000000}}));
    assert_eq!(
        one(schema.clone(), json!({"r": 0.25})).message,
        "Invalid value: 0.25: spec.r in body should be greater than or equal to 0.5"
    );
    assert_eq!(
        one(schema, json!({"r": 2000000.5})).message,
        "Invalid value: 2.0000005e+06: spec.r in body should be less than or equal to 1e+06"
    );
}

#[test]
fn multiple_of() {
    let schema = props(json!({"n": {"type": "integer", "multipleOf": 5}}));
    assert!(errors_for(schema.clone(), json!({"n": 15})).is_empty());
    assert_eq!(
        one(schema, json!({"n": 7})).message,
        "Invalid value: 7: spec.n in body should be a multiple of 5"
    );
    let schema = props(json!({"x": {"type": "number", "multipleOf": 0.5}}));
    assert!(errors_for(schema.clone(), json!({"x": 1.5})).is_empty());
    assert_eq!(
        one(schema, json!({"x": 1.2})).message,
        "Invalid value: 1.2: spec.x in body should be a multiple of 0.5"
    );
}

#[test]
fn int32_range_is_checked() {
    let e = one(
        props(json!({"n": {"type": "integer", "format": "int32"}})),
        json!({"n": 3_000_000_000_i64}),
    );
    assert_eq!(
        e,
        fe(
            "FieldValueInvalid",
            "<nil>",
            r#"Invalid value: "": Checked value must be of type integer with format int32 in spec.n"#
        )
    );
}

// ---- strings ----------------------------------------------------------------------------

#[test]
fn string_lengths_and_pattern() {
    let schema = props(
        json!({"name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"}}),
    );
    assert_eq!(
        one(schema.clone(), json!({"name": "abcdef"})),
        fe(
            "FieldValueTooLong",
            "spec.name",
            "Too long: may not be more than 5 bytes"
        )
    );
    assert_eq!(
        one(schema.clone(), json!({"name": "a"})).message,
        r#"Invalid value: "a": spec.name in body should be at least 2 chars long"#
    );
    assert_eq!(
        one(schema.clone(), json!({"name": "AB"})).message,
        r#"Invalid value: "AB": spec.name in body should match '^[a-z]+$'"#
    );
    // Lengths count characters, not UTF-8 bytes.
    assert!(
        errors_for(
            props(json!({"name": {"type": "string", "maxLength": 2}})),
            json!({"name": "éé"})
        )
        .is_empty()
    );
    assert_eq!(
        one(
            props(json!({"c": {"type": "string", "maxLength": 1}})),
            json!({"c": "ab"})
        )
        .message,
        "Too long: may not be more than 1 byte"
    );
}

#[test]
fn only_first_string_failure_is_reported() {
    // go-openapi's string validator returns at the first failing keyword.
    let errs = errors_for(
        props(json!({"s": {"type": "string", "maxLength": 1, "pattern": "^x$"}})),
        json!({"s": "abc"}),
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].reason, "FieldValueTooLong");
}

#[test]
fn invalid_pattern_is_reported_not_panicking() {
    let e = one(
        props(json!({"s": {"type": "string", "pattern": "("}})),
        json!({"s": "x"}),
    );
    assert!(
        e.message.starts_with(
            r#"Invalid value: "x": spec.s in body should match '(, but pattern is invalid: "#
        ),
        "{}",
        e.message
    );
}

#[test]
fn formats() {
    let f = |format: &str, good: &str, bad: &str| {
        let schema = props(json!({"v": {"type": "string", "format": format}}));
        assert!(
            errors_for(schema.clone(), json!({"v": good})).is_empty(),
            "{format} rejected {good}"
        );
        let e = one(schema, json!({"v": bad}));
        assert_eq!(e.reason, "FieldValueTypeInvalid");
        assert_eq!(
            e.message,
            format!(r#"Invalid value: "{bad}": spec.v in body must be of type {format}: "{bad}""#)
        );
    };
    f("date-time", "2026-11-22T10:00:00Z", "yesterday");
    f(
        "date-time",
        "2026-11-22T10:00:00.123+01:00",
        "2026-11-22T25:00:00Z",
    );
    f("date", "2026-02-28", "2026-02-30");
    f("byte", "aGVsbG8=", "not base64!");
    f("uuid", "123e4567-e89b-12d3-a456-426614174000", "123");
    f("ipv4", "10.0.0.1", "10.0.0");
    f("ipv6", "fe80::1", "10.0.0.1");
    f("cidr", "10.0.0.0/8", "10.0.0.0/33");
    f("hostname", "example.com", "-bad-.com");
    f("email", "a@example.com", "not-an-email");
    f("duration", "1h30m", "soon");
    f("mac", "00:1a:2b:3c:4d:5e", "00:1a:2b");
    f("k8s-short-name", "my-name", "My_Name");
    f("uri", "https://example.com/x", "not a uri");
}

#[test]
fn unknown_and_numeric_formats_never_reject() {
    let schema = props(json!({
        "a": {"type": "string", "format": "my-custom-format"},
        "b": {"type": "integer", "format": "int64"},
        "c": {"type": "number", "format": "double"},
        "d": {"type": "string", "format": "int32"}
    }));
    assert!(errors_for(schema, json!({"a": "whatever", "b": 5, "c": 1.5, "d": "x"})).is_empty());
}

// ---- arrays / objects ---------------------------------------------------------------------

#[test]
fn array_keywords() {
    let schema = props(
        json!({"l": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "string"}}}),
    );
    assert_eq!(
        one(schema.clone(), json!({"l": ["a"]})),
        fe(
            "FieldValueInvalid",
            "spec.l",
            "Invalid value: 1: spec.l in body should have at least 2 items"
        )
    );
    assert_eq!(
        one(schema.clone(), json!({"l": ["a", "b", "c", "d"]})),
        fe(
            "FieldValueTooMany",
            "spec.l",
            "Too many: 4: must have at most 3 items"
        )
    );
    let schema =
        props(json!({"l": {"type": "array", "uniqueItems": true, "items": {"type": "integer"}}}));
    assert_eq!(
        one(schema.clone(), json!({"l": [1, 2, 1]})).message,
        r#"Invalid value: "": spec.l in body shouldn't contain duplicates"#
    );
    assert!(errors_for(schema, json!({"l": [1, 2, 3]})).is_empty());
}

#[test]
fn nested_array_item_paths() {
    let schema = props(json!({"containers": {"type": "array", "items": {
        "type": "object", "required": ["image"],
        "properties": {"name": {"type": "string"}, "image": {"type": "string"}}
    }}}));
    let errs = errors_for(
        schema,
        json!({"containers": [{"name": "a", "image": "x"}, {"name": 5}]}),
    );
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueTypeInvalid",
                "spec.containers[1].name",
                r#"Invalid value: "integer": spec.containers[1].name in body must be of type string: "integer""#
            ),
            fe(
                "FieldValueRequired",
                "spec.containers[1].image",
                "Required value"
            ),
        ]
    );
}

#[test]
fn object_property_counts() {
    let schema = props(
        json!({"m": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "string"}}}),
    );
    assert_eq!(
        one(schema.clone(), json!({"m": {}})),
        fe(
            "FieldValueInvalid",
            "spec.m",
            "Invalid value: 0: spec.m in body should have at least 1 properties"
        )
    );
    assert_eq!(
        one(schema, json!({"m": {"a": "1", "b": "2", "c": "3"}})),
        fe(
            "FieldValueTooMany",
            "spec.m",
            "Too many: 3: must have at most 2 items"
        )
    );
}

#[test]
fn additional_properties_schema_validates_values() {
    let schema = props(
        json!({"labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}}),
    );
    let mut o = obj(json!({"labels": {"a": "ok", "b": "toolong", "c": 1}}));
    let errs = validate_and_prune(&mut o, &root(schema)).unwrap_err();
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueTooLong",
                "spec.labels.b",
                "Too long: may not be more than 3 bytes"
            ),
            fe(
                "FieldValueTypeInvalid",
                "spec.labels.c",
                r#"Invalid value: "integer": spec.labels.c in body must be of type string: "integer""#
            ),
        ]
    );
    assert_eq!(
        o["spec"]["labels"],
        json!({"a": "ok", "b": "toolong", "c": 1}),
        "additionalProperties keys are kept"
    );
}

// ---- composition --------------------------------------------------------------------------

#[test]
fn any_of_failure_is_unattached_plus_best_branch() {
    let schema =
        props(json!({"x": {"type": "string", "anyOf": [{"pattern": "^a"}, {"maxLength": 1}]}}));
    assert!(errors_for(schema.clone(), json!({"x": "abc"})).is_empty());
    assert!(errors_for(schema.clone(), json!({"x": "z"})).is_empty());
    let errs = errors_for(schema, json!({"x": "zz"}));
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueInvalid",
                "<nil>",
                r#"Invalid value: "": "spec.x" must validate at least one schema (anyOf)"#
            ),
            fe(
                "FieldValueInvalid",
                "spec.x",
                r#"Invalid value: "zz": spec.x in body should match '^a'"#
            ),
        ]
    );
}

#[test]
fn one_of_all_of_not() {
    let schema =
        props(json!({"n": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]}}));
    assert!(errors_for(schema.clone(), json!({"n": -5})).is_empty());
    let errs = errors_for(schema, json!({"n": 5}));
    assert_eq!(
        errs,
        vec![fe(
            "FieldValueInvalid",
            "<nil>",
            r#"Invalid value: "": "spec.n" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        )]
    );

    let schema =
        props(json!({"n": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 10}]}}));
    let errs = errors_for(schema, json!({"n": 11}));
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueInvalid",
                "spec.n",
                "Invalid value: 11: spec.n in body should be less than or equal to 10"
            ),
            fe(
                "FieldValueInvalid",
                "<nil>",
                r#"Invalid value: "": "spec.n" must validate all the schemas (allOf)"#
            ),
        ]
    );

    let schema = props(json!({"s": {"type": "string", "not": {"enum": ["forbidden"]}}}));
    assert!(errors_for(schema.clone(), json!({"s": "fine"})).is_empty());
    assert_eq!(
        one(schema, json!({"s": "forbidden"})),
        fe(
            "FieldValueInvalid",
            "<nil>",
            r#"Invalid value: "": "spec.s" must not validate the schema (not)"#
        )
    );
}

#[test]
fn spec_requires_one_of_two_fields_via_one_of() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert!(errors_for(schema.clone(), json!({"a": "x"})).is_empty());
    let errs = errors_for(schema, json!({}));
    assert_eq!(
        errs[0].message,
        r#"Invalid value: "": "spec" must validate one and only one schema (oneOf). Found none valid"#
    );
    assert_eq!(
        errs[1],
        fe("FieldValueRequired", "spec.a", "Required value")
    );
}

// ---- collection of many errors -----------------------------------------------------------

#[test]
fn collects_all_errors_across_the_tree() {
    let schema = root(
        json!({"type": "object", "required": ["image"], "properties": {
            "replicas": {"type": "integer", "minimum": 1},
            "image": {"type": "string"},
            "mode": {"type": "string", "enum": ["a", "b"]}
        }}),
    );
    let mut o = obj(json!({"replicas": 0, "mode": "x"}));
    o["status"] = json!({"ready": "yes"});
    let errs = validate_and_prune(&mut o, &schema).unwrap_err();
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueNotSupported",
                "spec.mode",
                r#"Unsupported value: "x": supported values: "a", "b""#
            ),
            fe(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
            ),
            fe("FieldValueRequired", "spec.image", "Required value"),
            fe(
                "FieldValueTypeInvalid",
                "status.ready",
                r#"Invalid value: "string": status.ready in body must be of type boolean: "string""#
            ),
        ]
    );
}

#[test]
fn root_meta_fields_are_not_validated() {
    let schema = json!({"type": "object", "properties": {"metadata": {"type": "string"}, "kind": {"type": "integer"}}});
    let mut o =
        json!({"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "x", "whatever": 1}});
    assert_eq!(validate_and_prune(&mut o, &schema), Ok(()));
    assert_eq!(o["metadata"], json!({"name": "x", "whatever": 1}));
}

// ---- pruning ------------------------------------------------------------------------------

#[test]
fn prunes_unknown_fields_recursively() {
    let schema = root(props(json!({
        "a": {"type": "string"},
        "nested": {"type": "object", "properties": {"b": {"type": "integer"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "string"}}}}
    })));
    let mut o = obj(
        json!({"a": "x", "foo": 1, "nested": {"b": 1, "bar": true}, "list": [{"c": "y", "baz": {}}]}),
    );
    o["topLevel"] = json!("gone");
    assert_eq!(
        unknown_fields(&o, &schema),
        vec![
            "spec.foo",
            "spec.list[0].baz",
            "spec.nested.bar",
            "topLevel"
        ]
    );
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(
        o,
        json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "x"},
               "spec": {"a": "x", "nested": {"b": 1}, "list": [{"c": "y"}]}})
    );
}

#[test]
fn unknown_fields_paths_are_sorted_and_object_untouched() {
    let schema = root(props(
        json!({"list": {"type": "array", "items": {"type": "object", "properties": {}}}}),
    ));
    let o = obj(json!({"z": 1, "list": [{"x": 1}, {"y": 2}], "a": 2}));
    let before = o.clone();
    assert_eq!(
        unknown_fields(&o, &schema),
        vec!["spec.a", "spec.list[0].x", "spec.list[1].y", "spec.z"]
    );
    assert_eq!(o, before);
}

#[test]
fn preserve_unknown_fields_keeps_unknown_but_prunes_known_subtrees() {
    let schema = root(
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
            "known": {"type": "object", "properties": {"k": {"type": "string"}}}
        }}),
    );
    let mut o = obj(json!({"free": {"any": [1, {"thing": true}]}, "known": {"k": "v", "drop": 1}}));
    assert_eq!(unknown_fields(&o, &schema), vec!["spec.known.drop"]);
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(
        o["spec"],
        json!({"free": {"any": [1, {"thing": true}]}, "known": {"k": "v"}})
    );
}

#[test]
fn preserve_unknown_fields_at_root() {
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let mut o = obj(json!({"anything": 1}));
    o["extra"] = json!(true);
    assert!(unknown_fields(&o, &schema).is_empty());
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(o["extra"], json!(true));
}

#[test]
fn additional_properties_schema_prunes_inside_values() {
    let schema = root(props(
        json!({"m": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"v": {"type": "string"}}
        }}}),
    ));
    let mut o = obj(json!({"m": {"k1": {"v": "a", "junk": 1}}}));
    assert_eq!(unknown_fields(&o, &schema), vec!["spec.m.k1.junk"]);
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(o["spec"]["m"], json!({"k1": {"v": "a"}}));
}

#[test]
fn schema_less_root_prunes_everything_but_meta() {
    let schema = json!({"type": "object"});
    let mut o = obj(json!({"a": 1}));
    assert_eq!(unknown_fields(&o, &schema), vec!["spec"]);
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(
        o,
        json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "x"}})
    );
}

#[test]
fn embedded_resource_keeps_type_meta_and_requires_it() {
    let schema = root(props(json!({"template": {
        "type": "object", "x-kubernetes-embedded-resource": true,
        "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}
    }})));
    let mut o = obj(
        json!({"template": {"metadata": {"name": "n"}, "spec": {"x": "1", "y": 2}, "junk": 1}}),
    );
    assert_eq!(
        unknown_fields(&o, &schema),
        vec!["spec.template.junk", "spec.template.spec.y"]
    );
    let errs = validate_and_prune(&mut o, &schema).unwrap_err();
    assert_eq!(
        errs,
        vec![
            fe(
                "FieldValueRequired",
                "spec.template.apiVersion",
                "Required value"
            ),
            fe("FieldValueRequired", "spec.template.kind", "Required value"),
        ]
    );
    assert_eq!(
        o["spec"]["template"],
        json!({"metadata": {"name": "n"}, "spec": {"x": "1"}})
    );

    let mut ok =
        obj(json!({"template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}}));
    assert_eq!(validate_and_prune(&mut ok, &schema), Ok(()));

    let mut bad = obj(json!({"template": {"apiVersion": "a/b/c", "kind": "Not_A_Kind"}}));
    let errs = validate_and_prune(&mut bad, &schema).unwrap_err();
    assert_eq!(
        errs[0],
        fe(
            "FieldValueInvalid",
            "spec.template.apiVersion",
            r#"Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#
        )
    );
    assert!(errs[1].message.starts_with(r#"Invalid value: "Not_A_Kind": may have mixed case, but should otherwise match: a DNS-1035 label"#));
}

// ---- defaults -----------------------------------------------------------------------------

#[test]
fn defaults_fill_missing_fields_recursively() {
    let schema = root(json!({"type": "object", "default": {}, "properties": {
        "replicas": {"type": "integer", "default": 1},
        "strategy": {"type": "object", "default": {}, "properties": {"kind": {"type": "string", "default": "Rolling"}}},
        "ports": {"type": "array", "items": {"type": "object", "properties": {
            "protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}
        }}},
        "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string", "default": "d"}}}}
    }}));
    let mut o = obj(
        json!({"replicas": 3, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}], "labels": {"a": {}}}),
    );
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(
        o["spec"],
        json!({"replicas": 3, "strategy": {"kind": "Rolling"},
               "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
               "labels": {"a": {"v": "d"}}})
    );

    let mut empty = json!({"apiVersion": "v", "kind": "K", "metadata": {}});
    validate_and_prune(&mut empty, &schema).unwrap();
    assert_eq!(
        empty["spec"],
        json!({"replicas": 1, "strategy": {"kind": "Rolling"}})
    );
}

#[test]
fn defaults_replace_non_nullable_nulls_and_satisfy_required() {
    let schema = root(
        json!({"type": "object", "required": ["mode"], "properties": {
            "mode": {"type": "string", "default": "auto"},
            "opt": {"type": "string", "nullable": true, "default": "x"}
        }}),
    );
    let mut o = obj(json!({"mode": null, "opt": null}));
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(o["spec"], json!({"mode": "auto", "opt": null}));
}

#[test]
fn defaults_are_validated() {
    let schema = root(props(
        json!({"n": {"type": "integer", "default": 0, "minimum": 1}}),
    ));
    let mut o = obj(json!({}));
    assert_eq!(
        validate_and_prune(&mut o, &schema).unwrap_err()[0].field,
        "spec.n"
    );
}

// ---- messages -----------------------------------------------------------------------------

#[test]
fn invalid_status_message() {
    let errs = vec![
        fe(
            "FieldValueInvalid",
            "spec.replicas",
            "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        fe("FieldValueRequired", "spec.image", "Required value"),
    ];
    assert_eq!(
        format_invalid_message("Foo.example.com", "name", &errs),
        r#"Foo.example.com "name" is invalid: [spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1, spec.image: Required value]"#
    );
    assert_eq!(
        format_invalid_message("Foo.example.com", "name", &errs[1..]),
        r#"Foo.example.com "name" is invalid: spec.image: Required value"#
    );
    let dup = vec![errs[1].clone(), errs[1].clone()];
    assert_eq!(
        format_invalid_message("Foo", "n", &dup),
        r#"Foo "n" is invalid: spec.image: Required value"#
    );
    assert_eq!(
        format_invalid_message("Foo", "n", &[]),
        r#"Foo "n" is invalid"#
    );
}

#[test]
fn go_value_rendering() {
    use super::gofmt::{bad_value, float_v, quote};
    assert_eq!(float_v(1.0), "1");
    assert_eq!(float_v(0.1), "0.1");
    assert_eq!(float_v(123456.0), "123456");
    assert_eq!(float_v(1234567.0), "1.234567e+06");
    assert_eq!(float_v(0.0001), "0.0001");
    assert_eq!(float_v(0.00001), "1e-05");
    assert_eq!(float_v(-2.5), "-2.5");
    assert_eq!(quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
    assert_eq!(
        bad_value(&json!({"b": [1, 2.5, "<x>"], "a": null})),
        r#"{"a":null,"b":[1,2.5,"\u003cx\u003e"]}"#
    );
    assert_eq!(bad_value(&json!(1e-7)), "1e-07");
    assert_eq!(
        super::gofmt::json(&json!([1e-7, 1e21, 100.0])),
        "[1e-7,1e+21,100]"
    );
}

#[test]
fn regex_cache_reuses_compiled_patterns() {
    let a = super::format::regex("^cached$").unwrap();
    let b = super::format::regex("^cached$").unwrap();
    // The same compiled regex, search cache included (a `Regex` clone would start a new one).
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert!(super::format::regex("(").is_err());
}

#[test]
fn additional_properties_false_reports_forbidden_keys() {
    let schema = props(
        json!({"m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}),
    );
    let mut o = obj(json!({"m": {"a": "x", "b": 1}}));
    // Like the server, additionalProperties:false keeps the key through pruning and rejects it.
    assert!(unknown_fields(&o, &root(schema.clone())).is_empty());
    let errs = validate_and_prune(&mut o, &root(schema)).unwrap_err();
    assert_eq!(
        errs,
        vec![fe(
            "FieldValueInvalid",
            "spec.m",
            r#"Invalid value: "b": spec.m.b in body is a forbidden property"#
        )]
    );
}

#[test]
fn embedded_resource_below_additional_properties_uses_key_syntax() {
    let schema = root(props(
        json!({"objs": {"type": "object", "additionalProperties": {
            "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true
        }}}),
    ));
    let mut o = obj(json!({"objs": {"first": {"kind": "ConfigMap", "data": {"k": "v"}}}}));
    let errs = validate_and_prune(&mut o, &schema).unwrap_err();
    assert_eq!(
        errs,
        vec![fe(
            "FieldValueRequired",
            "spec.objs[first].apiVersion",
            "Required value"
        )]
    );
    assert_eq!(o["spec"]["objs"]["first"]["data"], json!({"k": "v"}));
}

#[test]
fn enum_go_conversion_quirks() {
    // int64 -> string conversion yields a rune in Go, so 97 matches "a" on the real server.
    assert!(
        errors_for(
            props(json!({"p": {"x-kubernetes-int-or-string": true, "enum": ["a"]}})),
            json!({"p": 97})
        )
        .is_empty()
    );
    // float64 -> int64 truncates, so 1.5 matches enum 1.
    assert!(
        errors_for(
            props(json!({"n": {"type": "number", "enum": [1]}})),
            json!({"n": 1.5})
        )
        .is_empty()
    );
    // null never matches an enum, even on a nullable field.
    let e = one(
        props(json!({"s": {"type": "string", "nullable": true, "enum": ["a"]}})),
        json!({"s": null}),
    );
    assert_eq!(
        e.message,
        r#"Unsupported value: null: supported values: "a""#
    );
}

#[test]
fn root_level_additional_property_paths_keep_go_leading_dot_in_message() {
    let schema = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let mut o = json!({"apiVersion": "v1", "kind": "K", "metadata": {}, "extra": 1});
    let errs = validate_and_prune(&mut o, &schema).unwrap_err();
    assert_eq!(
        errs,
        vec![fe(
            "FieldValueTypeInvalid",
            "extra",
            r#"Invalid value: "integer": .extra in body must be of type string: "integer""#
        )]
    );
}

#[test]
fn status_is_pruned_and_validated_like_spec() {
    let schema = root(json!({"type": "object"}));
    let mut o = obj(json!({}));
    o["status"] = json!({"ready": true, "junk": 1});
    assert_eq!(unknown_fields(&o, &schema), vec!["status.junk"]);
    validate_and_prune(&mut o, &schema).unwrap();
    assert_eq!(o["status"], json!({"ready": true}));
}

/// Found by probing the `schema` fuzz target with large inputs: `uniqueItems` compared every
/// pair: 70 s for 20 000 items, and a request body can hold far more.
#[test]
fn unique_items_of_a_large_list_are_checked_in_linear_time() {
    let schema = props(json!({"l": {"type": "array", "uniqueItems": true,
        "items": {"x-kubernetes-preserve-unknown-fields": true}}}));
    let many: Vec<Value> = (0..50_000)
        .map(|i| json!({"k": i, "v": [i, {"a": "b", "c": i}]}))
        .collect();
    let started = std::time::Instant::now();
    assert!(errors_for(schema.clone(), json!({"l": many})).is_empty());
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    // Equality is still serde_json's: object keys in any order, 1 and 1.0 distinct.
    let dup = json!({"l": [{"a": 1, "b": [2]}, 3, {"b": [2], "a": 1}]});
    assert_eq!(errors_for(schema.clone(), dup).len(), 1);
    assert!(
        errors_for(
            schema.clone(),
            json!({"l": [1, 1.0, -1, "1", [1], {"1": 1}]})
        )
        .is_empty()
    );
    assert_eq!(
        errors_for(schema, json!({"l": [null, false, null]})).len(),
        1
    );
}
