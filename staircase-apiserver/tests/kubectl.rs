//! The embedded API server driven by the real `kubectl`: discovery, client-side and server-side
//! apply, `get -w`, the three patch types, `delete`, `wait` on a CRD, printer columns, `scale`,
//! the generator commands (`create configmap|secret|deployment|...`, which send protobuf), and
//! bad input.
//!
//! Each test starts its own server and writes a kubeconfig for it; kubectl runs as a child
//! process. Without kubectl on the PATH the tests say so and pass, except under `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use staircase_apiserver::ApiServer;

const GUARD: Duration = Duration::from_secs(30);

struct Kubectl {
    server: ApiServer,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    async fn start(test: &str) -> Option<Kubectl> {
        if Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "kubectl is not installed, and CI=true requires it"
            );
            eprintln!("SKIPPING {test}: kubectl is not on the PATH");
            return None;
        }
        let server = ApiServer::start().await.expect("server starts");
        let dir =
            std::env::temp_dir().join(format!("staircase-kubectl-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Some(Kubectl {
            server,
            kubeconfig,
            dir,
        })
    }

    /// Runs kubectl to completion off the async runtime (the server lives on it). Its discovery
    /// cache is the test's own: one kept under `~/.kube/cache` from an earlier server on the same
    /// port would answer for this one.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs"))
            .await
            .unwrap()
    }

    /// Runs kubectl and requires success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Applies a CRD manifest and waits until it is Established; returns `kubectl wait`'s output.
    async fn apply_crd(&self, manifest: &Path, name: &str) -> String {
        self.ok(&["apply", "-f", path(manifest)]).await;
        self.ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=30s",
        ])
        .await
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\ndata:\n  a: \"1\"\n";

/// kubectl learns the resources from aggregated discovery (`/api` and `/apis` only, no request
/// per group-version) and resolves short names and plurals with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_and_get_through_aggregated_discovery() {
    let Some(k) = Kubectl::start("discovery").await else {
        return;
    };
    let out = k.ok(&["api-resources", "--no-headers"]).await;
    let row = |name: &str| {
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols[0] == name)
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    // NAME SHORTNAMES APIVERSION NAMESPACED KIND
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("configmaps"),
        ["configmaps", "cm", "v1", "true", "ConfigMap"]
    );
    assert_eq!(
        row("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    let cm = k.file("cm.yaml", CONFIGMAP);
    k.ok(&["apply", "-f", path(&cm)]).await;
    let out = k
        .ok(&["get", "deployments,cm", "-n", "default", "-o", "name"])
        .await;
    assert!(out.lines().any(|l| l == "configmap/cm"), "{out}");
    let paths: Vec<String> = k
        .server
        .stats()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(paths.iter().any(|p| p == "/apis"), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p == "/apis/apps/v1" || p == "/api/v1"),
        "legacy discovery requests: {paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_client_side_and_server_side_then_get_and_delete() {
    let Some(k) = Kubectl::start("apply").await else {
        return;
    };
    let f = k.file("cm.yaml", CONFIGMAP);
    assert!(
        k.ok(&["apply", "-f", path(&f)])
            .await
            .contains("configmap/cm created")
    );
    // A second client-side apply of the same file is a no-op.
    assert!(
        k.ok(&["apply", "-f", path(&f)])
            .await
            .contains("configmap/cm unchanged")
    );
    let f2 = k.file("cm2.yaml", &CONFIGMAP.replace("\"1\"", "\"2\""));
    assert!(
        k.ok(&["apply", "-f", path(&f2)])
            .await
            .contains("configmap/cm configured")
    );
    assert_eq!(
        k.ok(&["get", "cm", "cm", "-o", "jsonpath={.data.a}"]).await,
        "2"
    );

    let f3 = k.file("cm3.yaml", &CONFIGMAP.replace("name: cm", "name: ssa"));
    let out = k
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager",
            "me",
            "-f",
            path(&f3),
        ])
        .await;
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let managers = k
        .ok(&[
            "get",
            "cm",
            "ssa",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
            "--show-managed-fields",
        ])
        .await;
    assert!(managers.contains("me"), "{managers}");

    assert!(
        k.ok(&["get", "configmaps", "-n", "default"])
            .await
            .contains("ssa")
    );
    assert!(
        k.ok(&["delete", "configmap", "ssa", "cm"])
            .await
            .contains("deleted")
    );
    let out = k.run(&["get", "cm", "cm"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types_merge_json_strategic() {
    let Some(k) = Kubectl::start("patch").await else {
        return;
    };
    let f = k.file("cm.yaml", CONFIGMAP);
    k.ok(&["apply", "-f", path(&f)]).await;
    k.ok(&[
        "patch",
        "cm",
        "cm",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"merged"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "cm",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/a","value":"json"}]"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "cm",
        "--type=strategic",
        "-p",
        r#"{"metadata":{"labels":{"s":"yes"}}}"#,
    ])
    .await;
    let got = k
        .ok(&[
            "get",
            "cm",
            "cm",
            "-o",
            "jsonpath={.data.a},{.data.b},{.metadata.labels.s}",
        ])
        .await;
    assert_eq!(got, "json,merged,yes");
    // A failing JSON patch `test` is rejected and changes nothing.
    let out = k
        .run(&[
            "patch",
            "cm",
            "cm",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/a","value":"nope"},{"op":"remove","path":"/data/a"}]"#,
        ])
        .await;
    assert!(!out.status.success());
    assert_eq!(
        k.ok(&["get", "cm", "cm", "-o", "jsonpath={.data.a}"]).await,
        "json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_sees_a_change() {
    let Some(k) = Kubectl::start("watch").await else {
        return;
    };
    let f = k.file("cm.yaml", CONFIGMAP);
    k.ok(&["apply", "-f", path(&f)]).await;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .args([
            "get",
            "cm",
            "cm",
            "-w",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.data.a}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(next_line(&mut rx).await.trim(), "ADDED 1");
    k.ok(&[
        "patch",
        "cm",
        "cm",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ])
    .await;
    assert_eq!(next_line(&mut rx).await.trim(), "MODIFIED 2");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_an_established_crd_and_use_it() {
    let Some(k) = Kubectl::start("crd").await else {
        return;
    };
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
"#,
    );
    let out = k.apply_crd(&crd, "widgets.example.com").await;
    assert!(out.contains("condition met"), "{out}");
    assert!(k.ok(&["api-resources"]).await.contains("widgets"));
    let good = k.file("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\nspec:\n  size: 3\n");
    k.ok(&["apply", "-f", path(&good)]).await;
    assert_eq!(
        k.ok(&["get", "wd", "w", "-o", "jsonpath={.spec.size}"])
            .await,
        "3"
    );
    // Invalid against the schema: rejected with the field named.
    let bad = k.file("bad.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: b\n  namespace: default\nspec:\n  size: 0\n");
    let out = k.run(&["apply", "-f", path(&bad)]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.size"), "{err}");
}

/// `kubectl scale` goes through the Deployment's `/scale` subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_a_deployment() {
    let Some(k) = Kubectl::start("scale").await else {
        return;
    };
    let d = k.file(
        "d.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: default\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: nginx}]}\n",
    );
    k.ok(&["apply", "-f", path(&d)]).await;
    let out = k.ok(&["scale", "deployment", "d", "--replicas=3"]).await;
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(
        k.ok(&["get", "deployment", "d", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "3"
    );
}

/// The generator commands send protobuf (kubectl's typed clients): each creates its object, and
/// `get -o json` reads back what kubectl meant, byte values and quantities included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_commands_send_protobuf() {
    let Some(k) = Kubectl::start("generators").await else {
        return;
    };
    for args in [
        &["create", "configmap", "x", "--from-literal=a=b"][..],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=password=hunter2",
        ],
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
        ],
        &["scale", "deployment", "web", "--replicas=3"],
        &["create", "namespace", "team"],
        &["create", "serviceaccount", "robot"],
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "rolebinding",
            "read",
            "--role=reader",
            "--serviceaccount=default:robot",
        ],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
    ] {
        k.ok(args).await;
    }
    let creates: Vec<_> = k
        .server
        .stats()
        .requests()
        .into_iter()
        .filter(|r| r.verb == Some(staircase_apiserver::Verb::Create))
        .collect();
    assert_eq!(creates.len(), 8, "{creates:?}");
    assert!(creates.iter().all(|r| r.status == 201), "{creates:?}");
    let get = |what: &'static str| {
        let k = &k;
        async move {
            let out = k.ok(&["get", what, "-o", "json"]).await;
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        }
    };
    assert_eq!(
        get("configmap/x").await["data"],
        serde_json::json!({"a": "b"})
    );
    // "hunter2", base64 as JSON writes bytes.
    assert_eq!(
        get("secret/s").await["data"],
        serde_json::json!({"password": "aHVudGVyMg=="})
    );
    let web = get("deployment/web").await;
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert_eq!(web["spec"]["selector"]["matchLabels"]["app"], "web");
    assert!(web["metadata"]["creationTimestamp"].is_string(), "{web}");
    let svc = get("service/web").await;
    assert_eq!(
        svc["spec"]["ports"][0],
        serde_json::json!({"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080})
    );
    let rb = get("rolebinding/read").await;
    assert_eq!(
        rb["subjects"][0],
        serde_json::json!({"kind": "ServiceAccount", "name": "robot", "namespace": "default"})
    );
    assert_eq!(
        get("role/reader").await["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(get("namespace/team").await["metadata"]["name"], "team");
}

/// `kubectl get` of a custom resource shows its printer columns as kube-apiserver fills them:
/// a JSONPath filter picks a condition's status, and a typed column keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printer_columns_evaluate_jsonpath_filters() {
    let Some(k) = Kubectl::start("columns").await else {
        return;
    };
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
        - {name: Reason, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].reason'}
        - {name: Size, type: integer, jsonPath: .spec.size}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#,
    );
    k.apply_crd(&crd, "gadgets.example.com").await;
    let g = k.file("g.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n  namespace: default\nspec:\n  size: 3\n");
    k.ok(&["apply", "-f", path(&g)]).await;
    let status = r#"{"status":{"conditions":[{"type":"Progressing","status":"False","reason":"Idle"},{"type":"Ready","status":"True","reason":"AllStepsUnchanged"}]}}"#;
    k.ok(&[
        "patch",
        "gadget",
        "g",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .await;
    let out = k.ok(&["get", "gadgets", "--no-headers"]).await;
    let cells: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(cells[..4], ["g", "True", "AllStepsUnchanged", "3"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_refused_clearly() {
    let Some(k) = Kubectl::start("bad").await else {
        return;
    };
    let broken = k.file(
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n",
    );
    let out = k.run(&["apply", "-f", path(&broken)]).await;
    assert!(!out.status.success(), "malformed YAML must fail");
    let unknown = k.file(
        "unknown.yaml",
        "apiVersion: nope.example.com/v1\nkind: Nothing\nmetadata:\n  name: x\n",
    );
    // Client-side validation of an unknown group would fetch the protobuf OpenAPI v2 document,
    // which the embedded server does not serve; the server's own answer is what is tested here.
    let out = k
        .run(&["apply", "--validate=false", "-f", path(&unknown)])
        .await;
    assert!(!out.status.success(), "an unknown kind must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Nothing"), "{err}");
}

async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("watch line in time")
        .expect("watch open")
}
