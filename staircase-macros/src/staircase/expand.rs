//! Expands `staircase!` into the typed chain `Start::new().then(a {}).then(b {})`, each step
//! first passing the checks `check_resource`, `check_state` and `check_data` of the facade.
//!
//! Everything generated for a step is spanned at the step's name in the list, so a step that does
//! not fit is reported there, with the message of the check it fails; and because each check
//! hands the step on through a projection that stays unresolved when the check fails, the
//! compiler reports nothing else for the rest of the chain.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

use super::parse::{Entry, StaircaseInput, StepList};

/// The expression building the `Staircase`.
pub(crate) fn expand(input: &StaircaseInput) -> TokenStream {
    let krate = &input.krate;
    // A local alias of the facade's hidden module. `$crate` cannot be re-spanned (its span says
    // which crate it means), and every token generated for a step must carry that step's span.
    let private = Ident::new("__staircase_private", Span::call_site());
    let resource = &input.resource;
    let main_var = Ident::new("__main", Span::mixed_site());
    let main = chain(
        quote!(#private::Start::<#resource, _>::new()),
        input,
        &input.main,
        &private,
    );
    let staircase = match &input.cleanup {
        None => quote!(#private::Staircase::new(#main_var)),
        Some(cleanup) => {
            // Starts from the main chain's types, so a cleanup step with another state type is
            // reported at that step rather than at `with_cleanup`.
            let cleanup = chain(
                quote!(#private::start_like(&#main_var)),
                input,
                cleanup,
                &private,
            );
            let cleanup_var = Ident::new("__cleanup", Span::mixed_site());
            quote! {
                let #cleanup_var = #cleanup;
                #private::Staircase::new(#main_var).with_cleanup(#cleanup_var)
            }
        }
    };
    quote! {
        {
            use #krate::__private as #private;
            let #main_var = #main;
            #staircase
        }
    }
}

/// A block evaluating to the chain of the steps of `list`, appended to `start`.
fn chain(
    start: TokenStream,
    input: &StaircaseInput,
    list: &StepList,
    private: &Ident,
) -> TokenStream {
    let resource = &input.resource;
    // Hygienic: invisible to (and not clashing with) anything the user writes.
    let chain = Ident::new("__chain", Span::mixed_site());
    let step = Ident::new("__step", Span::mixed_site());
    let steps = list.steps.iter().map(|entry| {
        // The step's own name (the last segment), where errors about it belong.
        let (span, value) = match entry {
            Entry::Step(path) => {
                let span = path
                    .segments
                    .last()
                    .map_or_else(|| path.span(), |s| s.ident.span());
                (span, quote_spanned!(span=> #path {}))
            }
            Entry::Value(expr) => (expr.span(), quote!(#expr)),
        };
        let private = Ident::new(&private.to_string(), span);
        quote_spanned! {span=>
            let #step = #private::check_data(
                &#chain,
                #private::check_state(&#chain, #private::check_resource::<#resource, _>(#value)),
            );
            let #chain = #chain.then(#step);
        }
    });
    quote! {
        {
            let #chain = #start;
            #(#steps)*
            #chain
        }
    }
}
