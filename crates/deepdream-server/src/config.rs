//! The server's settings.

use std::time::Duration;

use deepdream::backend::device::Placement;

/// The server's limits and where it computes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the dreams run.
    pub placement: Placement,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: usize,
    /// Most jobs waiting in the queue (more are refused with 429).
    pub max_waiting_jobs: usize,
    /// Uploads and finished jobs kept in memory (the oldest are forgotten).
    pub max_kept: usize,
    /// Longest time a request may take (event streams excepted).
    pub request_timeout: Duration,
    /// How long a job whose page stopped listening to its events is kept before it is
    /// cancelled.
    pub disconnect_grace: Duration,
}

impl Config {
    /// The defaults: 50 MB uploads, 32 waiting jobs, 100 pictures kept, 2-minute requests,
    /// 10 s grace for a page that went away.
    pub fn new(placement: Placement) -> Self {
        Config {
            placement,
            max_upload_bytes: 50 * 1000 * 1000,
            max_waiting_jobs: 32,
            max_kept: 100,
            request_timeout: Duration::from_secs(120),
            disconnect_grace: Duration::from_secs(10),
        }
    }
}
