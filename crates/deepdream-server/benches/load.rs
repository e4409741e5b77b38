//! Load on the studio while it dreams: one dream alone, the same dream while 20 clients
//! poll the status and list endpoints (each every `--interval` ms) for `--seconds`; prints
//! the request latencies (p50, p99, max) and the dream's time against the mean of the
//! unloaded runs before and after.
//!
//! `cargo bench -p deepdream-server --bench load [-- --seconds 30 --clients 20 --interval 100]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Studio, config};
use serde_json::json;

fn option(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// Dreams the README photo with VGG16 until done; returns the server's dream time.
fn dream(studio: &Studio, image: &str, iterations: u64) -> (u64, f64) {
    let job = studio.submit(&json!({"image": image, "iterations": iterations, "seed": 1}));
    let status = studio.wait_for(job, Duration::from_secs(3600), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    (job, status["elapsed_seconds"].as_f64().unwrap())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let seconds = option("--seconds", 30);
    let clients = option("--clients", 20);
    let interval = option("--interval", 100);
    let studio = Arc::new(Studio::start(config()));
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/chelsea.png"
    ))
    .unwrap();
    let image = studio.upload(&photo);

    // Warm-up (loads the weights), then a dream sized to last about `seconds`, unloaded.
    let (_, warm) = dream(&studio, &image, 2);
    let per_iteration = warm / 2.0;
    let iterations = ((seconds as f64 / per_iteration).ceil() as u64).max(2);
    let (_, before) = dream(&studio, &image, iterations);

    // The same dream with clients polling.
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = (0..clients)
        .map(|i| {
            let studio = studio.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let path = if i % 2 == 0 {
                        "/api/jobs"
                    } else {
                        "/api/jobs/1"
                    };
                    let start = Instant::now();
                    let answer = studio.get(path);
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                    assert_eq!(answer.status, 200);
                    std::thread::sleep(Duration::from_millis(interval));
                }
                latencies
            })
        })
        .collect();
    let (_, loaded) = dream(&studio, &image, iterations);
    stop.store(true, Ordering::SeqCst);
    let (_, after) = dream(&studio, &image, iterations);
    let alone = (before + after) / 2.0;
    let mut latencies: Vec<f64> = pollers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    latencies.sort_by(f64::total_cmp);

    println!(
        "vgg16 dream of the 451x300 photo, 4 octaves x {iterations} iterations; {clients} clients \
         polling /api/jobs and /api/jobs/ID every {interval} ms"
    );
    println!(
        "requests: {} in {loaded:.1} s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    println!(
        "dream: {before:.1} s and {after:.1} s alone (before and after), {loaded:.1} s under load \
         ({:+.1} % against their mean)",
        (loaded / alone - 1.0) * 100.0
    );
}
