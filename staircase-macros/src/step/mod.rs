//! `#[step]`: parse the attribute and the function, validate the signature, expand to a step type.
//!
//! The function itself is always emitted unchanged, also when it has errors, so that it stays
//! callable (unit tests, IDEs) and the user sees only the errors of the attribute.

pub(crate) mod expand;
mod fallback;
pub(crate) mod parse;
pub(crate) mod validate;

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::parse_step_options;
use crate::errors::Errors;

/// The whole `#[step]` macro on proc-macro2 streams (testable outside a proc-macro context).
pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = parse_step_options(args, &mut errors);
    let func = match parse::parse_item(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            // Not a function: nothing to generate a step type for.
            errors.push(e);
            let errors = errors.finish().err().map(|e| e.to_compile_error());
            return quote!(#item #errors);
        }
    };
    let def = validate::validate(&func, &options, &mut errors);
    match (errors.finish(), def) {
        (Ok(()), Some(def)) => {
            let generated = expand::expand(&def);
            // The function exactly as written (its tokens, not a re-print of them).
            quote!(#item #generated)
        }
        (result, _) => {
            let errors = result.err().map(|e| e.to_compile_error());
            // Under `impl` (it takes `self`), a struct cannot be defined next to the function.
            let in_impl = matches!(func.sig.inputs.first(), Some(syn::FnArg::Receiver(_)));
            let stub = (!in_impl).then(|| fallback::stub(&func, &options));
            quote!(#item #errors #stub)
        }
    }
}
