//! Generates, next to the function, the step type of the same name and its trait impls.
//!
//! The step type is a braced empty struct: it lives only in the type namespace, so it does not
//! clash with the function, and `staircase!` can build it as `name {}`.
//!
//! Besides `Step`, the type implements the witness traits `ForResource`, `WithState` and
//! `TakesData` for exactly the types of its parameters. `Step` is implemented for every
//! resource, state and data type but requires those witnesses, so a step placed where it does
//! not fit is reported with the message of the one witness that fails, at the step.
//!
//! Spans matter as much as tokens here: each piece is spanned at the user's token it comes from
//! (the resource type, the return type, the function's name), so that whatever the compiler
//! reports about it is shown there, once, rather than at `#[step]`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::validate::StepDef;

/// The step type and its impls.
pub(crate) fn expand(def: &StepDef<'_>) -> TokenStream {
    let g = Generator::new(def);
    let struct_def = struct_for(def.vis, def.ident);
    let resource_impl = g.resource_impl();
    let state_impl = g.state_impl();
    let data_impl = g.data_impl();
    let step_impl = g.step_impl();
    let cfgs = &def.cfgs;
    quote! {
        #(#cfgs)*
        #struct_def

        #(#cfgs)*
        const _: () = {
            #resource_impl
            #state_impl
            #data_impl
            #step_impl
        };
    }
}

/// What the pieces of the expansion share.
struct Generator<'a> {
    def: &'a StepDef<'a>,
    /// `<facade>::__private`, spanned at the call site.
    p: TokenStream,
    /// Generic parameters of the `Step` impl; a user type could only clash by being named so.
    k: syn::Ident,
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
            k: format_ident!("__K"),
            s: format_ident!("__S"),
            d: format_ident!("__D"),
            passes_through: def.returns_unit && def.data.as_ref().is_none_or(|data| data.by_ref),
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

    /// `ForResource<Foo>`, at the resource type.
    fn resource_impl(&self) -> TokenStream {
        let (ident, resource) = (self.def.ident, self.def.resource);
        let p = self.p_at(resource.span());
        quote_spanned! {resource.span()=>
            impl #p::ForResource<#resource> for #ident {
                type This = Self;
                type Resource = #resource;
                fn resource(k: &#resource) -> &#resource { k }
            }
        }
    }

    /// `WithState<S>` at the context's state type; for every state without a context parameter.
    fn state_impl(&self) -> TokenStream {
        let (ident, s) = (self.def.ident, &self.s);
        match &self.def.state {
            Some(state) => {
                let p = self.p_at(state.span());
                quote_spanned! {state.span()=>
                    impl #p::WithState<#state> for #ident {
                        type This = Self;
                        type State = #state;
                        fn context(c: &#p::Context<#state>) -> &#p::Context<#state> { c }
                    }
                }
            }
            None => {
                let p = &self.p;
                quote! {
                    impl<#s> #p::WithState<#s> for #ident {
                        type This = Self;
                        type State = #s;
                        fn context(c: &#p::Context<#s>) -> &#p::Context<#s> { c }
                    }
                }
            }
        }
    }

    /// `TakesData<T>` at the data parameter's type; for any data without a data parameter.
    fn data_impl(&self) -> TokenStream {
        let (ident, d) = (self.def.ident, &self.d);
        match &self.def.data {
            Some(data) => {
                let ty = data.ty;
                let p = self.p_at(ty.span());
                quote_spanned! {ty.span()=>
                    impl #p::TakesData<#ty> for #ident {
                        type This = Self;
                        type Data = #ty;
                        fn by_ref(d: &#ty) -> &#ty { d }
                        fn by_value(d: #ty) -> #ty { d }
                    }
                }
            }
            None => {
                let p = &self.p;
                quote! {
                    impl<#d> #p::TakesData<#d> for #ident {
                        type This = Self;
                        type Data = #d;
                        fn by_ref(d: &#d) -> &#d { d }
                        fn by_value(d: #d) -> #d { d }
                    }
                }
            }
        }
    }

    /// `Step<K, S, D>` for every `K, S, D` the witnesses accept.
    fn step_impl(&self) -> TokenStream {
        let Generator {
            def, p, k, s, d, ..
        } = self;
        let (ident, resource) = (def.ident, def.resource);
        let state_bound = match &def.state {
            Some(state) => quote!(#p::WithState<#s, State = #state>),
            None => quote!(#p::WithState<#s>),
        };
        let data_bound = match &def.data {
            Some(data) => {
                let ty = data.ty;
                quote!(#p::TakesData<#d, Data = #ty>)
            }
            None => quote!(#p::TakesData<#d>),
        };
        // The item, with its bounds (`Send + 'static`), at the return type.
        let output = if self.passes_through {
            quote!(type Output = #d;)
        } else {
            let ret = def.ret;
            let p = self.p_at(ret.span());
            quote_spanned!(ret.span()=> type Output = <#ret as #p::StepReturn>::Output;)
        };
        let name = &def.name;
        let read_only = def.read_only;
        let run = self.run_fn();
        quote! {
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
        }
    }

    /// `Step::run`: calls the function with each argument passed through its witness (the
    /// identity on the types it accepts), and hands on the data.
    fn run_fn(&self) -> TokenStream {
        let Generator {
            def, p, k, s, d, ..
        } = self;
        let ident = def.ident;
        let resource_var = local("resource");
        let ctx_var = local(if def.state.is_some() { "ctx" } else { "_ctx" });
        let input_used = self.passes_through || def.data.is_some();
        let input_var = local(if input_used { "input" } else { "_input" });

        let mut args = vec![quote!(<#ident as #p::ForResource<#k>>::resource(#resource_var))];
        if def.state.is_some() {
            args.push(quote!(<#ident as #p::WithState<#s>>::context(#ctx_var)));
        }
        match &def.data {
            Some(data) if data.by_ref => {
                args.push(quote!(<#ident as #p::TakesData<#d>>::by_ref(&#input_var)));
            }
            Some(_) => args.push(quote!(<#ident as #p::TakesData<#d>>::by_value(#input_var))),
            None => {}
        }

        // The call, the function's name included, at the return type: a type that is not
        // `Result<Outcome<T>, E>` is reported there with `StepReturn`'s message. So is the
        // whole `run` (its signature mentions `Self::Output`), so that it is reported once.
        let ret_span = def.ret.span();
        let p_ret = self.p_at(ret_span);
        let ident_at_ret = syn::Ident::new(&ident.to_string(), ret_span);
        let call = quote_spanned! {ret_span=>
            #p_ret::StepReturn::into_result(#ident_at_ret(#(#args),*).await)
        };
        let body = if self.passes_through {
            quote!(#call.map(move |out| out.map(move |()| #input_var)))
        } else {
            call
        };
        // The future at the function's name: one that is not `Send` is reported there.
        let p_ident = self.p_at(ident.span());
        let boxed = quote_spanned! {ident.span()=>
            #p_ident::Box::pin(async move { #body })
        };
        quote_spanned! {ret_span=>
            fn run<'a>(
                &'a self,
                #resource_var: &'a #k,
                #ctx_var: &'a #p_ret::Context<#s>,
                #input_var: #d,
            ) -> #p_ret::BoxFuture<'a, #p_ret::Result<#p_ret::Outcome<Self::Output>>> {
                #boxed
            }
        }
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
