//! Unit tests of parse and validate on token streams. What the expansion makes the compiler say
//! is tested by `ui-tests`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::parse_step_options;
use crate::errors::Errors;
use crate::staircase::parse::StaircaseInput;
use crate::staircase::validate::validate as validate_staircase;
use crate::step::validate::validate as validate_step;

fn messages(result: syn::Result<()>) -> Vec<String> {
    result
        .err()
        .map_or_else(Vec::new, |e| e.into_iter().map(|e| e.to_string()).collect())
}

fn parse_staircase(tokens: TokenStream) -> syn::Result<StaircaseInput> {
    // What the facade's `macro_rules!` prepends.
    syn::parse2(quote!(::staircase; #tokens))
}

#[test]
fn staircase_parses_paths_cleanup_and_trailing_comma() {
    let input = parse_staircase(quote!(Foo => [a, steps::b,], cleanup => [c],)).unwrap();
    assert_eq!(input.krate.to_string(), ":: staircase");
    let main: Vec<String> = input
        .main
        .steps
        .iter()
        .map(|p| quote!(#p).to_string())
        .collect();
    assert_eq!(main, ["a", "steps :: b"]);
    assert_eq!(input.cleanup.unwrap().steps.len(), 1);
}

#[test]
fn staircase_parse_errors_say_what_was_expected() {
    let error = |tokens| parse_staircase(tokens).err().unwrap().to_string();
    assert!(error(quote!(Foo[a])).starts_with("expected `=>`"));
    assert!(error(quote!(Foo => a, b)).starts_with("expected `[`"));
    assert!(error(quote!(Foo => [a] b)).starts_with("unexpected tokens after the list of steps"));
    assert!(
        error(quote!(Foo => [a], finalize => [b])).starts_with("expected `cleanup => [step, ...]`")
    );
    assert!(
        error(quote!(Foo => [a], cleanup => [b] c))
            .starts_with("unexpected tokens after the list of cleanup")
    );
}

#[test]
fn staircase_validation_collects_every_problem() {
    let input = parse_staircase(quote!(Foo => [a, b, a, m::c, m::c], cleanup => [])).unwrap();
    assert_eq!(
        messages(validate_staircase(&input)),
        [
            "step `a` is already listed as step 1 of this list; each step runs once per run",
            "step `m::c` is already listed as step 4 of this list; each step runs once per run",
            "`cleanup => []` has no steps: list at least one, or leave out `cleanup`",
        ]
    );
    let empty = parse_staircase(quote!(Foo => [])).unwrap();
    assert_eq!(
        messages(validate_staircase(&empty)),
        ["a staircase needs at least one step"]
    );
    // The same step may run in both lists.
    let both = parse_staircase(quote!(Foo => [a], cleanup => [a])).unwrap();
    assert!(validate_staircase(&both).is_ok());
}

/// Validates `#[step(args)] func`, returning the extracted facts or the error messages.
fn check_step(
    args: TokenStream,
    func: TokenStream,
) -> Result<(String, Option<bool>, String), Vec<String>> {
    let mut errors = Errors::default();
    let options = parse_step_options(args, &mut errors);
    let func = crate::step::parse::parse_item(func).unwrap();
    let def = validate_step(&func, &options, &mut errors);
    errors
        .finish()
        .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let def = def.unwrap();
    use crate::step::validate::Output;
    let output = match def.output {
        Output::Unit => "unit".to_string(),
        Output::Data(ty) => format!("data {}", quote!(#ty)),
        Output::Invalid => "invalid".to_string(),
        Output::Alias => "alias".to_string(),
    };
    Ok((output, def.data.map(|d| d.by_ref), def.name))
}

#[test]
fn step_signature_is_understood() {
    let facts = |args, func| check_step(args, func).unwrap();
    assert_eq!(
        facts(
            quote!(),
            quote!(
                async fn a(r: &Foo) -> Result<Outcome> {
                    todo!()
                }
            )
        ),
        ("unit".to_string(), None, "a".to_string())
    );
    assert_eq!(
        facts(
            quote!(name = "step b", read_only),
            quote!(
                async fn b(_: &Foo, c: &Context<App>, d: &Cfg) -> anyhow::Result<Outcome<()>> {
                    todo!()
                }
            )
        ),
        ("unit".to_string(), Some(true), "step b".to_string())
    );
    assert_eq!(
        facts(
            quote!(),
            quote!(
                async fn c(r: &Foo, c: &Context, d: Cfg) -> Result<Outcome<Cm>, E> {
                    todo!()
                }
            )
        ),
        ("data Cm".to_string(), Some(false), "c".to_string())
    );
}

#[test]
fn a_return_type_is_classified_by_its_spelling() {
    let output = |ret: TokenStream| {
        check_step(quote!(), quote!(async fn a(r: &Foo) -> #ret { todo!() }))
            .unwrap()
            .0
    };
    assert_eq!(
        output(quote!(staircase::Result<Outcome<Vec<u8>>>)),
        "data Vec < u8 >"
    );
    // Certainly wrong: typed as handing nothing down, so only the return type is reported.
    for wrong in [
        quote!(Result<String>),
        quote!(Result<()>),
        quote!(anyhow::Result<Option<Outcome>>),
        quote!(Outcome),
        quote!(bool),
        quote!(()),
    ] {
        assert_eq!(output(wrong.clone()), "invalid", "{wrong}");
    }
    // Possibly aliases of a valid type: left to `StepReturn`.
    for alias in [
        quote!(StepResult),
        quote!(Result<MyOutcome>),
        quote!(Result<Outcome<A, B>>),
    ] {
        assert_eq!(output(alias.clone()), "alias", "{alias}");
    }
}

#[test]
fn step_validation_collects_every_problem() {
    let errors = check_step(
        quote!(read_only, colour = "red", read_only),
        quote!(
            fn f<T>(r: Foo, c: &String, d: &mut u8, e: u8) {
                todo!()
            }
        ),
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            "unknown `#[step]` option; expected `name = \"...\"`, `read_only` or `crate = \"...\"`",
            "duplicate `#[step]` option `read_only`",
            "a step must be an `async fn`",
            "a step cannot be generic: `staircase!` needs one concrete resource, state and data type",
            "a step takes at most three parameters: the resource, the context and the data from earlier steps",
            "a step takes the resource by reference: write `&Foo` for resource type `Foo`",
            "the second parameter of a step is the context, `&Context<S>` (or `&Context` when the operator has no state); data from earlier steps goes third",
            "a step takes data from earlier steps by value (`T`) or by shared reference (`&T`), not `&mut`",
            "a step must declare its return type: add `-> Result<Outcome>` (or `-> Result<Outcome<T>>` to hand data `T` to later steps)",
        ]
    );
}

#[test]
fn broken_step_keeps_the_function_and_gets_a_stub() {
    let out = crate::step::step(
        quote!(),
        quote!(
            fn f(r: &Foo) -> Result<Outcome> {
                todo!()
            }
        ),
    )
    .to_string();
    assert!(
        out.starts_with("fn f (r : & Foo)"),
        "the function comes first, unchanged: {out}"
    );
    assert!(out.contains("compile_error !"));
    assert!(
        out.contains("struct f { }"),
        "a stub step type keeps `staircase!` lists quiet: {out}"
    );
}

#[test]
fn staircase_takes_step_values_and_does_not_dedupe_them() {
    let input = parse_staircase(quote!(Foo => [a, children(one), children(two)])).unwrap();
    assert!(matches!(
        input.main.steps.iter().nth(1),
        Some(crate::staircase::parse::Entry::Value(_))
    ));
    assert!(crate::staircase::validate::validate(&input).is_ok());
}
