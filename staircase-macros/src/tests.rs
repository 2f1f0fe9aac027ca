//! Unit tests of parse and validate on token streams (the expansion is tested by `ui-tests`).

use quote::quote;

#[test]
#[ignore]
fn print_expansion() {
    let out = crate::step::step(
        quote!(),
        quote!(async fn ensure_config(_foo: &Foo) -> Result<String> { Ok(String::new()) }),
    );
    println!("{out}");
}
