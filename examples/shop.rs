//! A small real REST service standing in for an external shop, and the client the order operator
//! uses. The service listens on loopback (port 0), keeps orders in memory, counts the create calls
//! it receives, and can hold one create call forever (after storing the order), so a test can
//! crash the operator exactly between "placed" and "recorded".
//!
//! API: `POST /orders` (header `Idempotency-Key`, JSON `{item, quantity}`) → `201` with the order,
//! or `200` with the existing order for a key it has seen; `GET /orders/by-key/{key}` → `200` or
//! `404`; `PUT /orders/{id}` (JSON `{item, quantity}`) → `200` with the changed order;
//! `DELETE /orders/{id}` → `204`; both `404` for an unknown id. `GET /orders` lists every order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use staircase::prelude::IdempotencyKey;
use tokio::sync::oneshot;

/// What is ordered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    /// The article.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// An order as the shop stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedOrder {
    /// The shop's id of the order.
    pub id: String,
    /// The idempotency key it was placed with.
    pub key: String,
    /// What was ordered.
    #[serde(flatten)]
    pub order: NewOrder,
}

#[derive(Default)]
struct Inner {
    orders: Mutex<Vec<PlacedOrder>>,
    /// Orders ever placed: ids are never reused after a cancellation.
    placed: AtomicUsize,
    creates: AtomicUsize,
    hold_next_create: Mutex<Option<oneshot::Sender<()>>>,
}

/// The running shop service; stops when dropped.
pub struct Shop {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _server: tokio::task::JoinHandle<()>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self._server.abort();
    }
}

impl Shop {
    /// Starts the service on 127.0.0.1 with a free port.
    pub async fn start() -> anyhow::Result<Shop> {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/orders", get(list).post(create))
            .route("/orders/{id}", put(update).delete(cancel))
            .route("/orders/by-key/{key}", get(by_key))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Ok(Shop {
            addr,
            inner,
            _server: server,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create calls received (including ones answered with an existing order).
    pub fn create_calls(&self) -> usize {
        self.inner.creates.load(Ordering::SeqCst)
    }

    /// The orders stored.
    pub fn orders(&self) -> Vec<PlacedOrder> {
        self.inner.orders.lock().expect("orders").clone()
    }

    /// The next create call stores its order, then fires the returned receiver and never answers:
    /// the caller is left exactly between "the order exists" and "I know it does".
    pub fn hold_next_create(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.inner.hold_next_create.lock().expect("hold") = Some(tx);
        rx
    }
}

async fn create(
    State(shop): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<PlacedOrder>), (StatusCode, String)> {
    shop.creates.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get(IdempotencyKey::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or((
            StatusCode::BAD_REQUEST,
            "missing Idempotency-Key".to_string(),
        ))?
        .to_string();
    let (status, placed) = {
        let mut orders = shop.orders.lock().expect("orders");
        match orders.iter().find(|o| o.key == key) {
            Some(existing) => (StatusCode::OK, existing.clone()),
            None => {
                let n = shop.placed.fetch_add(1, Ordering::SeqCst) + 1;
                let placed = PlacedOrder {
                    id: format!("order-{n}"),
                    key,
                    order,
                };
                orders.push(placed.clone());
                (StatusCode::CREATED, placed)
            }
        }
    };
    let hold = shop.hold_next_create.lock().expect("hold").take();
    if let Some(stored) = hold {
        let _ = stored.send(());
        std::future::pending::<()>().await;
    }
    Ok((status, Json(placed)))
}

async fn list(State(shop): State<Arc<Inner>>) -> Json<Vec<PlacedOrder>> {
    Json(shop.orders.lock().expect("orders").clone())
}

async fn update(
    State(shop): State<Arc<Inner>>,
    Path(id): Path<String>,
    Json(order): Json<NewOrder>,
) -> Result<Json<PlacedOrder>, StatusCode> {
    let mut orders = shop.orders.lock().expect("orders");
    let placed = orders
        .iter_mut()
        .find(|o| o.id == id)
        .ok_or(StatusCode::NOT_FOUND)?;
    placed.order = order;
    Ok(Json(placed.clone()))
}

async fn cancel(State(shop): State<Arc<Inner>>, Path(id): Path<String>) -> StatusCode {
    let mut orders = shop.orders.lock().expect("orders");
    let before = orders.len();
    orders.retain(|o| o.id != id);
    match orders.len() < before {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    }
}

async fn by_key(
    State(shop): State<Arc<Inner>>,
    Path(key): Path<String>,
) -> Result<Json<PlacedOrder>, StatusCode> {
    let orders = shop.orders.lock().expect("orders");
    orders
        .iter()
        .find(|o| o.key == key)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

/// A client for the shop's API.
#[derive(Clone)]
pub struct ShopClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ShopClient {
    /// A client for the shop at `base` (as [`Shop::url`] gives).
    pub fn new(base: impl Into<String>) -> Self {
        ShopClient {
            base: base.into(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The order placed with `key`, if any: a read, safe to repeat.
    pub async fn find(&self, key: &IdempotencyKey) -> anyhow::Result<Option<PlacedOrder>> {
        let req = http::Request::get(format!("{}/orders/by-key/{key}", self.base))
            .body(Full::default())?;
        let (status, body) = self.send(req).await?;
        match status {
            http::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(serde_json::from_slice(&body)?)),
            s => anyhow::bail!("the shop answered {s} to a lookup"),
        }
    }

    /// Places `order` under `key` (sent as the `Idempotency-Key` header).
    pub async fn create(
        &self,
        key: &IdempotencyKey,
        order: &NewOrder,
    ) -> anyhow::Result<PlacedOrder> {
        let req = key
            .attach(http::Request::post(format!("{}/orders", self.base)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(order)?)))?;
        let (status, body) = self.send(req).await?;
        anyhow::ensure!(
            status.is_success(),
            "the shop answered {status} to an order"
        );
        Ok(serde_json::from_slice(&body)?)
    }

    /// Changes order `id` (placed under `key`, sent along) to `order`.
    pub async fn update(
        &self,
        key: &IdempotencyKey,
        id: &str,
        order: &NewOrder,
    ) -> anyhow::Result<PlacedOrder> {
        let req = key
            .attach(http::Request::put(format!("{}/orders/{id}", self.base)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(order)?)))?;
        let (status, body) = self.send(req).await?;
        anyhow::ensure!(
            status.is_success(),
            "the shop answered {status} to a change"
        );
        Ok(serde_json::from_slice(&body)?)
    }

    /// Cancels order `id` (placed under `key`, sent along).
    pub async fn cancel(&self, key: &IdempotencyKey, id: &str) -> anyhow::Result<()> {
        let req = key
            .attach(http::Request::delete(format!("{}/orders/{id}", self.base)))
            .body(Full::default())?;
        let (status, _) = self.send(req).await?;
        anyhow::ensure!(
            status.is_success(),
            "the shop answered {status} to a cancellation"
        );
        Ok(())
    }

    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let resp = self.http.request(req).await.context("calling the shop")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the shop's answer")?
            .to_bytes();
        Ok((status, body))
    }
}
