//! `staircase!(Foo => [a, b], cleanup => [x])`: parse, validate, expand to the typed chain.
//!
//! Users call the facade's `macro_rules! staircase`, which passes its `$crate` as the first
//! tokens (`$crate; Foo => [...]`) so that the expansion names the facade however it is imported.

pub(crate) mod expand;
pub(crate) mod parse;
pub(crate) mod validate;

use proc_macro2::TokenStream;
use quote::quote;

/// The whole `staircase!` macro on proc-macro2 streams.
pub(crate) fn staircase(input: TokenStream) -> TokenStream {
    let input: parse::StaircaseInput = match syn::parse2(input) {
        Ok(input) => input,
        // Only the error: `compile_error!` as an expression has the error type, which the
        // compiler accepts anywhere without further errors (such as at `Operator::new(.., stairs)`).
        Err(e) => return e.to_compile_error(),
    };
    let generated = expand::expand(&input);
    match validate::validate(&input) {
        Ok(()) => generated,
        // Problems such as a repeated step leave a valid chain: expand it anyway, so that the only
        // errors are the ones reported here.
        Err(e) => {
            let errors = e.to_compile_error();
            quote!({ #errors #generated })
        }
    }
}
