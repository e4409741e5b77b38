//! A studio server on a free loopback port, and a small HTTP client for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use deepdream_server::Config;
use serde_json::Value;

/// A server running on its own runtime thread until dropped.
pub struct Studio {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An answer: the status and the body.
pub struct Answer {
    pub status: u16,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    /// Asserts the status and that the body is a JSON error message; returns the message.
    pub fn error(&self, status: u16) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {body}"))
            .to_string()
    }
}

/// The test configuration: the CPU, a short grace for pages that go away.
pub fn config() -> Config {
    let mut config = Config::new(deepdream::backend::device::open("cpu", true).unwrap());
    config.disconnect_grace = Duration::from_secs(1);
    config
}

impl Studio {
    pub fn start(config: Config) -> Studio {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_tx.send(listener.local_addr().unwrap()).unwrap();
                deepdream_server::serve(listener, config, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let address = address_rx.recv().unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Studio {
            url: format!("http://{address}"),
            agent,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.expect("the server answers");
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(200 << 20)
            .read_to_vec()
            .unwrap();
        Answer { status, bytes }
    }

    pub fn get(&self, path: &str) -> Answer {
        Self::answer(self.agent.get(format!("{}{path}", self.url)).call())
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// Posts over a plain socket, ignoring write errors: a server that refuses an oversized
    /// body answers and closes the connection before the client has sent it all (which an
    /// HTTP client reports as an error instead of the answer).
    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text}"));
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        // A chunked body: the JSON is on the line after the chunk size.
        let json = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
        Answer {
            status,
            bytes: json.as_bytes().to_vec(),
        }
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// Uploads a picture; returns its id.
    pub fn upload(&self, png: &[u8]) -> String {
        let answer = self.post("/api/images", "image/png", png);
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.bytes)
        );
        answer.json()["id"].as_str().unwrap().to_string()
    }

    /// Queues a dream; returns the job's id.
    pub fn submit(&self, request: &Value) -> u64 {
        self.submit_to("/api/dream", request)
    }

    /// Queues a job at `path` (`/api/dream`, `/api/style`, `/api/visualize`); returns its id.
    pub fn submit_to(&self, path: &str, request: &Value) -> u64 {
        let answer = self.post_json(path, request);
        assert_eq!(
            answer.status,
            202,
            "{}",
            String::from_utf8_lossy(&answer.bytes)
        );
        answer.json()["id"].as_u64().unwrap()
    }

    pub fn status(&self, job: u64) -> Value {
        self.get(&format!("/api/jobs/{job}")).json()["status"].clone()
    }

    /// Polls a job until `done(status)` holds, for at most `limit`.
    pub fn wait_for(&self, job: u64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let status = self.status(job);
            if done(&status) {
                return status;
            }
            assert!(start.elapsed() < limit, "job {job} stuck at {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a job's event stream.
    pub fn events(&self, job: u64) -> Events {
        let response = self
            .agent
            .get(format!("{}/api/jobs/{job}/events", self.url))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            lines: BufReader::new(Box::new(response.into_body().into_reader())),
        }
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A Server-Sent Events stream.
pub struct Events {
    lines: BufReader<Box<dyn std::io::Read + Send>>,
}

impl Events {
    /// The next `status` event's data, or `None` when the stream ends.
    pub fn next_status(&mut self) -> Option<Value> {
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:")
                && event == "status"
            {
                return Some(serde_json::from_str(data.trim()).unwrap());
            }
        }
    }
}

/// The README's cat photo scaled to `width` pixels wide, as PNG.
pub fn photo_png(width: u32) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/chelsea.png");
    let photo = image::open(path).unwrap();
    let height = photo.height() * width / photo.width();
    let small = photo.resize_exact(width, height, image::imageops::FilterType::Triangle);
    let mut bytes = std::io::Cursor::new(Vec::new());
    small.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}
