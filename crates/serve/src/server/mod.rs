//! `edgerun serve`: the Open Inference Protocol v2 over HTTP/1.1 (axum on tokio), so KServe's
//! and Triton's clients work against it.
//!
//! Requests are admitted, not just accepted: at most `concurrency` run at once (the kernels
//! already use every core), at most `queue` more wait, and the next gets 503. Each has
//! `timeout` from arrival to answer (504 after it; a pass already running finishes, holding
//! its slot, so the bound on concurrent passes stays true). Bodies over `body_limit` get 413.
//! Every error is `{"error": "..."}` with its status, and the server goes on serving: a pass
//! that panics answers 500. SIGINT or SIGTERM stops accepting, lets in-flight requests finish,
//! and returns.

mod handlers;
pub mod models;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use models::{Route, ServedModel};

use crate::{Result, ServeError};

/// Limits and address.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Requests computing at once.
    pub concurrency: usize,
    /// Requests waiting beyond those, at most.
    pub queue: usize,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// From arrival to answer.
    pub timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            concurrency: 1,
            queue: 64,
            body_limit: 64 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub models: Vec<ServedModel>,
    pub options: ServerOptions,
    /// `concurrency + queue` permits: a request without one is turned away.
    pub admitted: Arc<Semaphore>,
    /// `concurrency` permits: held while a pass runs.
    pub computing: Arc<Semaphore>,
    pub draining: AtomicBool,
}

/// Serves `models` until SIGINT or SIGTERM, then drains. `bound` is called with the address
/// once listening (the port chosen by the system where `listen` asks for port 0).
pub fn serve(
    models: Vec<ServedModel>,
    options: ServerOptions,
    bound: impl FnOnce(SocketAddr),
) -> Result<()> {
    serve_until(models, options, bound, std::future::pending())
}

/// The same, stopping also when `stop` resolves (a program that embeds the server).
pub fn serve_until(
    models: Vec<ServedModel>,
    options: ServerOptions,
    bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Listen {
            address: options.listen.to_string(),
            source,
        })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Listen {
                address: options.listen.to_string(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| ServeError::Listen {
            address: options.listen.to_string(),
            source,
        })?;
        let app = Arc::new(App {
            admitted: Arc::new(Semaphore::new(options.concurrency + options.queue)),
            computing: Arc::new(Semaphore::new(options.concurrency)),
            models,
            options,
            draining: AtomicBool::new(false),
        });
        // The handlers are installed before the address is announced: a signal sent by whoever
        // waits for that announcement must drain, not kill.
        let signals = Signals::install();
        bound(address);
        let router = handlers::router(Arc::clone(&app));
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal(app, signals, stop))
            .await
            .map_err(|source| ServeError::Listen {
                address: address.to_string(),
                source,
            })
    })
}

/// SIGINT and SIGTERM, caught from the moment they are installed (`None` where the system
/// refuses one: that signal then keeps its default action).
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }
}

async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Resolves at the first SIGINT or SIGTERM (or `stop`), after marking the server not ready.
async fn shutdown_signal(
    app: Arc<App>,
    signals: Signals,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        _ = received(signals.interrupt) => {},
        _ = received(signals.terminate) => {},
        _ = stop => {},
    }
    app.draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!("edgerun serve: draining in-flight requests, then exiting");
}
