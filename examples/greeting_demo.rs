//! The observed-generation operator against the embedded API server:
//!
//! ```text
//! cargo run --example greeting
//! ```
//!
//! Creates `Greeting hello`, runs until its status observes generation 1, changes the message,
//! runs until generation 2 is observed, prints every run and exits 0.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = staircase_testkit::ApiServer::start().await?;
    println!(
        "greeting operator against the embedded API server at {}",
        server.url()
    );
    let trace = staircase_examples::greeting::demo(server.client(), false).await?;
    println!(
        "\nhello observes generation 2; {} runs in total",
        trace.len()
    );
    Ok(())
}
