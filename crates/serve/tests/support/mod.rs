//! A server in this process on a free port, stopped when dropped, and what the tests share.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use edgerun_runtime::{Session, SessionOptions};
use edgerun_serve::server::{serve_until, ServedModel, ServerOptions};

pub struct TestServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<edgerun_serve::Result<()>>>,
}

impl TestServer {
    pub fn start(models: Vec<ServedModel>, options: ServerOptions) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let options = ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..options
        };
        let thread = std::thread::spawn(move || {
            serve_until(
                models,
                options,
                move |a| bound.send(a).unwrap(),
                async move {
                    let _ = stopped.await;
                },
            )
        });
        let address = address.recv().expect("the server binds");
        Self {
            url: format!("http://{address}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result
                    .expect("the server thread")
                    .expect("the server stops cleanly");
            }
        }
    }
}

/// The model at `path` served as `name` with `options`.
pub fn served(name: &str, path: &Path, options: SessionOptions) -> ServedModel {
    ServedModel {
        name: name.into(),
        session: Arc::new(Session::open(path, options).unwrap()),
        counters: Default::default(),
    }
}

/// Cosine similarity of two equally long vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}
