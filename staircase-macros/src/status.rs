//! `#[derive(StepStatus)]`: a status struct that embeds the runtime's `StepStatus` lends it out
//! (`LendsStepStatus`), which gives its resource `HasStepStatus` through the runtime's blanket
//! impl. Parse (the struct and its `#[step_status(crate = "...")]`), validate (exactly one such
//! field, flattened), expand (the impl).

use proc_macro2::TokenStream;
use quote::{ToTokens, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Type};

use crate::errors::Errors;

const SHAPE: &str = "`#[derive(StepStatus)]` needs a field `#[serde(flatten)] steps: StepStatus`";

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    let krate = crate_path(&input, &mut errors);
    let field = field(&input);
    match (errors.finish(), field) {
        (Ok(()), Ok((member, ty))) => expand(&input, &krate, member, ty),
        (Err(mut e), Err(f)) => {
            e.combine(f);
            e.to_compile_error()
        }
        (Err(e), _) | (_, Err(e)) => e.to_compile_error(),
    }
}

/// `#[step_status(crate = "path")]`: where the `staircase` facade is, for renamed dependencies.
fn crate_path(input: &DeriveInput, errors: &mut Errors) -> syn::Path {
    let mut krate: syn::Path = syn::parse_quote!(::staircase);
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("step_status"))
    {
        let parsed = attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("crate") {
                return Err(meta.error("expected `crate = \"...\"`"));
            }
            let lit: syn::LitStr = meta.value()?.parse()?;
            krate = lit.parse().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    "expected a path, such as `crate = \"::staircase\"`",
                )
            })?;
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    krate
}

/// The field holding the `StepStatus`: its name (or index) and type.
fn field(input: &DeriveInput) -> syn::Result<(TokenStream, &Type)> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            format!("{SHAPE}: it derives for a struct"),
        ));
    };
    let mut errors = Errors::default();
    let mut found = Vec::new();
    for (i, f) in data.fields.iter().enumerate() {
        if !is_step_status(&f.ty) {
            continue;
        }
        if matches!(data.fields, Fields::Named(_)) && !flattened(f) {
            errors.error_at(
                f,
                "add `#[serde(flatten)]`: the runtime writes `observedGeneration` and \
                 `conditions` at the top of the status, where the resource must read them",
            );
        }
        let member = match &f.ident {
            Some(ident) => ident.to_token_stream(),
            None => syn::Index::from(i).to_token_stream(),
        };
        found.push((member, &f.ty));
    }
    if found.len() > 1 {
        for (_, ty) in &found[1..] {
            errors.error_at(ty, "only one field of a status may be the `StepStatus`");
        }
    }
    errors.finish()?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| syn::Error::new(input.ident.span(), SHAPE))
}

/// `StepStatus` or a path ending in it (`staircase::StepStatus`).
fn is_step_status(ty: &Type) -> bool {
    match ty {
        Type::Group(g) => is_step_status(&g.elem),
        Type::Path(p) => {
            p.qself.is_none()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "StepStatus")
        }
        _ => false,
    }
}

/// `#[serde(flatten)]` among the field's serde attributes.
fn flattened(f: &syn::Field) -> bool {
    f.attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .any(|a| {
            let mut flat = false;
            let _ = a.parse_nested_meta(|meta| {
                flat |= meta.path.is_ident("flatten");
                // Skip a value (`rename = "x"`) so the rest still parses.
                if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                }
                Ok(())
            });
            flat
        })
}

fn expand(input: &DeriveInput, krate: &syn::Path, member: TokenStream, ty: &Type) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // The field's type as written, so a field that is not the runtime's `StepStatus` after all
    // is reported at the field.
    quote_spanned! {ty.span()=>
        impl #impl_generics #krate::LendsStepStatus for #ident #ty_generics #where_clause {
            fn step_status(&self) -> &#ty {
                &self.#member
            }
        }
    }
}
