//! String `format` checks and the compiled-regex cache.
//!
//! kube-apiserver only enforces the formats it lists in `supportedVersionedFormats`; every
//! other format is silently dropped from the schema before validation, so unknown formats
//! must never reject a value.

use regex::Regex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Upper bound on cached patterns: schemas are few, but a long-lived test process could see
/// generated patterns, and an unbounded cache would be a slow leak.
const REGEX_CACHE_LIMIT: usize = 1024;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Result<Arc<Regex>, String>>> = RefCell::new(HashMap::new());
}

/// Compiles `pattern` once per thread and hands out the cached `Regex` behind an `Arc`. Not a
/// `Regex` clone: a clone shares the compiled program but starts with an empty search cache,
/// which its first match fills again (with `format: date-time` on a status condition, that made
/// `is_date_time` 30 % of the embedded server's CPU per write). Compile errors are cached too,
/// so a bad pattern costs one attempt.
pub(super) fn regex(pattern: &str) -> Result<Arc<Regex>, String> {
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(r) = cache.get(pattern) {
            return r.clone();
        }
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        let compiled = Regex::new(pattern).map(Arc::new).map_err(|e| e.to_string());
        cache.insert(pattern.to_string(), compiled.clone());
        compiled
    })
}

fn matches(pattern: &str, s: &str) -> bool {
    regex(pattern).is_ok_and(|re| re.is_match(s))
}

/// go-openapi looks formats up with dashes removed (`date-time` == `datetime`).
pub(super) fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// Formats kube-apiserver (1.34+) validates on string fields, normalized.
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "k8sshortname",
    "k8slongname",
];

/// The format that survives apiextensions' `StripUnsupportedFormatsPostProcessor` for a schema
/// with the given `type` list; `""` when the server would ignore it.
pub(super) fn effective<'a>(format: &'a str, types: &[&str]) -> &'a str {
    if format.is_empty() {
        return "";
    }
    let single = if types.len() == 1 { types[0] } else { "" };
    let keep = match single {
        "" | "string" => SUPPORTED.contains(&normalize(format).as_str()),
        "integer" => format == "int32" || format == "int64",
        "number" => format == "float" || format == "double",
        _ => false,
    };
    if keep { format } else { "" }
}

/// Whether a string format is one the string-format validator knows (int32 etc. are not).
pub(super) fn is_string_format(format: &str) -> bool {
    SUPPORTED.contains(&normalize(format).as_str())
}

/// Validates `s` against a supported string format. Unknown formats pass.
pub(super) fn check(format: &str, s: &str) -> bool {
    match normalize(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => parse_ip_sloppy(s) && s.contains('.'),
        "ipv6" => parse_ip_sloppy(s) && s.contains(':'),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => matches(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid3" => matches(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid4" => matches(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "uuid5" => matches(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s,
        ),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => (s.len() == 9 || s.len() == 11) && matches(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", s),
        "hexcolor" => matches(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "rgbcolor" => matches(
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            s,
        ),
        "byte" => matches(
            r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$",
            s,
        ),
        "date" => is_date(s),
        "datetime" => is_date_time(s),
        "duration" => is_duration(s),
        "k8sshortname" => s.len() <= 63 && matches(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", s),
        "k8slongname" => {
            s.len() <= 253
                && matches(
                    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                    s,
                )
        }
        _ => true,
    }
}

/// `time.Parse("2006-01-02", s)`: exactly zero-padded fields and a real calendar day.
fn is_date(s: &str) -> bool {
    matches(r"^\d{4}-\d{2}-\d{2}$", s) && jiff::civil::Date::strptime("%Y-%m-%d", s).is_ok()
}

/// strfmt's `IsDateTime`, which is a lexical check rather than a full RFC 3339 parse.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Ok(re) = regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
    else {
        return false;
    };
    match re.captures(parts[1]) {
        Some(c) => &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59",
        None => false,
    }
}

/// Go's `time.ParseDuration`, else strfmt's lenient scala-style fallback (any `<n> <unit>`
/// fragment with a recognised unit makes the whole string valid).
fn is_duration(s: &str) -> bool {
    if matches(r"^[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$", s) {
        return true;
    }
    let Ok(re) = regex(r"((\d+)\s*([A-Za-zµ]+))") else {
        return false;
    };
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    re.captures_iter(s).any(|c| {
        let unit = c[3].trim().to_lowercase();
        UNITS.iter().any(|variants| {
            let last = variants.len() - 1;
            variants
                .iter()
                .enumerate()
                .any(|(i, v)| (i == last && unit.starts_with(v)) || unit.eq_ignore_ascii_case(v))
        })
    })
}

fn is_hostname(s: &str) -> bool {
    matches(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
        s,
    ) && s.len() <= 255
        && s.split('.').all(|p| p.len() <= 63)
}

/// IPv4 dotted quads with leading zeros allowed (`netutils.ParseIPSloppy`), or IPv6.
fn parse_ip_sloppy(s: &str) -> bool {
    is_ipv4_sloppy(s) || s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn is_ipv4_sloppy(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return false;
    }
    let Ok(bits) = prefix.parse::<u32>() else {
        return false;
    };
    if is_ipv4_sloppy(ip) {
        bits <= 32
    } else {
        ip.parse::<std::net::Ipv6Addr>().is_ok() && bits <= 128
    }
}

/// `net.ParseMAC`: 6, 8 or 20 octets, colon/dash separated or dotted 4-hex-digit groups.
fn is_mac(s: &str) -> bool {
    let octets = |sep: char| {
        let parts: Vec<&str> = s.split(sep).collect();
        matches!(parts.len(), 6 | 8 | 20)
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let dotted = || {
        let parts: Vec<&str> = s.split('.').collect();
        matches!(parts.len(), 3 | 4 | 10)
            && parts
                .iter()
                .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    octets(':') || octets('-') || dotted()
}

/// `url.ParseRequestURI`: an absolute URI (`scheme:…`) or an absolute path, no spaces.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    s.starts_with('/') || matches(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", s)
}

/// Approximation of Go's `mail.ParseAddress`: `local@domain`, optionally as `Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let addr = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*";
    matches(&format!("^{addr}$"), s) || matches(&format!(r"^[^<>]*<{addr}>$"), s)
}

fn isbn_digits(s: &str) -> String {
    s.chars().filter(|c| *c != ' ' && *c != '-').collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if !matches(r"^[0-9]{9}[0-9X]$", &d) {
        return false;
    }
    let sum: u32 = d
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let v = if c == 'X' {
                10
            } else {
                c.to_digit(10).unwrap_or(0)
            };
            (i as u32 + 1) * v
        })
        .sum();
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if !matches(r"^[0-9]{13}$", &d) {
        return false;
    }
    let sum: u32 = d
        .chars()
        .enumerate()
        .map(|(i, c)| c.to_digit(10).unwrap_or(0) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// govalidator's credit-card check: known issuer prefixes plus the Luhn checksum.
fn is_credit_card(s: &str) -> bool {
    let d: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    if !matches(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$",
        &d,
    ) {
        return false;
    }
    let mut sum = 0;
    for (i, c) in d.chars().rev().enumerate() {
        let mut v = c.to_digit(10).unwrap_or(0);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}
