//! Value validation, mirroring kube-openapi's `SchemaValidator` as driven by apiextensions
//! (`ValidateCustomResource` + `kubeOpenAPIResultToFieldErrors`), and the embedded-resource
//! checks of `schema/objectmeta`.
//!
//! Internally every error carries go-openapi's "name": the dotted data path with `[i]` for
//! array items, rooted at `""`. The cause `field` is that name without a leading dot, or
//! `<nil>` for errors the server attaches to no field (anyOf/oneOf/allOf/not and range
//! checks), because that is what a nil `*field.Path` prints.

use super::FieldError;
use super::format;
use super::gofmt::{self, Num};
use super::node::{self, is_meta};
use serde_json::{Map, Value};

/// Errors in server order, de-duplicated like go-openapi's `Result.AddErrors`.
#[derive(Default)]
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, e: FieldError) {
        if !self.0.contains(&e) {
            self.0.push(e);
        }
    }

    fn extend(&mut self, other: Errors) {
        for e in other.0 {
            self.push(e);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

fn field_of(name: &str) -> String {
    if name.is_empty() || name == "." {
        "<nil>".to_string()
    } else {
        name.strip_prefix('.').unwrap_or(name).to_string()
    }
}

fn err(reason: &str, field: String, message: String) -> FieldError {
    FieldError {
        reason: reason.to_string(),
        field,
        message,
    }
}

fn invalid(name: &str, bad: String, detail: String) -> FieldError {
    err(
        "FieldValueInvalid",
        field_of(name),
        format!("Invalid value: {bad}: {detail}"),
    )
}

fn type_invalid(name: &str, bad: String, detail: String) -> FieldError {
    err(
        "FieldValueTypeInvalid",
        field_of(name),
        format!("Invalid value: {bad}: {detail}"),
    )
}

/// go-openapi `InvalidType` with string data: `<name> in body must be of type <t>: "<v>"`.
fn invalid_type(name: &str, type_name: &str, value: &str) -> FieldError {
    let q = gofmt::quote(value);
    type_invalid(
        name,
        q.clone(),
        format!("{name} in body must be of type {type_name}: {q}"),
    )
}

/// Errors that are not go-openapi `Validation`s (composition keywords, range checks) reach
/// the cause list as `field.Invalid(nil, "", msg)`.
fn unattached(message: String) -> FieldError {
    err(
        "FieldValueInvalid",
        "<nil>".to_string(),
        format!("Invalid value: \"\": {message}"),
    )
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn too_many(name: &str, actual: i64, max: i64) -> FieldError {
    err(
        "FieldValueTooMany",
        field_of(name),
        format!(
            "Too many: {actual}: must have at most {}",
            plural(max, "item", "items")
        ),
    )
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type name and go-openapi format that the type validator infers from data.
fn data_type(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::Number(_) => match Num::of(v) {
            Some(Num::Int(_)) => ("integer", "int64"),
            _ => ("number", "float64"),
        },
        Value::String(_) => ("string", ""),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

/// swag's `IsFloat64AJSONInteger`, tolerance and all: the server accepts `3.0` (and even
/// `3.0000000001`) for `type: integer`.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0; // 2^53 - 1
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f == f.trunc() {
        return true;
    }
    if f < 0.0 {
        // Go converts through uint64 here, which never lands near a negative value.
        return false;
    }
    let g = f.trunc();
    if g == 0.0 {
        return false;
    }
    (f - g) / (f + g) < 1e-9
}

/// Validates the whole (already pruned and defaulted) object. `root` skips the server-owned
/// top-level keys, which the real server validates separately as ObjectMeta/TypeMeta.
pub(super) fn validate_root(object: &Value, schema: &Value) -> Errors {
    let mut errs = Errors::default();
    // Same order as the CR strategy: embedded ObjectMeta/TypeMeta checks, then the schema.
    embedded(object, schema, "", true, &mut errs);
    validate(object, schema, "", true, &mut errs);
    errs
}

fn validate(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Errors) {
    if !s.is_object() {
        return;
    }
    let types = node::types(s);
    if v.is_null() {
        if !types.is_empty() && !types.contains(&"null") && !node::nullable(s) {
            errs.push(invalid_type(path, &types.join(","), "null"));
        }
        check_enum(v, s, path, errs);
        return;
    }
    let fmt = format::effective(node::str_field(s, "format"), &types);

    check_type(v, &types, fmt, path, errs);
    check_composition(v, s, path, root, errs);
    if let Value::String(text) = v {
        check_string(text, s, path, errs);
        if format::is_string_format(fmt) && !format::check(fmt, text) {
            errs.push(invalid_type(path, fmt, text));
        }
    }
    if let Some(n) = Num::of(v) {
        check_number(n, s, &types, fmt, path, errs);
    }
    if let Value::Array(items) = v {
        check_array(items, s, path, errs);
    }
    check_enum(v, s, path, errs);
    if let Value::Object(map) = v {
        check_object(map, s, path, root, errs);
    }
}

/// go-openapi's `typeValidator`, including its format/type cross-check quirks.
fn check_type(v: &Value, types: &[&str], fmt: &str, path: &str, errs: &mut Errors) {
    if types.is_empty() && fmt.is_empty() {
        return;
    }
    let (sch_type, data_format) = data_type(v);
    let has = |t: &str| types.contains(&t);
    let is_float_int = sch_type == "number"
        && Num::of(v).is_some_and(|n| is_json_integer(n.as_f64()))
        && has("integer");
    let is_int_float = sch_type == "integer" && has("number");
    let stringish = matches!(v, Value::String(_) | Value::Array(_));

    if !fmt.is_empty() {
        let format_compatible = has(sch_type) || data_format == fmt || is_float_int || is_int_float;
        if !stringish && !format_compatible {
            errs.push(invalid_type(path, fmt, data_format));
            return;
        }
        // A string format on a non-numeric schema settles strings and arrays without a
        // type check at all (go-openapi quirk: `type: object, format: date` accepts "x").
        if stringish && !(has("number") || has("integer")) {
            return;
        }
    }
    if !(has(sch_type) || is_float_int || is_int_float) {
        errs.push(invalid_type(path, &types.join(","), sch_type));
    }
}

/// Validates `v` against a sub-schema in isolation (same path), for composition keywords.
fn sub_result(v: &Value, s: &Value, path: &str, root: bool) -> Errors {
    let mut e = Errors::default();
    validate(v, s, path, root, &mut e);
    e
}

/// allOf/anyOf/oneOf/not. When a branch choice fails, the server also reports the errors
/// of the "best" branch; it ranks branches by go-openapi's MatchCount, approximated here
/// as the branch with the fewest errors (first wins ties).
fn check_composition(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Errors) {
    let q = gofmt::quote(path);

    let any_of = node::list(s, "anyOf");
    if !any_of.is_empty() {
        let mut best: Option<Errors> = None;
        let mut ok = false;
        for branch in any_of {
            let e = sub_result(v, branch, path, root);
            if e.len() == 0 {
                ok = true;
                break;
            }
            if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if !ok {
            errs.push(unattached(format!(
                "{q} must validate at least one schema (anyOf)"
            )));
            if let Some(b) = best {
                errs.extend(b);
            }
        }
    }

    let one_of = node::list(s, "oneOf");
    if !one_of.is_empty() {
        let mut best: Option<Errors> = None;
        let mut valid = 0;
        for branch in one_of {
            let e = sub_result(v, branch, path, root);
            if e.len() == 0 {
                valid += 1;
                best = None;
                continue;
            }
            if valid == 0 && best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if valid != 1 {
            let detail = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            errs.push(unattached(format!(
                "{q} must validate one and only one schema (oneOf). {detail}"
            )));
            if let Some(b) = best {
                errs.extend(b);
            }
        }
    }

    let all_of = node::list(s, "allOf");
    if !all_of.is_empty() {
        let mut valid = 0;
        for branch in all_of {
            let e = sub_result(v, branch, path, root);
            if e.len() == 0 {
                valid += 1;
            }
            errs.extend(e);
        }
        if valid != all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            errs.push(unattached(format!(
                "{q} must validate all the schemas (allOf){none}"
            )));
        }
    }

    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && sub_result(v, not, path, root).len() == 0
    {
        errs.push(unattached(format!(
            "{q} must not validate the schema (not)"
        )));
    }
}

/// go-openapi's `stringValidator` stops at the first failing keyword.
fn check_string(text: &str, s: &Value, path: &str, errs: &mut Errors) {
    // Lengths count runes, although the server's TooLong message says "bytes".
    let len = text.chars().count() as i64;
    if let Some(max) = node::i64_field(s, "maxLength")
        && len > max
    {
        errs.push(err(
            "FieldValueTooLong",
            field_of(path),
            format!(
                "Too long: may not be more than {}",
                plural(max, "byte", "bytes")
            ),
        ));
        return;
    }
    if let Some(min) = node::i64_field(s, "minLength")
        && len < min
    {
        errs.push(invalid(
            path,
            gofmt::quote(text),
            format!("{path} in body should be at least {min} chars long"),
        ));
        return;
    }
    let pattern = node::str_field(s, "pattern");
    if !pattern.is_empty() {
        let failure = match format::regex(pattern) {
            Ok(re) if re.is_match(text) => None,
            Ok(_) => Some(pattern.to_string()),
            Err(e) => Some(format!("{pattern}, but pattern is invalid: {e}")),
        };
        if let Some(shown) = failure {
            errs.push(invalid(
                path,
                gofmt::quote(text),
                format!("{path} in body should match '{shown}'"),
            ));
        }
    }
}

/// go-openapi's `IsValueValidAgainstRange`: a value (or a schema bound) that does not fit the
/// declared integer/number format. Only reachable with `format: int32`/`float` or with
/// fractional/huge numbers on `type: integer`.
fn range_error(n: Num, type_name: &str, fmt: &str, prefix: &str, path: &str) -> Option<FieldError> {
    let fits = match type_name {
        "integer" => {
            let as_int = match n {
                Num::Int(i) => Some(i),
                // Go formats the float with 'f' and re-parses it as an integer.
                Num::Float(f)
                    if f.is_finite() && f == f.trunc() && f.abs() < 9.223_372_036_854_776e18 =>
                {
                    Some(f as i64)
                }
                Num::Float(_) => None,
            };
            match (as_int, fmt) {
                (Some(i), "int32") => i32::try_from(i).is_ok(),
                (Some(_), _) => true,
                (None, _) => false,
            }
        }
        "number" if fmt == "float" => n.as_f64().abs() <= f64::from(f32::MAX),
        _ => true,
    };
    if fits {
        return None;
    }
    let msg = if fmt.is_empty() {
        format!("{prefix} value must be of type {type_name} (default format) in {path}")
    } else {
        format!("{prefix} value must be of type {type_name} with format {fmt} in {path}")
    };
    Some(unattached(msg))
}

/// go-openapi's `numberValidator`: integer data is compared in int64 against the truncated
/// bound (so messages print `1`, not `1.0`), float data in float64.
fn check_number(n: Num, s: &Value, types: &[&str], fmt: &str, path: &str, errs: &mut Errors) {
    let type_name = match types {
        ["integer"] => "integer",
        ["number"] => "number",
        _ => "",
    };
    let num_fmt = if type_name.is_empty() { "" } else { fmt };
    let bad = n.go_v();

    if let Some(e) = range_error(n, type_name, num_fmt, "Checked", path) {
        errs.push(e);
    }

    if let Some(factor) = node::f64_field(s, "multipleOf") {
        let range = range_error(Num::Float(factor), type_name, num_fmt, "MultipleOf", path);
        let native = range.is_none();
        if let Some(e) = range {
            errs.push(e);
        }
        let positive = |shown: String| {
            invalid(
                path,
                shown.clone(),
                format!("factor MultipleOf declared for {path} must be positive: {shown}"),
            )
        };
        let not_multiple = |shown: String| {
            invalid(
                path,
                bad.clone(),
                format!("{path} in body should be a multiple of {shown}"),
            )
        };
        match (n, native) {
            (Num::Int(i), true) => {
                let f = factor as i64;
                if f <= 0 {
                    errs.push(positive(f.to_string()));
                } else if i % f != 0 {
                    errs.push(not_multiple(f.to_string()));
                }
            }
            _ => {
                let data = n.as_f64();
                if factor <= 0.0 {
                    errs.push(positive(gofmt::float_v(factor)));
                } else {
                    let mult = if factor < 1.0 {
                        1.0 / factor * data
                    } else {
                        data / factor
                    };
                    if !is_json_integer(mult) {
                        errs.push(not_multiple(gofmt::float_v(factor)));
                    }
                }
            }
        }
    }

    let mut bound = |key: &str, excl_key: &str, prefix: &str, is_min: bool| {
        let Some(limit) = node::f64_field(s, key) else {
            return;
        };
        let exclusive = s.get(excl_key).and_then(Value::as_bool).unwrap_or(false);
        let range = range_error(Num::Float(limit), type_name, num_fmt, prefix, path);
        let native = range.is_none();
        if let Some(e) = range {
            errs.push(e);
        }
        let (violated, shown) = match (n, native) {
            (Num::Int(i), true) => {
                let l = limit as i64;
                let v = if is_min {
                    i < l || (exclusive && i == l)
                } else {
                    i > l || (exclusive && i == l)
                };
                (v, l.to_string())
            }
            _ => {
                let d = n.as_f64();
                let v = if is_min {
                    d < limit || (exclusive && d == limit)
                } else {
                    d > limit || (exclusive && d == limit)
                };
                (v, gofmt::float_v(limit))
            }
        };
        if violated {
            let relation = match (is_min, exclusive) {
                (true, false) => "greater than or equal to",
                (true, true) => "greater than",
                (false, false) => "less than or equal to",
                (false, true) => "less than",
            };
            errs.push(invalid(
                path,
                bad.clone(),
                format!("{path} in body should be {relation} {shown}"),
            ));
        }
    };
    bound("minimum", "exclusiveMinimum", "Minimum boundary", true);
    bound("maximum", "exclusiveMaximum", "Maximum boundary", false);
}

fn check_array(items: &[Value], s: &Value, path: &str, errs: &mut Errors) {
    if let Some(item_schema) = node::items(s) {
        for (i, v) in items.iter().enumerate() {
            validate(v, item_schema, &format!("{path}[{i}]"), false, errs);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = node::i64_field(s, "minItems")
        && size < min
    {
        errs.push(invalid(
            path,
            size.to_string(),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = node::i64_field(s, "maxItems")
        && size > max
    {
        errs.push(too_many(path, size, max));
    }
    if s.get("uniqueItems")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && has_duplicates(items)
    {
        errs.push(invalid(
            path,
            "\"\"".into(),
            format!("{path} in body shouldn't contain duplicates"),
        ));
    }
}

/// Whether any two items are equal. serde_json equality keeps 1 and 1.0 distinct, as Go's
/// DeepEqual on int64/float64 does. Items are bucketed by a hash first: comparing every pair
/// took minutes for the tens of thousands of items a request body can hold.
fn has_duplicates(items: &[Value]) -> bool {
    use std::collections::HashMap;
    use std::hash::{DefaultHasher, Hash, Hasher};
    /// Agrees with `==` on `Value`: objects hash their entries in any order.
    fn hash(v: &Value, h: &mut DefaultHasher) {
        std::mem::discriminant(v).hash(h);
        match v {
            Value::Null => {}
            Value::Bool(b) => b.hash(h),
            Value::Number(n) => n.to_string().hash(h),
            Value::String(s) => s.hash(h),
            Value::Array(a) => {
                a.len().hash(h);
                a.iter().for_each(|x| hash(x, h));
            }
            Value::Object(m) => {
                let mut sum = 0u64;
                for (k, x) in m {
                    let mut e = DefaultHasher::new();
                    k.hash(&mut e);
                    hash(x, &mut e);
                    sum = sum.wrapping_add(e.finish());
                }
                (m.len(), sum).hash(h);
            }
        }
    }
    let mut seen: HashMap<u64, Vec<&Value>> = HashMap::with_capacity(items.len());
    for item in items {
        let mut h = DefaultHasher::new();
        hash(item, &mut h);
        let bucket = seen.entry(h.finish()).or_default();
        if bucket.contains(&item) {
            return true;
        }
        bucket.push(item);
    }
    false
}

/// Go's `reflect.DeepEqual` over decoded JSON: numbers of different Go types never match.
fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => Num::of(a) == Num::of(b),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| deep_equal(p, q)))
        }
        _ => a == b,
    }
}

/// go-openapi's enum check: the data is converted to the enum value's Go type first when Go
/// allows it. That makes `1.5` match enum `1` (float→int truncates) and `97` match `"a"`
/// (int→string yields a rune), exactly as the real server accepts them.
fn enum_matches(data: &Value, candidate: &Value) -> bool {
    match (data, candidate) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(_), Value::Number(_)) => match (Num::of(data), Num::of(candidate)) {
            (Some(Num::Int(d)), Some(Num::Int(c))) => d == c,
            (Some(Num::Float(d)), Some(Num::Int(c))) => d as i64 == c,
            (Some(d), Some(Num::Float(c))) => d.as_f64() == c,
            _ => false,
        },
        (Value::Number(_), Value::String(c)) => match Num::of(data) {
            Some(Num::Int(i)) => {
                let rune = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                c.chars().eq(std::iter::once(rune))
            }
            _ => false,
        },
        _ => deep_equal(data, candidate),
    }
}

fn check_enum(v: &Value, s: &Value, path: &str, errs: &mut Errors) {
    let values = node::list(s, "enum");
    if values.is_empty() || values.iter().any(|c| enum_matches(v, c)) {
        return;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|c| match c {
            Value::String(t) => gofmt::quote(t),
            other => gofmt::quote(&gofmt::json(other)),
        })
        .collect();
    errs.push(err(
        "FieldValueNotSupported",
        field_of(path),
        format!(
            "Unsupported value: {}: supported values: {}",
            gofmt::bad_value(v),
            supported.join(", ")
        ),
    ));
}

fn check_object(map: &Map<String, Value>, s: &Value, path: &str, root: bool, errs: &mut Errors) {
    let size = map.len() as i64;
    if let Some(min) = node::i64_field(s, "minProperties")
        && size < min
    {
        errs.push(invalid(
            path,
            size.to_string(),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = node::i64_field(s, "maxProperties")
        && size > max
    {
        errs.push(too_many(path, size, max));
    }
    let skip = |k: &str| root && is_meta(k);
    let known = |k: &str| node::property(s, k).is_some();

    match node::additional(s) {
        Some(node::Additional::Bool(false)) => {
            for k in map.keys().filter(|k| !known(k) && !skip(k)) {
                errs.push(invalid(
                    path,
                    gofmt::quote(k),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        }
        Some(node::Additional::Schema(ap)) => {
            for (k, v) in map.iter().filter(|(k, _)| !known(k) && !skip(k)) {
                // go-openapi joins with "." even at the root, hence ".key" there.
                validate(v, ap, &format!("{path}.{k}"), false, errs);
            }
        }
        _ => {}
    }

    if let Some(props) = node::properties(s) {
        for (k, ps) in props.iter().filter(|(k, _)| !skip(k)) {
            if let Some(v) = map.get(k) {
                validate(v, ps, &child(path, k), false, errs);
            }
        }
    }

    for k in node::list(s, "required").iter().filter_map(Value::as_str) {
        if !map.contains_key(k) && !skip(k) {
            errs.push(err(
                "FieldValueRequired",
                field_of(&format!("{path}.{k}")),
                "Required value".into(),
            ));
        }
    }
}

const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// `schema/objectmeta.Validate`: apiVersion/kind of every `x-kubernetes-embedded-resource`.
/// Paths use `field.Path` notation (`[key]` below additionalProperties).
fn embedded(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Errors) {
    match v {
        Value::Object(map) => {
            if !root && node::embedded(s) {
                check_embedded_type_meta(map, path, errs);
            }
            for (k, child_value) in map {
                if root && is_meta(k) {
                    continue;
                }
                if let Some(p) = node::property(s, k) {
                    embedded(child_value, p, &child(path, k), false, errs);
                } else if let Some(a) = node::additional(s).and_then(|a| a.schema()) {
                    embedded(child_value, a, &format!("{path}[{k}]"), false, errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node::items(s) {
                for (i, item) in items.iter().enumerate() {
                    embedded(item, item_schema, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        _ => {}
    }
}

fn check_embedded_type_meta(map: &Map<String, Value>, path: &str, errs: &mut Errors) {
    let api_version_path = child(path, "apiVersion");
    let kind_path = child(path, "kind");
    for (key, p) in [("apiVersion", &api_version_path), ("kind", &kind_path)] {
        if !map.contains_key(key) {
            errs.push(err(
                "FieldValueRequired",
                p.clone(),
                "Required value".into(),
            ));
        }
    }
    let field_invalid = |p: &str, v: &Value, detail: &str| {
        err(
            "FieldValueInvalid",
            p.to_string(),
            format!("Invalid value: {}: {detail}", gofmt::bad_value(v)),
        )
    };
    if let Some(v) = map.get("apiVersion") {
        match v.as_str() {
            None => errs.push(field_invalid(&api_version_path, v, "must be a string")),
            Some("") => errs.push(field_invalid(&api_version_path, v, "must not be empty")),
            Some(av) if av != "/" && av.matches('/').count() > 1 => errs.push(field_invalid(
                &api_version_path,
                v,
                &format!("unexpected GroupVersion string: {av}"),
            )),
            Some(_) => {}
        }
    }
    if let Some(v) = map.get("kind") {
        match v.as_str() {
            None => errs.push(field_invalid(&kind_path, v, "must be a string")),
            Some("") => errs.push(field_invalid(&kind_path, v, "must not be empty")),
            Some(kind) => {
                let lower = kind.to_lowercase();
                let mut problems = Vec::new();
                if lower.len() > 63 {
                    problems.push("must be no more than 63 characters".to_string());
                }
                let ok = format::regex("^[a-z]([-a-z0-9]*[a-z0-9])?$")
                    .is_ok_and(|re| re.is_match(&lower));
                if !ok {
                    problems.push(DNS1035_MSG.to_string());
                }
                if !problems.is_empty() {
                    errs.push(field_invalid(
                        &kind_path,
                        v,
                        &format!(
                            "may have mixed case, but should otherwise match: {}",
                            problems.join(",")
                        ),
                    ));
                }
            }
        }
    }
}
