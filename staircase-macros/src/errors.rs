//! Collects every error found in one macro input so the user sees them all in one build
//! (the idea of `serde_derive`'s `Ctxt`), instead of fixing them one compile at a time.

use std::fmt::Display;

use quote::ToTokens;

/// The errors found so far, combined into one `syn::Error` (which holds a list of them).
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Adds an error (it may itself hold several).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Adds an error spanned at `tokens` (from their first to their last token).
    pub(crate) fn error_at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// `Err` with every error pushed, `Ok` when there was none.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.combined.map_or(Ok(()), Err)
    }
}
