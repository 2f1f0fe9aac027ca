//! The echo-server operator (Deployment + Service kept by the children step, status from the
//! children) against the embedded API server:
//!
//! ```text
//! cargo run --example echo
//! ```
//!
//! Creates `EchoServer hello` with 2 replicas, runs until it is Ready with 2 available replicas,
//! scales it to 3, runs until 3 are reported, prints every run and exits 0.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = staircase_testkit::ApiServer::start().await?;
    println!(
        "echo-server operator against the embedded API server at {}",
        server.url()
    );
    let out = staircase_examples::echo::demo(server.client(), false).await?;
    let status = out.echo.status.unwrap_or_default();
    println!(
        "\nhello is Ready: {:?} replicas available at {}; {} runs in total",
        status.available_replicas,
        status.url.unwrap_or_default(),
        out.trace.len()
    );
    Ok(())
}
