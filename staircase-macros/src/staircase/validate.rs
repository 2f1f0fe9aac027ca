//! Rules on the lists that parsing cannot express: not empty, no step twice in one list.
//! (Whether each step fits — resource, state, data — is checked by the compiler on the expansion.)

use quote::ToTokens;

use super::parse::{Entry, StaircaseInput, StepList};
use crate::errors::Errors;

/// Every problem found, combined.
pub(crate) fn validate(input: &StaircaseInput) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_list(
        &input.main,
        "a staircase needs at least one step",
        &mut errors,
    );
    if let Some(cleanup) = &input.cleanup {
        check_list(
            cleanup,
            "`cleanup => []` has no steps: list at least one, or leave out `cleanup`",
            &mut errors,
        );
    }
    errors.finish()
}

fn check_list(list: &StepList, empty: &str, errors: &mut Errors) {
    if list.steps.is_empty() {
        errors.push(syn::Error::new(list.brackets.span.join(), empty));
    }
    // A step runs once per run; listing it again is a mistake (the second would find nothing to
    // do). The same step may appear in both lists, though.
    // Only `#[step]` paths are compared: two value entries (e.g. two `children(..)`) may differ
    // in their arguments.
    let names: Vec<Option<String>> = list
        .steps
        .iter()
        .map(|e| match e {
            Entry::Step(p) => Some(path_string(p)),
            Entry::Value(_) => None,
        })
        .collect();
    for (i, step) in list.steps.iter().enumerate() {
        let Some(name) = &names[i] else { continue };
        if let Some(first) = names[..i].iter().position(|n| n.as_ref() == Some(name)) {
            errors.error_at(
                step,
                format!(
                    "step `{}` is already listed as step {} of this list; each step runs once per run",
                    name,
                    first + 1
                ),
            );
        }
    }
}

/// `module::step` without spaces.
fn path_string(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}
