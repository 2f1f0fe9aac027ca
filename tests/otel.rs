//! `staircase::otel::init()` exports the spans of a real run of the Foo operator, on the
//! embedded API server, to an OTLP receiver in this process, configured by the standard
//! environment variables only. A binary of its own: `init` installs the process's global
//! subscriber.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::api::{Api, PostParams};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use staircase::prelude::*;
use staircase_examples::foo::{self, App, Foo};
use staircase_tests::foos::{new_foo, ready};
use staircase_tests::{Env, Running, wait_for};

/// What the receiver was sent.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`,
/// answered as a collector does.
async fn receive(listener: tokio::net::TcpListener, received: Received) {
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let received = received.clone();
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let received = received.clone();
            async move {
                let path_ok = req.uri().path() == "/v1/traces";
                let protobuf = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|c| c == "application/x-protobuf");
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let status = match ExportTraceServiceRequest::decode(body) {
                    Ok(export) if path_ok && protobuf => {
                        received.lock().unwrap().push(export);
                        http::StatusCode::OK
                    }
                    _ => http::StatusCode::BAD_REQUEST,
                };
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                let resp = http::Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(Bytes::from(answer)))
                    .expect("response");
                Ok::<_, Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(&span.attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[test]
fn the_run_and_step_spans_of_a_real_run_reach_an_otlp_receiver() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // SAFETY: no other thread of this process runs yet (the runtime is built below), so nothing
    // reads the environment while it changes.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("OTEL_SERVICE_NAME", "foo-operator");
        std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test");
        // The runtime's spans, and kube-runtime's around each run; not the API server's.
        std::env::set_var("RUST_LOG", "warn,staircase_runtime=info,kube_runtime=info");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let received: Received = Arc::default();
    let spans = runtime.block_on(async {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        tokio::spawn(receive(listener, received.clone()));
        let guard = staircase::otel::init().expect("init");

        let env = Env::start().await;
        env.install::<Foo>().await;
        let app = App {
            manager: "foo-operator".into(),
        };
        let op = Operator::with_state(env.client.clone(), foo::stairs(), app).with_status();
        let running = Running::operator(op);
        let foos: Api<Foo> = Api::namespaced(env.client.clone(), "default");
        foos.create(&PostParams::default(), &new_foo("foo-0"))
            .await
            .unwrap();
        wait_for(&foos, "foo-0", ready).await;
        running.stop().await;
        // Dropping the guard sends what is buffered: every span of the runs above is exported
        // when it returns. It blocks, so off the runtime's workers.
        tokio::task::spawn_blocking(move || drop(guard))
            .await
            .expect("shutdown");
        let exports = received.lock().unwrap().clone();
        assert!(!exports.is_empty(), "nothing was exported");
        for export in &exports {
            for rs in &export.resource_spans {
                let resource = &rs.resource.as_ref().expect("a resource").attributes;
                assert!(
                    matches!(attr(resource, "service.name"), Some(any_value::Value::StringValue(s)) if s == "foo-operator"),
                    "{resource:?}"
                );
                assert!(matches!(
                    attr(resource, "deployment.environment"),
                    Some(any_value::Value::StringValue(s)) if s == "test"
                ));
            }
        }
        exports
            .into_iter()
            .flat_map(|e| e.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect::<Vec<Span>>()
    });

    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (&s.span_id[..], s)).collect();
    let parent = |s: &Span| by_id.get(&s.parent_span_id[..]).copied();
    let runs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "run" && text(s, "object") == Some("default/foo-0"))
        .collect();
    let tree = || {
        spans
            .iter()
            .map(|s| {
                let p = parent(s).map_or("-", |p| p.name.as_str());
                format!("{} (parent {p}) {:?}", s.name, s.attributes)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The finalizer, one run per child, and the converged run at least.
    assert!(runs.len() >= 5, "{}", tree());
    for run in &runs {
        let around = parent(run).unwrap_or_else(|| panic!("a parent of the run\n{}", tree()));
        assert_eq!(around.name, "reconciling object", "{}", tree());
        assert_eq!(around.trace_id, run.trace_id);
    }
    // Each child was made by one step of one run, inside that run's span, in its trace.
    for step in ["ensure_config", "ensure_secret", "ensure_service"] {
        let made: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "step" && text(s, "step") == Some(step))
            .filter(|s| text(s, "outcome") == Some("modified"))
            .collect();
        assert_eq!(made.len(), 1, "{step}\n{}", tree());
        let run = parent(made[0]).unwrap_or_else(|| panic!("a parent of {step}\n{}", tree()));
        assert_eq!(
            (run.name.as_str(), text(run, "object"), text(run, "result")),
            ("run", Some("default/foo-0"), Some("modified")),
        );
        assert_eq!(run.trace_id, made[0].trace_id);
    }
    // The converged run: every step found nothing to do.
    let converged = runs
        .iter()
        .find(|r| text(r, "result") == Some("converged"))
        .unwrap_or_else(|| panic!("a converged run\n{}", tree()));
    let steps: Vec<(&str, &str)> = spans
        .iter()
        .filter(|s| s.name == "step" && s.parent_span_id == converged.span_id)
        .map(|s| (text(s, "step").unwrap(), text(s, "outcome").unwrap()))
        .collect();
    assert!(!steps.is_empty(), "{}", tree());
    assert!(steps.iter().all(|(_, o)| *o == "unchanged"), "{steps:?}");
}
