//! Reads the item under `#[step]`; anything but a function is rejected here.
//!
//! Only the attributes, visibility and signature are parsed: the body is kept as the tokens it
//! is (the function is emitted exactly as written), which spares parsing every statement of
//! every step on each build.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Item, Signature, Visibility};

/// A function as `#[step]` needs it: everything but the statements of its body.
pub(crate) struct StepFn {
    /// Outer attributes written after `#[step]` (`#[cfg]`, docs, …).
    pub(crate) attrs: Vec<Attribute>,
    /// Its visibility.
    pub(crate) vis: Visibility,
    /// Its signature.
    pub(crate) sig: Signature,
}

impl Parse for StepFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let body: Group = input.parse()?;
        if body.delimiter() != Delimiter::Brace || !input.is_empty() {
            return Err(input.error("expected the function's body"));
        }
        Ok(StepFn { attrs, vis, sig })
    }
}

/// The function under the attribute, or an error spanned at the item's keyword and name.
pub(crate) fn parse_item(item: TokenStream) -> syn::Result<StepFn> {
    if let Ok(func) = syn::parse2::<StepFn>(item.clone()) {
        return Ok(func);
    }
    // Not a plain function: parse the whole item to say what it is instead.
    let item: Item = syn::parse2(item)?;
    let head = match &item {
        Item::Fn(func) => {
            return Ok(StepFn {
                attrs: func.attrs.clone(),
                vis: func.vis.clone(),
                sig: func.sig.clone(),
            });
        }
        Item::Struct(s) => head(s.struct_token, &s.ident),
        Item::Enum(e) => head(e.enum_token, &e.ident),
        Item::Union(u) => head(u.union_token, &u.ident),
        Item::Trait(t) => head(t.trait_token, &t.ident),
        Item::Mod(m) => head(m.mod_token, &m.ident),
        Item::Const(c) => head(c.const_token, &c.ident),
        Item::Static(s) => head(s.static_token, &s.ident),
        Item::Type(t) => head(t.type_token, &t.ident),
        Item::Impl(i) => i.impl_token.to_token_stream(),
        other => other.to_token_stream(),
    };
    Err(syn::Error::new_spanned(
        head,
        "`#[step]` goes on an `async fn` that takes the resource, such as \
         `async fn name(res: &Foo) -> Result<Outcome>`",
    ))
}

/// The keyword and name of an item: where an error about the whole item is shown.
fn head(keyword: impl ToTokens, ident: &syn::Ident) -> TokenStream {
    quote!(#keyword #ident)
}
