//! The operator's HTTP endpoint with routes and ready checks of the user's, over real HTTP, with
//! the Foo operator running against the embedded API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Response, StatusCode};
use kube::api::{Api, PostParams};
use staircase::prelude::*;
use staircase::server;
use staircase_examples::foo::{self, App, Foo};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::http::{get, request};
use staircase_tests::{Env, Running, until, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_routes_and_ready_checks_are_served_beside_the_probes() {
    let env = Env::start().await;
    env.install::<Foo>().await;
    let database_up = Arc::new(AtomicBool::new(false));
    let up = database_up.clone();
    let app = App {
        manager: "foo-operator".into(),
    };
    let op = Operator::with_state(env.client.clone(), foo::stairs(), app)
        .with_status()
        .with_route("/debug/echo", |req| async move {
            if req.method() != Method::POST {
                let mut refused = Response::new("POST only\n".to_string());
                *refused.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                return refused;
            }
            let query = req.uri().query().unwrap_or_default().to_string();
            let body = String::from_utf8_lossy(req.body()).into_owned();
            Response::new(format!("{query}: {body}"))
        })
        .with_route("/debug/foos/*", |req| async move {
            let name = req.uri().path().trim_start_matches("/debug/foos/");
            Response::new(format!("foo {name}"))
        })
        .with_ready_check("database", move || match up.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err("no connection".into()),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = server::serve_with(listener, op.metrics(), op.health(), op.routes());
    tokio::spawn(serving);
    let running = Running::operator(op);

    // The routes answer as written, method, query and body included.
    assert_eq!(
        request(addr, "POST", "/debug/echo?verbose=1", b"hello").await,
        (200, "verbose=1: hello".into())
    );
    assert_eq!(get(addr, "/debug/echo").await.0, 405);
    assert_eq!(get(addr, "/debug/foos/web").await, (200, "foo web".into()));
    assert_eq!(get(addr, "/debug/other").await.0, 404);
    // A body over the limit is refused before the route sees it.
    let large = vec![b'x'; (1 << 20) + 1];
    assert_eq!(request(addr, "POST", "/debug/echo", &large).await.0, 413);

    // The operator gets ready, the database does not: not ready, and the body says why.
    let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
    foos.create(&PostParams::default(), &new_foo("foo-0"))
        .await
        .unwrap();
    wait_for(&foos, "foo-0", ready).await;
    until("the cache synced, as the probe body says", async || {
        get(addr, "/readyz").await.1.contains("cache synced")
    })
    .await;
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not ready") && body.contains("database: no connection"),
        "{body}"
    );
    // Liveness does not depend on the check; the endpoint's own paths are still its own.
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert!(
        get(addr, "/metrics")
            .await
            .1
            .contains("staircase_runs_total")
    );

    database_up.store(true, Ordering::SeqCst);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.contains("database")), (200, false), "{body}");
    running.stop().await;
}
