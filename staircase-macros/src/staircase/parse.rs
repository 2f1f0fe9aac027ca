//! The syntax of `staircase!`: `Resource => [step, ...]`, then optionally `, cleanup => [step, ...]`
//! and a trailing comma. Parse errors say what was expected, at the token that is wrong.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Path, Token, Type, bracketed, token};

syn::custom_keyword!(cleanup);

/// The parsed macro input.
pub(crate) struct StaircaseInput {
    /// The path of the `staircase` facade (`$crate` from the facade's `macro_rules!`).
    pub(crate) krate: TokenStream,
    /// The resource type.
    pub(crate) resource: Type,
    /// The steps run on every object.
    pub(crate) main: StepList,
    /// The steps run when an object is deleted, if any.
    pub(crate) cleanup: Option<StepList>,
}

/// `[step, step, ...]`.
pub(crate) struct StepList {
    /// The brackets, where an error about the whole list is shown.
    pub(crate) brackets: token::Bracket,
    /// The steps, in order.
    pub(crate) steps: Punctuated<Entry, Token![,]>,
}

/// One entry of a list.
pub(crate) enum Entry {
    /// A `#[step]` function, by path: the step is its generated struct, built as `path {}`.
    Step(Path),
    /// Any other expression evaluating to a step value, e.g. `children(desired)`.
    Value(syn::Expr),
}

impl Parse for Entry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let expr: syn::Expr = input.parse()?;
        Ok(match expr {
            syn::Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Entry::Step(p.path),
            other => Entry::Value(other),
        })
    }
}

impl quote::ToTokens for Entry {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Entry::Step(p) => p.to_tokens(tokens),
            Entry::Value(e) => e.to_tokens(tokens),
        }
    }
}

const USAGE: &str =
    "`staircase!(Foo => [step, ...])` or `staircase!(Foo => [step, ...], cleanup => [step, ...])`";

impl Parse for StaircaseInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let krate = parse_krate(input)?;
        if input.is_empty() {
            return Err(input.error(format!("expected the resource type: {USAGE}")));
        }
        let resource: Type = input.parse()?;
        if !input.peek(Token![=>]) {
            return Err(input.error(format!(
                "expected `=>` between the resource type and the list of steps: {USAGE}"
            )));
        }
        input.parse::<Token![=>]>()?;
        let main = parse_list(input, "the list of steps")?;

        let mut cleanup_steps = None;
        if !input.is_empty() {
            if !input.peek(Token![,]) {
                return Err(input.error(format!(
                    "unexpected tokens after the list of steps; expected `, cleanup => [...]` or \
                     the end of the input: {USAGE}"
                )));
            }
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            if !input.peek(cleanup) {
                return Err(input.error(
                    "expected `cleanup => [step, ...]` (the steps run when an object is deleted) \
                     or the end of the input",
                ));
            }
            input.parse::<cleanup>()?;
            if !input.peek(Token![=>]) {
                return Err(input.error("expected `=>` after `cleanup`: `cleanup => [step, ...]`"));
            }
            input.parse::<Token![=>]>()?;
            cleanup_steps = Some(parse_list(input, "the list of cleanup steps")?);
            if !input.is_empty() {
                input.parse::<Option<Token![,]>>()?;
            }
            if !input.is_empty() {
                return Err(input.error("unexpected tokens after the list of cleanup steps"));
            }
        }
        Ok(StaircaseInput {
            krate,
            resource,
            main,
            cleanup: cleanup_steps,
        })
    }
}

/// The facade's path, up to the first `;` (put there by the facade's `macro_rules!`).
fn parse_krate(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut krate = TokenStream::new();
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt
                && p.as_char() == ';'
            {
                return Ok((krate, next));
            }
            krate.extend([tt]);
            rest = next;
        }
        Err(cursor.error("use `staircase!` from the `staircase` crate, not this internal macro"))
    })
}

/// `[a, b, module::c]`.
fn parse_list(input: ParseStream<'_>, what: &str) -> syn::Result<StepList> {
    if !input.peek(token::Bracket) {
        return Err(input.error(format!("expected `[` to start {what}: `[step, ...]`")));
    }
    let content;
    let brackets = bracketed!(content in input);
    let steps = Punctuated::parse_terminated(&content)?;
    Ok(StepList { brackets, steps })
}
