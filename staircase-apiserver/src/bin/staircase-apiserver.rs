//! `staircase-apiserver`: the in-process test API server as a standalone process, for poking
//! at it with kubectl or running an operator binary against it.
//!
//! ```text
//! staircase-apiserver --port 0 --kubeconfig /tmp/kc --watch-window 10000
//! kubectl --kubeconfig /tmp/kc get ns
//! curl -s $(head -1 output)/staircase/stats   # request counts as JSON
//! ```
//!
//! `GET /staircase/stats` answers the server's request statistics as JSON
//! ([`Stats::to_json`](staircase_apiserver::Stats::to_json)): counts by verb, writes, writes that
//! changed nothing, and the same split by client program (`User-Agent`).

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: staircase-apiserver [--port N] [--kubeconfig PATH] [--watch-window N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut builder = staircase_apiserver::ApiServer::builder();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => builder = builder.port(value().parse().unwrap_or_else(|_| usage())),
            "--kubeconfig" => kubeconfig = Some(value().into()),
            "--watch-window" => {
                builder = builder.watch_window(value().parse().unwrap_or_else(|_| usage()))
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let server = builder.start().await?;
    // Counters only: a benchmark's request log would grow without bound.
    server.stats().set_log_enabled(false);
    if let Some(path) = &kubeconfig {
        server.write_kubeconfig(path)?;
    }
    println!("{}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
