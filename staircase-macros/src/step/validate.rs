//! Checks the signature of a `#[step]` function and extracts what the expansion needs.
//!
//! Every rule violated is reported (spanned at the offending tokens), not only the first.
//! What can only be checked with types (the return type implements `StepReturn`, the future is
//! `Send`) is left to the compiler, with the expansion placing those errors on the user's tokens.

use syn::{FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Type, Visibility};

use super::parse::StepFn;
use crate::attr::StepOptions;
use crate::errors::Errors;

/// A valid step function, as the expansion sees it.
pub(crate) struct StepDef<'a> {
    /// The function's name, also the name of the generated step type.
    pub(crate) ident: &'a Ident,
    /// The function's visibility, also the step type's.
    pub(crate) vis: &'a Visibility,
    /// The function's `#[cfg(...)]` attributes (written after `#[step]`), repeated on the
    /// generated items so that they exist exactly when the function does.
    pub(crate) cfgs: Vec<&'a syn::Attribute>,
    /// `Foo` of the first parameter `&Foo`.
    pub(crate) resource: &'a Type,
    /// `S` of the second parameter `&Context<S>` (`()` for `&Context`); `None` without one.
    pub(crate) state: Option<Type>,
    /// The third parameter, when there is one.
    pub(crate) data: Option<Data<'a>>,
    /// The declared return type.
    pub(crate) ret: &'a Type,
    /// What the return type says about the data the step hands down.
    pub(crate) output: Output<'a>,
    /// `StepInfo::name`.
    pub(crate) name: String,
    /// `StepInfo::read_only`.
    pub(crate) read_only: bool,
    /// Path of the `staircase` facade.
    pub(crate) krate: syn::Path,
}

/// The data parameter: `&T` or `T`.
pub(crate) struct Data<'a> {
    /// `T`.
    pub(crate) ty: &'a Type,
    /// Taken as `&T` (the data then also passes on to later steps) rather than by value.
    pub(crate) by_ref: bool,
}

const SHAPE: &str = "async fn name(res: &Foo, ctx: &Context<S>, data: &T) -> Result<Outcome>";

/// Checks `func` against the rules of a step. Returns `None` when the signature is too broken
/// to describe; every problem is pushed to `errors` either way.
pub(crate) fn validate<'a>(
    func: &'a StepFn,
    options: &StepOptions,
    errors: &mut Errors,
) -> Option<StepDef<'a>> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.error_at(sig.fn_token, "a step must be an `async fn`");
    }
    if let Some(constness) = &sig.constness {
        errors.error_at(constness, "a step cannot be a `const fn`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.error_at(unsafety, "a step cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.error_at(abi, "a step cannot have an `extern` ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.error_at(variadic, "a step cannot be variadic");
    }
    if !sig.generics.params.is_empty() {
        errors.error_at(
            &sig.generics,
            "a step cannot be generic: `staircase!` needs one concrete resource, state and data type",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.error_at(where_clause, "a step cannot have a `where` clause");
    }

    let inputs: Vec<&FnArg> = sig.inputs.iter().collect();
    for input in &inputs {
        match input {
            FnArg::Receiver(receiver) => errors.error_at(
                receiver,
                "a step is a free function and cannot take `self`; move it out of the `impl` block",
            ),
            FnArg::Typed(typed) => check_pattern(&typed.pat, errors),
        }
    }
    if inputs.is_empty() {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!("a step takes the resource as its first parameter: `{SHAPE}`"),
        ));
    }
    if inputs.len() > 3 {
        let extra: Vec<_> = inputs[3..].to_vec();
        errors.error_at(
            quote::quote!(#(#extra),*),
            "a step takes at most three parameters: the resource, the context and the data \
             from earlier steps",
        );
    }
    let typed = |i: usize| match inputs.get(i) {
        Some(FnArg::Typed(typed)) => Some(&*typed.ty),
        _ => None,
    };
    let resource = typed(0).and_then(|ty| resource_type(ty, errors));
    let state = typed(1).and_then(|ty| state_type(ty, errors));
    let data = typed(2).and_then(|ty| data_type(ty, errors));

    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            errors.push(syn::Error::new(
                sig.paren_token.span.close(),
                "a step must declare its return type: add `-> Result<Outcome>` \
                 (or `-> Result<Outcome<T>>` to hand data `T` to later steps)",
            ));
            None
        }
    };

    Some(StepDef {
        ident: &sig.ident,
        vis: &func.vis,
        cfgs: cfgs(func),
        resource: resource?,
        state,
        data,
        ret: ret?,
        output: ret.map_or(Output::Alias, output),
        name: options
            .name
            .as_ref()
            .map_or_else(|| sig.ident.to_string(), syn::LitStr::value),
        read_only: options.read_only,
        krate: options
            .krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::staircase)),
    })
}

/// The `#[cfg(...)]` attributes of `func`.
pub(crate) fn cfgs(func: &StepFn) -> Vec<&syn::Attribute> {
    func.attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect()
}

/// Parameters are matched by position, so their names do not matter; but destructuring the
/// resource or the context would hide what the parameter is, so only names are accepted.
fn check_pattern(pat: &Pat, errors: &mut Errors) {
    match pat {
        Pat::Ident(ident) if ident.subpat.is_none() => {}
        Pat::Wild(_) => {}
        _ => errors.error_at(pat, "use a plain name (or `_`) for a step parameter"),
    }
}

/// First parameter: `&Foo`.
fn resource_type<'a>(ty: &'a Type, errors: &mut Errors) -> Option<&'a Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => {
            errors.error_at(
                ty,
                "a step takes the resource by shared reference (`&Foo`), not `&mut`: \
                 it changes objects through the API, one modification per run",
            );
            None
        }
        Type::Reference(r) if last_segment(&r.elem, "Context").is_some() => {
            errors.error_at(
                ty,
                format!("the first parameter of a step is the resource; the context goes second: `{SHAPE}`"),
            );
            None
        }
        Type::Reference(r) => not_impl_trait(&r.elem, errors),
        Type::Group(g) => resource_type(&g.elem, errors),
        _ => {
            errors.error_at(
                ty,
                "a step takes the resource by reference: write `&Foo` for resource type `Foo`",
            );
            None
        }
    }
}

/// Second parameter: `&Context<S>` or `&Context`; returns `S`.
fn state_type(ty: &Type, errors: &mut Errors) -> Option<Type> {
    let not_context = |errors: &mut Errors| {
        errors.error_at(
            ty,
            "the second parameter of a step is the context, `&Context<S>` (or `&Context` when \
             the operator has no state); data from earlier steps goes third",
        );
        None
    };
    let (reference, segment) = match ty {
        Type::Group(g) => return state_type(&g.elem, errors),
        Type::Reference(r) => match last_segment(&r.elem, "Context") {
            Some(segment) => (r, segment),
            None => return not_context(errors),
        },
        _ if last_segment(ty, "Context").is_some() => {
            errors.error_at(ty, "a step takes the context by reference: `&Context<S>`");
            return None;
        }
        _ => return not_context(errors),
    };
    if reference.mutability.is_some() {
        errors.error_at(
            ty,
            "a step takes the context by shared reference: `&Context<S>`",
        );
        return None;
    }
    match &segment.arguments {
        PathArguments::None => Some(syn::parse_quote_spanned!(segment.ident.span()=> ())),
        PathArguments::AngleBracketed(args) => match args.args.iter().collect::<Vec<_>>()[..] {
            [GenericArgument::Type(state)] => Some(state.clone()),
            _ => {
                errors.error_at(
                    args,
                    "expected one type argument, the operator's state: `Context<S>`",
                );
                None
            }
        },
        PathArguments::Parenthesized(args) => {
            errors.error_at(args, "expected `Context<S>`");
            None
        }
    }
}

/// Third parameter: `&T` or `T`.
fn data_type<'a>(ty: &'a Type, errors: &mut Errors) -> Option<Data<'a>> {
    match ty {
        Type::Group(g) => data_type(&g.elem, errors),
        Type::Reference(r) if r.mutability.is_some() => {
            errors.error_at(
                ty,
                "a step takes data from earlier steps by value (`T`) or by shared reference (`&T`), not `&mut`",
            );
            None
        }
        Type::Reference(r) => Some(Data {
            ty: not_impl_trait(&r.elem, errors)?,
            by_ref: true,
        }),
        _ => Some(Data {
            ty: not_impl_trait(ty, errors)?,
            by_ref: false,
        }),
    }
}

fn not_impl_trait<'a>(ty: &'a Type, errors: &mut Errors) -> Option<&'a Type> {
    if let Type::ImplTrait(_) = ty {
        errors.error_at(
            ty,
            "a step parameter cannot be `impl Trait`: name the concrete type",
        );
        return None;
    }
    Some(ty)
}

/// The last segment of a path type, when its name is `name` (`Context`, `staircase::Context`…).
fn last_segment<'a>(ty: &'a Type, name: &str) -> Option<&'a syn::PathSegment> {
    match ty {
        Type::Group(g) => last_segment(&g.elem, name),
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().filter(|s| s.ident == name),
        _ => None,
    }
}

/// The data a step hands down, as far as its return type's spelling tells.
///
/// Spelled out, the data type is used as is rather than through `StepReturn`: when the return
/// type is wrong, the projection would fail at every later use (the next step, `staircase!`,
/// `Operator::new`), while a written type leaves one error, at the return type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output<'a> {
    /// `Result<Outcome>` / `Result<Outcome<()>>`: nothing of its own; what it received passes on.
    Unit,
    /// `Result<Outcome<T>>`: `T`.
    Data(&'a Type),
    /// Certainly not a step's return type (`Result<String>`, `Outcome`, `bool`…). Reported at the
    /// return type; typed like `Unit` so that nothing after the step repeats the error.
    Invalid,
    /// Anything else, such as an alias: `<R as StepReturn>::Output`.
    Alias,
}

/// Classifies a return type (any `Result` path, any error type).
fn output(ret: &Type) -> Output<'_> {
    let Some(result) = last_segment(ret, "Result") else {
        return if last_segment(ret, "Outcome").is_some() || not_an_outcome(ret) {
            Output::Invalid
        } else {
            Output::Alias
        };
    };
    let PathArguments::AngleBracketed(args) = &result.arguments else {
        return Output::Alias;
    };
    let Some(GenericArgument::Type(inner)) = args.args.first() else {
        return Output::Alias;
    };
    let Some(outcome) = last_segment(inner, "Outcome") else {
        return if not_an_outcome(inner) {
            Output::Invalid
        } else {
            Output::Alias
        };
    };
    match &outcome.arguments {
        PathArguments::None => Output::Unit,
        PathArguments::AngleBracketed(args) => match args.args.iter().collect::<Vec<_>>()[..] {
            [GenericArgument::Type(Type::Tuple(unit))] if unit.elems.is_empty() => Output::Unit,
            [GenericArgument::Type(data)] => Output::Data(data),
            _ => Output::Alias,
        },
        PathArguments::Parenthesized(_) => Output::Alias,
    }
}

/// A type that cannot be (an alias of) `Outcome<T>`: not a path, or a standard library type.
fn not_an_outcome(ty: &Type) -> bool {
    const STD: &[&str] = &[
        "String", "str", "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16",
        "i32", "i64", "i128", "isize", "f32", "f64", "Option", "Result", "Vec", "Box", "HashMap",
        "BTreeMap", "HashSet", "BTreeSet",
    ];
    match ty {
        Type::Group(g) => not_an_outcome(&g.elem),
        Type::Paren(p) => not_an_outcome(&p.elem),
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| STD.iter().any(|name| s.ident == name)),
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) => false,
        _ => true,
    }
}
