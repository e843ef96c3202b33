//! A local HTTP receiver for Slack / webhook notifications: records every
//! body, and can answer the first requests with an error.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Receiver {
    pub url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<AtomicUsize>,
}

impl Receiver {
    /// Answers `error` to the first `failures` requests, then 200.
    pub async fn start(failures: usize, error: u16) -> Receiver {
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let (b, r) = (bodies.clone(), requests.clone());
        let app = Router::new().route(
            "/hooks/{*path}",
            post(move |body: Bytes| {
                let (b, r) = (b.clone(), r.clone());
                async move {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    if n < failures {
                        return StatusCode::from_u16(error).unwrap();
                    }
                    b.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/T0000/B0000/s3cr3t-webhook-token",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            bodies,
            requests,
        }
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
