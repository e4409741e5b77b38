//! `deepdream serve`: starts the studio (the `deepdream-server` crate) and stops it on
//! Ctrl-C or SIGTERM.

use deepdream::backend::device::Placement;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use deepdream_server::Config;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Keep the default (this computer only) unless you mean to let
    /// other machines use it.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Open the page in the default browser.
    #[arg(long)]
    open: bool,
    /// Largest picture upload accepted (K, M or G).
    #[arg(long, value_name = "SIZE", default_value = "50M", value_parser = crate::options::parse_size)]
    max_upload: u64,
}

pub fn serve(args: ServeArgs, target: &Placement) -> Result<()> {
    // A GPU that cannot be opened is said at once, not at the first dream.
    #[cfg(feature = "cuda")]
    if let Placement::Cuda(gpu, _) = target {
        gpu.gpu()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let mut config = Config::new(target.clone());
    config.max_upload_bytes = usize::try_from(args.max_upload).unwrap_or(usize::MAX);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let address = listener.local_addr()?;
        warn_if_exposed(address);
        let url = format!("http://{address}/");
        note!("deepdream studio is at {url} (Ctrl-C stops it)");
        if args.open
            && let Err(error) = webbrowser::open(&url)
        {
            note!("deepdream: cannot open a browser ({error}); open {url} yourself");
        }
        deepdream_server::serve(listener, config, stop_signal()).await?;
        note!("deepdream studio stopped");
        Ok(())
    })
}

/// Warns when the studio can be reached from other machines.
fn warn_if_exposed(address: SocketAddr) {
    if !address.ip().is_loopback() {
        note!(
            "warning: listening on {address}, reachable from other machines: anyone who can \
             reach it can upload pictures and use this computer's processor. Use --host \
             127.0.0.1 to keep it to this computer."
        );
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
