//! The external order operator against the embedded API server and a real HTTP shop on loopback:
//!
//! ```text
//! cargo run --example order
//! ```
//!
//! Creates `Order coffee`, runs until the shop has the order and the resource records its id,
//! prints every run and what the shop saw, and exits 0.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = staircase_testkit::ApiServer::start().await?;
    println!(
        "order operator against the embedded API server at {}",
        server.url()
    );
    let (trace, shop) = staircase_examples::order::demo(server.client(), false).await?;
    println!(
        "\nthe shop received {} create call(s) and holds {:?}; {} runs in total",
        shop.create_calls(),
        shop.orders(),
        trace.len()
    );
    Ok(())
}
