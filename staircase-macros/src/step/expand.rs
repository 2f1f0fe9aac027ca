//! Generates, next to the function, the step type of the same name and its trait impls.
//!
//! The step type is a braced empty struct: it lives only in the type namespace, so it does not
//! clash with the function, and `staircase!` can build it as `name {}`.
//!
//! Besides `Step`, the type implements the witness traits `ForResource`, `WithState` and
//! `TakesData` for exactly the types of its parameters. `Step` is implemented for every
//! resource, state and data type but requires those witnesses, so a step placed where it does not
//! fit is reported with the message of the one witness that fails, at the step.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::StepDef;

/// The step type and its impls.
pub(crate) fn expand(def: &StepDef<'_>) -> TokenStream {
    // The facade's hidden module, with the spans of the user's tokens it is used with, so that an
    // error about an expression using it is shown at those tokens (not at the attribute).
    let krate = &def.krate;
    let p_at = |span: Span| respan(quote!(#krate::__private), span);
    let p = quote!(#krate::__private);
    let ident = def.ident;
    let resource = def.resource;
    let resource_impl = {
        let p = p_at(resource.span());
        quote_spanned! {resource.span()=>
            impl #p::ForResource<#resource> for #ident {
                type This = Self;
                type Resource = #resource;
                fn resource(k: &#resource) -> &#resource { k }
            }
        }
    };
    let struct_def = struct_for(def.vis, ident);

    // Generic parameters of the `Step` impl; a user type could only clash by being named so.
    let k = format_ident!("__K");
    let s = format_ident!("__S");
    let d = format_ident!("__D");

    // `WithState`: for the context's state type, or for every state without a context parameter.
    let (state_impl, state_bound) = match &def.state {
        Some(state) => (
            {
                let p = p_at(state.span());
                quote_spanned! {state.span()=>
                impl #p::WithState<#state> for #ident {
                    type This = Self;
                    type State = #state;
                    fn context(c: &#p::Context<#state>) -> &#p::Context<#state> { c }
                }
                }
            },
            quote!(#p::WithState<#s, State = #state>),
        ),
        None => (
            quote! {
                impl<#s> #p::WithState<#s> for #ident {
                    type This = Self;
                    type State = #s;
                    fn context(c: &#p::Context<#s>) -> &#p::Context<#s> { c }
                }
            },
            quote!(#p::WithState<#s>),
        ),
    };

    // `TakesData`: for the data parameter's type, or for any data without one.
    let (data_impl, data_bound) = match &def.data {
        Some(data) => {
            let ty = data.ty;
            (
                {
                    let p = p_at(ty.span());
                    quote_spanned! {ty.span()=>
                    impl #p::TakesData<#ty> for #ident {
                        type This = Self;
                        type Data = #ty;
                        fn by_ref(d: &#ty) -> &#ty { d }
                        fn by_value(d: #ty) -> #ty { d }
                    }
                    }
                },
                quote!(#p::TakesData<#d, Data = #ty>),
            )
        }
        None => (
            quote! {
                impl<#d> #p::TakesData<#d> for #ident {
                    type This = Self;
                    type Data = #d;
                    fn by_ref(d: &#d) -> &#d { d }
                    fn by_value(d: #d) -> #d { d }
                }
            },
            quote!(#p::TakesData<#d>),
        ),
    };

    // A step that hands down nothing of its own passes on the data it received, so it reaches
    // the next step asking for it — unless the step consumed it (took it by value).
    let passes_through = def.returns_unit && def.data.as_ref().is_none_or(|data| data.by_ref);
    let ret = def.ret;
    let ret_span = ret.span();
    let p_ret = p_at(ret_span);
    // The whole item at the return type: its bounds (`Send + 'static`) are checked at the item.
    let output = if passes_through {
        quote!(type Output = #d;)
    } else {
        quote_spanned!(ret_span=> type Output = <#ret as #p_ret::StepReturn>::Output;)
    };

    // Arguments of the call, each through its witness (the identity on the types it accepts).
    let resource_var = local("resource");
    let ctx_var = local(if def.state.is_some() { "ctx" } else { "_ctx" });
    let input_var = local(if passes_through || def.data.is_some() {
        "input"
    } else {
        "_input"
    });
    let mut args = vec![quote!(<#ident as #p::ForResource<#k>>::resource(#resource_var))];
    if def.state.is_some() {
        args.push(quote!(<#ident as #p::WithState<#s>>::context(#ctx_var)));
    }
    match &def.data {
        Some(data) if data.by_ref => {
            args.push(quote!(<#ident as #p::TakesData<#d>>::by_ref(&#input_var)))
        }
        Some(_) => args.push(quote!(<#ident as #p::TakesData<#d>>::by_value(#input_var))),
        None => {}
    }
    // Spanned at the return type, the function's name too: a type that is not
    // `Result<Outcome<T>, E>` is reported there, once, with `StepReturn`'s message.
    let ident_at_ret = syn::Ident::new(&ident.to_string(), ret_span);
    let call = quote_spanned! {ret_span=>
        #p_ret::StepReturn::into_result(#ident_at_ret(#(#args),*).await)
    };
    let body = if passes_through {
        quote!(#call.map(move |out| out.map(move |()| #input_var)))
    } else {
        call
    };
    // Spanned at the function's name: a future that is not `Send` is reported there.
    let p_ident = p_at(ident.span());
    let boxed = quote_spanned! {ident.span()=>
        #p_ident::Box::pin(async move { #body })
    };

    // Its signature mentions `Self::Output`, which the compiler checks at the whole function: at
    // the return type too, so that a wrong return type is reported there once.
    let run = quote_spanned! {ret_span=>
        fn run<'a>(
            &'a self,
            #resource_var: &'a #k,
            #ctx_var: &'a #p_ret::Context<#s>,
            #input_var: #d,
        ) -> #p_ret::BoxFuture<'a, #p_ret::Result<#p_ret::Outcome<Self::Output>>> {
            #boxed
        }
    };

    let name = &def.name;
    let read_only = def.read_only;
    quote! {
        #struct_def

        const _: () = {
            #resource_impl

            #state_impl

            #data_impl

            impl<#k, #s, #d> #p::Step<#k, #s, #d> for #ident
            where
                #ident: #p::ForResource<#k, Resource = #resource> + #state_bound + #data_bound,
                #k: #p::Send + #p::Sync + 'static,
                #s: #p::Send + #p::Sync + 'static,
                #d: #p::Send + 'static,
            {
                #output

                fn info(&self) -> #p::StepInfo {
                    #p::StepInfo { name: #name, read_only: #read_only }
                }

                #run
            }
        };
    }
}

/// `struct name {}` for function `ident` (also used by the fallback on errors), documented so
/// that `#![deny(missing_docs)]` in the user's crate is satisfied.
pub(crate) fn struct_for(vis: &syn::Visibility, ident: &syn::Ident) -> TokenStream {
    let doc = format!("Step type generated by `#[step]` for the function `{ident}`.");
    quote_spanned! {ident.span()=>
        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #[derive(
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::fmt::Debug,
            ::core::default::Default,
        )]
        #vis struct #ident {}
    }
}

/// `tokens` with every span set to `span`.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

/// A local name of the generated code, resolved at the call site like the user's tokens.
fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::call_site())
}
