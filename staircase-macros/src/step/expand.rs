//! Generates, next to the function, the step type of the same name and its trait impls.
//!
//! The step type is a braced empty struct: it lives only in the type namespace, so it does not
//! clash with the function, and `staircase!` can build it as `name {}`.
//!
//! Besides `Step`, the type implements the witness traits `ForResource`, `WithState` and
//! `TakesData` for exactly the types of its parameters; `staircase!` checks each step against
//! them first, so a step placed where it does not fit is reported with the message of the one
//! witness that fails, at the step. `Step` itself is implemented for the concrete resource, state
//! and data types the function takes (generic only over what it does not take), so the impl has
//! no bounds to prove and needs no conversions.
//!
//! The expansion is kept small, because it is redone on every build of the user's crate
//! (incremental ones included): items at the top level (no `const _` block), no impls beyond
//! the ones `staircase!` needs (see [`struct_for`]), no closures, and the function re-emitted as
//! the tokens it was written with.
//!
//! Spans matter as much as tokens here: each piece is spanned at the user's token it comes from
//! (the resource type, the return type, the function's name), so that whatever the compiler
//! reports about it is shown there, once, rather than at `#[step]`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::{Output, StepDef};

/// The step type and its impls.
pub(crate) fn expand(def: &StepDef<'_>) -> TokenStream {
    let g = Generator::new(def);
    let impls = [
        g.resource_impl(),
        g.state_impl(),
        g.data_impl(),
        g.step_impl(),
    ];
    with_cfgs(
        &def.cfgs,
        std::iter::once(struct_for(def.vis, def.ident)).chain(impls),
    )
}

/// `items`, each under the function's `#[cfg]`s (none, for nearly every step).
pub(crate) fn with_cfgs(
    cfgs: &[&syn::Attribute],
    items: impl IntoIterator<Item = TokenStream>,
) -> TokenStream {
    items
        .into_iter()
        .map(|item| quote!(#(#cfgs)* #item))
        .collect()
}

/// What the pieces of the expansion share.
struct Generator<'a> {
    def: &'a StepDef<'a>,
    /// `<facade>::__private`, spanned at the call site.
    p: TokenStream,
    /// Generic parameters of the `Step` impl; a user type could only clash by being named so.
    s: syn::Ident,
    d: syn::Ident,
    /// The step hands down nothing of its own (it returns `Result<Outcome>`) and did not consume
    /// what it received (took no data, or took it by `&`): the data it received passes on to the
    /// steps after it.
    passes_through: bool,
}

impl<'a> Generator<'a> {
    fn new(def: &'a StepDef<'a>) -> Self {
        Generator {
            def,
            p: Self::private(def, Span::call_site()),
            s: format_ident!("__S"),
            d: format_ident!("__D"),
            passes_through: matches!(def.output, Output::Unit | Output::Invalid)
                && def.data.as_ref().is_none_or(|data| data.by_ref),
        }
    }

    /// `<facade>::__private` spanned at `span`: an expression or item using it then spans from
    /// the user's token to the user's token, and is reported there.
    fn private(def: &StepDef<'_>, span: Span) -> TokenStream {
        let krate = &def.krate;
        respan(quote!(#krate::__private), span)
    }

    fn p_at(&self, span: Span) -> TokenStream {
        Self::private(self.def, span)
    }

    /// The state type of the `Step` impl: the context's, or any (`__S`) without a context.
    fn state_ty(&self) -> TokenStream {
        match &self.def.state {
            Some(state) => quote!(#state),
            None => {
                let s = &self.s;
                quote!(#s)
            }
        }
    }

    /// The data type of the `Step` impl: the data parameter's, or any (`__D`) without one.
    fn data_ty(&self) -> TokenStream {
        match &self.def.data {
            Some(data) => {
                let ty = data.ty;
                quote!(#ty)
            }
            None => {
                let d = &self.d;
                quote!(#d)
            }
        }
    }

    /// `ForResource<Foo>`, at the resource type.
    fn resource_impl(&self) -> TokenStream {
        let (ident, resource) = (self.def.ident, self.def.resource);
        let p = self.p_at(resource.span());
        quote_spanned! {resource.span()=>
            impl #p::ForResource<#resource> for #ident {
                type This = Self;
            }
        }
    }

    /// Where a witness impl for an optional parameter goes: at the parameter's type when the
    /// function has it (no generics), else at the call site and generic over `any`. Returns the
    /// span, the impl's generics and `__private` spanned there.
    fn witness_at(
        &self,
        param: Option<Span>,
        any: &syn::Ident,
    ) -> (Span, Option<TokenStream>, TokenStream) {
        match param {
            Some(span) => (span, None, self.p_at(span)),
            None => (
                Span::call_site(),
                Some(quote!(<#any>)),
                self.p_at(Span::call_site()),
            ),
        }
    }

    /// `WithState<S>` at the context's state type; for every state without a context parameter.
    fn state_impl(&self) -> TokenStream {
        let ident = self.def.ident;
        let (span, generics, p) =
            self.witness_at(self.def.state.as_ref().map(|s| s.span()), &self.s);
        let state = self.state_ty();
        quote_spanned! {span=>
            impl #generics #p::WithState<#state> for #ident {
                type This = Self;
            }
        }
    }

    /// `TakesData<T>` at the data parameter's type; for any data without a data parameter.
    fn data_impl(&self) -> TokenStream {
        let ident = self.def.ident;
        let (span, generics, p) =
            self.witness_at(self.def.data.as_ref().map(|d| d.ty.span()), &self.d);
        let data = self.data_ty();
        quote_spanned! {span=>
            impl #generics #p::TakesData<#data> for #ident {
                type This = Self;
            }
        }
    }

    /// `Step<Foo, S, D>` for the types the function takes (any state and data it does not take).
    fn step_impl(&self) -> TokenStream {
        let Generator { def, p, s, d, .. } = self;
        let (ident, resource) = (def.ident, def.resource);
        let state = self.state_ty();
        let data = self.data_ty();
        let mut params = Vec::new();
        if def.state.is_none() {
            params.push(quote!(#s));
        }
        if def.data.is_none() {
            // Handed on (or dropped) by the step's future, which must be `Send`.
            params.push(quote!(#d: #p::Send + 'static));
        }
        let generics = (!params.is_empty()).then(|| quote!(<#(#params),*>));
        // The item, with its bounds (`Send + 'static`), at the return type.
        let output = if self.passes_through {
            quote!(type Output = #data;)
        } else {
            let ret = def.ret;
            match def.output {
                Output::Data(data) => quote_spanned!(ret.span()=> type Output = #data;),
                _ => {
                    let p = self.p_at(ret.span());
                    quote_spanned!(ret.span()=> type Output = <#ret as #p::StepReturn>::Output;)
                }
            }
        };
        let name = &def.name;
        let read_only = def.read_only;
        let run = self.run_fn();
        quote! {
            impl #generics #p::Step<#resource, #state, #data> for #ident {
                #output

                fn info(&self) -> #p::StepInfo {
                    #p::StepInfo { name: #name, read_only: #read_only }
                }

                #run
            }
        }
    }

    /// `Step::run`: calls the function and hands on the data.
    fn run_fn(&self) -> TokenStream {
        let def = self.def;
        let ident = def.ident;
        let resource = def.resource;
        let resource_var = local("resource");
        let ctx_var = local(if def.state.is_some() { "ctx" } else { "_ctx" });
        let input_used = self.passes_through || def.data.is_some();
        let input_var = local(if input_used { "input" } else { "_input" });
        let state = self.state_ty();
        let data = self.data_ty();

        let mut args = vec![quote!(#resource_var)];
        if def.state.is_some() {
            args.push(quote!(#ctx_var));
        }
        match &def.data {
            Some(data) if data.by_ref => args.push(quote!(&#input_var)),
            Some(_) => args.push(quote!(#input_var)),
            None => {}
        }

        // The call, the function's name included, at the return type: a type that is not
        // `Result<Outcome<T>, E>` is reported there with `StepReturn`'s message. So is the
        // whole `run` (its signature mentions `Self::Output`), so that it is reported once.
        let ret_span = def.ret.span();
        let p_ret = self.p_at(ret_span);
        let ident_at_ret = syn::Ident::new(&ident.to_string(), ret_span);
        let call = quote_spanned!(ret_span=> #ident_at_ret(#(#args),*));
        let boxed = match &def.data {
            // The function borrows the data it is handed on with: both live in one future, an
            // `async` block, at the function's name (a future that is not `Send` is reported
            // there). Every other step boxes the function's own future through an adapter
            // (see `staircase::step_future`), with no coroutine of its own to compile.
            Some(data) if data.by_ref => {
                let p_ident = self.p_at(ident.span());
                let call = quote_spanned! {ret_span=>
                    #p_ret::StepReturn::into_result(#call.await)
                };
                let body = if self.passes_through {
                    quote_spanned!(ret_span=> #p_ret::pass_on(#call, #input_var))
                } else {
                    call
                };
                quote_spanned!(ident.span()=> #p_ident::Box::pin(async move { #body }))
            }
            // At the return type, with the call: whatever the compiler has to say about the
            // function's future (its return type, a future that is not `Send`) is said once,
            // there.
            _ if self.passes_through => {
                quote_spanned!(ret_span=> #p_ret::boxed_passing_on(#call, #input_var))
            }
            _ => quote_spanned!(ret_span=> #p_ret::boxed(#call)),
        };
        quote_spanned! {ret_span=>
            fn run<'a>(
                &'a self,
                #resource_var: &'a #resource,
                #ctx_var: &'a #p_ret::Context<#state>,
                #input_var: #data,
            ) -> #p_ret::BoxFuture<'a, #p_ret::Result<#p_ret::Outcome<Self::Output>>> {
                #boxed
            }
        }
    }
}

/// `struct name {}` for function `ident` (also used by the fallback on errors), documented so
/// that `#![deny(missing_docs)]` in the user's crate is satisfied (and exempt from the lints
/// that ask public types for `Copy` and `Debug` impls).
///
/// Nothing else: the type is a marker the user never handles, and every item here is compiled
/// again on each build of the user's crate. `Clone` and `Copy` impls alone cost rustc about 1.4
/// million instructions per step (10 % of a 20-step crate's incremental rebuild, measured with
/// callgrind), `Debug` another 0.3 million; a staircase is rebuilt by calling the function that
/// builds it, not by cloning it.
pub(crate) fn struct_for(vis: &syn::Visibility, ident: &syn::Ident) -> TokenStream {
    let doc = format!("Step type generated by `#[step]` for the function `{ident}`.");
    quote_spanned! {ident.span()=>
        #[doc = #doc]
        #[allow(
            non_camel_case_types,
            dead_code,
            missing_copy_implementations,
            missing_debug_implementations
        )]
        #vis struct #ident {}
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
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
