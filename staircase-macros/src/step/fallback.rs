//! What `#[step]` emits next to the function when the function is not a valid step.
//!
//! The compile errors are emitted anyway; this stub only keeps them from multiplying: a step type
//! of the function's name that fits in any staircase, so `staircase!` lists naming the broken step
//! do not add "cannot find struct" or mismatch errors of their own (thiserror's `fallback.rs` idea).

use proc_macro2::TokenStream;
use quote::quote;

use super::expand::{struct_for, with_cfgs};
use super::parse::StepFn;
use crate::attr::StepOptions;

/// The stub step type for `func`, accepting any resource, state and data.
pub(crate) fn stub(func: &StepFn, options: &StepOptions) -> TokenStream {
    let krate = options
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::staircase));
    let p = quote!(#krate::__private);
    let ident = &func.sig.ident;
    let name = ident.to_string();
    let cfgs = super::validate::cfgs(func);
    // In one `const _` block, so that the `#[cfg]`s apply to all of them (only on errors, so its
    // cost does not matter).
    let impls = quote! {
        const _: () = {
            impl<K> #p::ForResource<K> for #ident {
                type This = Self;
            }
            impl<S> #p::WithState<S> for #ident {
                type This = Self;
            }
            impl<D> #p::TakesData<D> for #ident {
                type This = Self;
            }
            impl<K, S, D> #p::Step<K, S, D> for #ident
            where
                K: #p::Send + #p::Sync + 'static,
                S: #p::Send + #p::Sync + 'static,
                D: #p::Send + 'static,
            {
                type Output = D;
                fn info(&self) -> #p::StepInfo {
                    #p::StepInfo { name: #name, read_only: false }
                }
                fn run<'a>(
                    &'a self,
                    _: &'a K,
                    _: &'a #p::Context<S>,
                    _: D,
                ) -> #p::BoxFuture<'a, #p::Result<#p::Outcome<D>>> {
                    ::core::unreachable!("`#[step]` reported a compile error for this step")
                }
            }
        };
    };
    with_cfgs(&cfgs, [struct_for(&func.vis, ident), impls])
}
