//! `#[derive(StepStatus)]`: a status struct that embeds the runtime's `StepStatus` lends it out
//! (`AsRef<StepStatus>`), which gives its resource `HasStepStatus` through the runtime's blanket
//! impl. Parse (the struct), validate (exactly one such field, flattened), expand (the impl).

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
    match field(&input) {
        Ok((member, ty)) => expand(&input, member, ty),
        Err(e) => e.to_compile_error(),
    }
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

fn expand(input: &DeriveInput, member: TokenStream, ty: &Type) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // The field's type as written, so it resolves however the user imported it.
    quote_spanned! {ty.span()=>
        impl #impl_generics ::core::convert::AsRef<#ty> for #ident #ty_generics #where_clause {
            fn as_ref(&self) -> &#ty {
                &self.#member
            }
        }
    }
}
