//! The webapp benchmark's staircase operator (`staircase_bench::webapp::staircase_op`), as its
//! own process: `KUBECONFIG`, `WEBAPP_RESYNC_S`, `WEBAPP_CONCURRENCY`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    staircase_bench::webapp::staircase_op::main(client).await;
    Ok(())
}
