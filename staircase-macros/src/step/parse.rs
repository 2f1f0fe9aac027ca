//! Reads the item under `#[step]`; anything but a function is rejected here.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Item, ItemFn};

/// The function under the attribute, or an error spanned at the item's keyword and name.
pub(crate) fn parse_item(item: TokenStream) -> syn::Result<ItemFn> {
    let item: Item = syn::parse2(item)?;
    let head = match &item {
        Item::Fn(func) => return Ok(func.clone()),
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
