//! The options of `#[step(...)]`: `name = "..."`, `read_only`, `crate = "..."`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// The options as written; absent ones are `None` / `false`.
#[derive(Default)]
pub(crate) struct StepOptions {
    /// `name = "..."`: the step's name in traces, events and conditions (default: the fn name).
    pub(crate) name: Option<LitStr>,
    /// `read_only`: the step only looks; the runtime treats any write it makes as a violation.
    pub(crate) read_only: bool,
    /// `crate = "path"`: where the `staircase` facade is, for renamed dependencies.
    pub(crate) krate: Option<syn::Path>,
}

const EXPECTED: &str = "expected `name = \"...\"`, `read_only` or `crate = \"...\"`";

/// Parses the attribute's arguments. Every problem is pushed to `errors`; the options that were
/// understood are still returned, so the expansion can go on and report all problems at once.
pub(crate) fn parse_step_options(args: TokenStream, errors: &mut Errors) -> StepOptions {
    let mut options = StepOptions::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(syn::Error::new(e.span(), format!("{e}; {EXPECTED}")));
            return options;
        }
    };
    // Spans of options already seen, to report a repeated one at its second occurrence.
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        let key = meta.path().get_ident().map(ToString::to_string);
        let Some(key) = key.filter(|k| matches!(k.as_str(), "name" | "read_only" | "crate")) else {
            errors.error_at(meta.path(), format!("unknown `#[step]` option; {EXPECTED}"));
            continue;
        };
        if seen.contains(&key) {
            errors.error_at(meta.path(), format!("duplicate `#[step]` option `{key}`"));
            continue;
        }
        seen.push(key.clone());
        match (key.as_str(), &meta) {
            ("read_only", Meta::Path(_)) => options.read_only = true,
            ("read_only", _) => errors.error_at(
                &meta,
                "`read_only` is a flag: write `#[step(read_only)]`, without a value",
            ),
            ("name", Meta::NameValue(nv)) => match string_value(&nv.value) {
                Some(lit) if lit.value().trim().is_empty() => {
                    errors.error_at(lit, "a step name cannot be empty");
                }
                Some(lit) => options.name = Some(lit.clone()),
                None => errors.error_at(&nv.value, "expected a string: `name = \"my step\"`"),
            },
            ("crate", Meta::NameValue(nv)) => {
                match string_value(&nv.value) {
                    Some(lit) => match lit.parse::<syn::Path>() {
                        Ok(path) => options.krate = Some(path),
                        Err(_) => errors
                            .error_at(lit, "expected a path, such as `crate = \"::staircase\"`"),
                    },
                    None => errors
                        .error_at(&nv.value, "expected a string: `crate = \"::my_staircase\"`"),
                }
            }
            (key, _) => errors.error_at(&meta, format!("expected `{key} = \"...\"`")),
        }
    }
    options
}

fn string_value(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        _ => None,
    }
}
