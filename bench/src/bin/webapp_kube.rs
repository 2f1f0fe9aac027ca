//! The webapp benchmark's kube-runtime operator (`staircase_bench::webapp::kube_op`), as its own
//! process: `KUBECONFIG`, `WEBAPP_RESYNC_S`, `WEBAPP_CONCURRENCY`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    staircase_bench::webapp::kube_op::main(client).await;
    Ok(())
}
