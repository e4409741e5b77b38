//! deepdream studio: a local web page to dream with a live preview, served over the
//! deepdream library.
//!
//! [`serve`] answers the page (one self-contained HTML file embedded in the binary) and a
//! small JSON API: upload a picture, queue a dream, follow it as Server-Sent Events with a
//! preview that grows step by step, cancel it, download the PNG with its parameters. Dreams
//! run one at a time on a worker thread; uploads and results stay in memory, and no path
//! from a request ever reaches the file system.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = deepdream_server::Config::new(deepdream::backend::device::open("cpu", true).unwrap());
//! deepdream_server::serve(listener, config, std::future::pending()).await
//! # }
//! ```

mod api;
mod catalog;
mod config;
mod error;
mod jobs;
mod live;
mod requests;

use std::future::Future;

pub use catalog::what_it_produces;
pub use config::Config;
pub use error::ApiError;
pub use jobs::{State, Status};
pub use requests::{
    DreamRequest, DreamSettings, StyleRequest, VideoRequest, VisualizeRequest, WeightedImage,
    ZoomRequest,
};

/// Serves the studio on `listener` until `shutdown` completes; then open event streams end,
/// waiting and running dreams are cancelled, and the function returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let app = api::App::new(config, stopped)?;
    let router = api::router(app.clone());
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .await;
    // Waits for the running job's current step.
    let _ = tokio::task::spawn_blocking(move || app.close()).await;
    served
}
