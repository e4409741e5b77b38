//! The HTTP API the page uses (documented in the README): JSON in and out, pictures as
//! bytes, job progress as Server-Sent Events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deepdream::media::ffmpeg;
use deepdream::{media::image_io, networks::imagenet};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::catalog::{self, Catalog, EXAMPLES, ModelInfo};
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{Job, JobSpec, Queue, QueueError, STYLE_MODEL, Upload, VideoUpload};
use crate::live::{self, Checked, LiveHub, LiveRequest};
use crate::requests::{
    DreamRequest, DreamSettings, SettingsPictures, StyleRequest, VideoRequest, VisualizeRequest,
    ZoomRequest,
};

/// The page, with its styles and script inline.
const PAGE: &str = include_str!("page.html");

/// Uploaded videos kept (the oldest file is deleted beyond this).
const MAX_VIDEOS: usize = 8;

/// Largest JSON body accepted.
const MAX_JSON_BYTES: usize = 64 << 10;

/// The server's shared state.
pub struct App {
    config: Config,
    catalog: Catalog,
    queue: Arc<Queue>,
    uploads: Mutex<VecDeque<Arc<Upload>>>,
    videos: Mutex<VecDeque<Arc<VideoUpload>>>,
    next_upload: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// The private folder for uploaded videos and animations in the making.
    scratch: Mutex<Option<tempfile::TempDir>>,
    scratch_path: PathBuf,
    /// The live dream and its recordings.
    live: Arc<LiveHub>,
}

impl App {
    /// The state for `config`; its worker thread starts now. Event streams end when
    /// `shutdown` turns true.
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> std::io::Result<Arc<App>> {
        let scratch = tempfile::Builder::new()
            .prefix("deepdream-studio-")
            .tempdir()?;
        let scratch_path = scratch.path().to_path_buf();
        let queue = Queue::start(
            config.placement.clone(),
            config.max_waiting_jobs,
            config.max_kept,
            config.disconnect_grace,
            scratch_path.clone(),
        );
        Ok(Arc::new(App {
            catalog: Catalog::new(config.placement.tensors()),
            queue,
            uploads: Mutex::new(VecDeque::new()),
            videos: Mutex::new(VecDeque::new()),
            next_upload: AtomicU64::new(1),
            shutdown,
            scratch: Mutex::new(Some(scratch)),
            live: Arc::new(LiveHub::new(scratch_path.clone())),
            scratch_path,
            config,
        }))
    }

    /// Stops the queue (waiting and running jobs are cancelled, the worker stops) and
    /// deletes the private folder.
    pub fn close(&self) {
        self.queue.close();
        self.videos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        drop(
            self.scratch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// The guide and mask uploads the dream settings name, if any.
    fn pictures(&self, settings: &DreamSettings) -> ApiResult<SettingsPictures> {
        let find = |id: &Option<String>| id.as_deref().map(|id| self.upload(id)).transpose();
        Ok(SettingsPictures {
            guide: find(&settings.guide)?,
            mask: find(&settings.mask)?,
        })
    }

    /// A live dream's start message checked against its model.
    async fn check_live(&self, mut request: LiveRequest) -> Result<Checked, String> {
        let info = self
            .catalog
            .model(&request.dream.model)
            .await
            .map_err(|e| e.message)?;
        let pictures = self.pictures(&request.dream).map_err(|e| e.message)?;
        let size = (request.width, request.height);
        let (model, dream) = request
            .dream
            .params(&info, size, &pictures, random_seed())
            .map_err(|e| e.message)?;
        let settings = request.settings(dream)?;
        Ok(Checked {
            model,
            settings,
            request,
        })
    }

    fn video(&self, id: &str) -> ApiResult<Arc<VideoUpload>> {
        let videos = self.videos.lock().unwrap_or_else(|p| p.into_inner());
        videos
            .iter()
            .find(|v| v.id == id)
            .cloned()
            .ok_or_else(|| ApiError::unprocessable(format!("no uploaded video has id '{id}'")))
    }

    fn upload(&self, id: &str) -> ApiResult<Arc<Upload>> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads
            .iter()
            .find(|u| u.id == id)
            .cloned()
            .ok_or_else(|| ApiError::unprocessable(format!("no uploaded picture has id '{id}'")))
    }

    fn job(&self, id: &str) -> ApiResult<Arc<Job>> {
        id.parse()
            .ok()
            .and_then(|id| self.queue.get(id))
            .ok_or_else(|| ApiError::not_found(format!("no job has id '{id}'")))
    }
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    let timeout = app.config.request_timeout;
    Router::new()
        .route("/", get(page))
        .route("/api/models", get(list_models))
        .route("/api/models/{name}", get(model_info))
        .route("/api/classes", get(classes))
        .route("/api/examples", get(examples))
        .route("/examples/{name}", get(example))
        .route(
            "/api/images",
            post(upload).layer(DefaultBodyLimit::max(app.config.max_upload_bytes)),
        )
        .route("/api/images/{id}", get(uploaded_image))
        .route(
            "/api/videos",
            post(upload_video).layer(DefaultBodyLimit::max(app.config.max_upload_bytes)),
        )
        .route("/api/dream", post(submit::<DreamRequest>))
        .route("/api/style", post(submit::<StyleRequest>))
        .route("/api/visualize", post(submit::<VisualizeRequest>))
        .route("/api/zoom", post(submit::<ZoomRequest>))
        .route("/api/video", post(submit::<VideoRequest>))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(job_status))
        .route("/api/jobs/{id}/preview", get(preview))
        .route("/api/jobs/{id}/result", get(result))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        // The event stream lasts as long as its job: no time limit.
        .route("/api/jobs/{id}/events", get(events))
        .route("/api/live", get(live_socket))
        .route("/api/live/recordings/{id}", get(live_recording))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(app)
}

/// Answers 408 with a JSON message when a request takes longer than `limit`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such page or API endpoint")
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

async fn list_models() -> Json<Value> {
    Json(json!(catalog::model_summaries()))
}

async fn model_info(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<Response> {
    let info = app.catalog.model(&name).await?;
    Ok(Json(info.as_ref().clone()).into_response())
}

async fn classes() -> Json<Value> {
    Json(json!(imagenet::class_names()))
}

async fn examples() -> Json<Value> {
    let list: Vec<Value> = EXAMPLES
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "title": e.title,
                "kind": e.kind,
                "url": format!("/examples/{}", e.name),
            })
        })
        .collect();
    Json(json!(list))
}

async fn example(Path(name): Path<String>) -> ApiResult<Response> {
    let example = EXAMPLES
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no example called '{name}'")))?;
    Ok(([(header::CONTENT_TYPE, example.media_type)], example.bytes).into_response())
}

/// The body, or the extractor's rejection (too large, unreadable) as a JSON error.
fn body_of(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        let message = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is over the size limit".to_string(),
            _ => rejection.body_text(),
        };
        ApiError::new(rejection.status(), message)
    })
}

/// `POST /api/images`: the body is the picture's bytes (PNG, JPEG, WebP, GIF, BMP, TIFF).
async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let bytes = body_of(body)?;
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or("").to_ascii_lowercase();
        if !(kind.starts_with("image/") || kind.starts_with("application/octet-stream")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("only pictures are accepted, not {kind}"),
            ));
        }
    }
    let format = image::guess_format(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the data is not a picture (PNG, JPEG, WebP, GIF, BMP or TIFF)",
        )
    })?;
    let id = format!("u{}", app.next_upload.fetch_add(1, Ordering::SeqCst));
    let upload = tokio::task::spawn_blocking(move || decode_upload(id, bytes.to_vec(), format))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let answer = json!({
        "id": upload.id,
        "width": upload.rgb.width(),
        "height": upload.rgb.height(),
        "url": format!("/api/images/{}", upload.id),
    });
    let mut uploads = app.uploads.lock().unwrap_or_else(|p| p.into_inner());
    uploads.push_back(Arc::new(upload));
    while uploads.len() > app.config.max_kept {
        uploads.pop_front();
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Decodes an upload: a picture whose size is over the limits (a decompression bomb) is 413,
/// one that cannot be decoded 422.
fn decode_upload(id: String, bytes: Vec<u8>, format: image::ImageFormat) -> ApiResult<Upload> {
    let reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ApiError::unprocessable(format!("cannot read the picture: {e}")))?;
    let decoded_bytes = u64::from(width) * u64::from(height) * 4;
    if width.max(height) > image_io::MAX_SIDE || decoded_bytes > image_io::MAX_DECODE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the picture is {width}x{height}: over the limits ({} pixels a side, {} MiB decoded)",
                image_io::MAX_SIDE,
                image_io::MAX_DECODE_BYTES >> 20
            ),
        ));
    }
    let picture = image_io::decode(&bytes)?;
    let (rgb, alpha) = image_io::split_alpha(&picture);
    Ok(Upload {
        id,
        media_type: format.to_mime_type(),
        bytes,
        rgb,
        alpha,
    })
}

/// `POST /api/videos`: the body is a video file (anything FFmpeg reads); it is kept in the
/// server's private folder until the server stops or it is among the oldest.
async fn upload_video(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let bytes = body_of(body)?;
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or("").to_ascii_lowercase();
        if !(kind.starts_with("video/") || kind.starts_with("application/octet-stream")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("only videos are accepted here, not {kind}"),
            ));
        }
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is empty, not a video",
        ));
    }
    let id = format!("v{}", app.next_upload.fetch_add(1, Ordering::SeqCst));
    let path = app.scratch_path.join(format!("{id}.video"));
    let video = tokio::task::spawn_blocking(move || -> ApiResult<VideoUpload> {
        ffmpeg::check_installed()
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        std::fs::write(&path, &bytes).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot keep the video: {e}"),
            )
        })?;
        let info = ffmpeg::probe(&path).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("not a video FFmpeg can read: {e}")
                    .replace(&path.display().to_string(), "the upload"),
            )
        })?;
        Ok(VideoUpload { id, path, info })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let info = &video.info;
    let answer = json!({
        "id": video.id,
        "width": info.width,
        "height": info.height,
        "fps": info.frame_rate.fps(),
        "frames": info.frame_estimate(),
        "duration": info.duration,
        "audio": info.audio_codec.is_some(),
    });
    let mut videos = app.videos.lock().unwrap_or_else(|p| p.into_inner());
    videos.push_back(Arc::new(video));
    while videos.len() > MAX_VIDEOS {
        videos.pop_front();
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn uploaded_image(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let upload = app
        .upload(&id)
        .map_err(|_| ApiError::not_found(format!("no uploaded picture has id '{id}'")))?;
    Ok((
        [(header::CONTENT_TYPE, upload.media_type)],
        upload.bytes.clone(),
    )
        .into_response())
}

/// Parses a JSON body: malformed JSON is 400, well-formed JSON with missing or wrong fields
/// 422.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = format!("invalid request: {e}");
        match e.classify() {
            serde_json::error::Category::Data => ApiError::unprocessable(message),
            _ => ApiError::bad_request(message),
        }
    })
}

/// A fresh random seed.
fn random_seed() -> u64 {
    std::hash::RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000_000
}

/// A request that starts a job, as `POST /api/{mode}` takes it.
trait JobRequest: serde::de::DeserializeOwned + Send + 'static {
    /// The uploads it names.
    type Inputs: Send;
    /// Looks up the uploads it names (404 for one that is not there).
    fn inputs(&self, app: &App) -> ApiResult<Self::Inputs>;
    /// The model it runs on.
    fn model(&self) -> &str;
    /// Checks it against the model and its uploads, with `seed` if it names none: the job.
    fn into_job(self, info: &ModelInfo, inputs: Self::Inputs, seed: u64) -> ApiResult<JobSpec>;
}

/// `POST /api/{dream,style,visualize,zoom,video}`: checks a request and queues its job (202
/// with the job).
async fn submit<R: JobRequest>(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let request: R = parse_json(&body_of(body)?)?;
    let inputs = request.inputs(&app)?;
    let info = app.catalog.model(request.model()).await?;
    let spec = request.into_job(&info, inputs, random_seed())?;
    queue(&app, spec)
}

impl JobRequest for DreamRequest {
    type Inputs = (Arc<Upload>, SettingsPictures);
    fn inputs(&self, app: &App) -> ApiResult<Self::Inputs> {
        Ok((app.upload(&self.image)?, app.pictures(&self.settings)?))
    }
    fn model(&self) -> &str {
        &self.settings.model
    }
    fn into_job(
        self,
        info: &ModelInfo,
        (source, pictures): Self::Inputs,
        seed: u64,
    ) -> ApiResult<JobSpec> {
        self.check(info, source, &pictures, seed)
    }
}

impl JobRequest for StyleRequest {
    type Inputs = (Arc<Upload>, Vec<Arc<Upload>>);
    fn inputs(&self, app: &App) -> ApiResult<Self::Inputs> {
        let styles = self.styles.iter().map(|s| app.upload(&s.image));
        Ok((app.upload(&self.image)?, styles.collect::<ApiResult<_>>()?))
    }
    fn model(&self) -> &str {
        STYLE_MODEL
    }
    fn into_job(
        self,
        info: &ModelInfo,
        (source, styles): Self::Inputs,
        seed: u64,
    ) -> ApiResult<JobSpec> {
        self.check(info, source, styles, seed)
    }
}

impl JobRequest for VisualizeRequest {
    type Inputs = ();
    fn inputs(&self, _: &App) -> ApiResult<()> {
        Ok(())
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn into_job(self, info: &ModelInfo, (): (), seed: u64) -> ApiResult<JobSpec> {
        self.check(info, seed)
    }
}

impl JobRequest for ZoomRequest {
    type Inputs = (Arc<Upload>, SettingsPictures);
    fn inputs(&self, app: &App) -> ApiResult<Self::Inputs> {
        Ok((app.upload(&self.image)?, app.pictures(&self.dream)?))
    }
    fn model(&self) -> &str {
        &self.dream.model
    }
    fn into_job(
        self,
        info: &ModelInfo,
        (source, pictures): Self::Inputs,
        seed: u64,
    ) -> ApiResult<JobSpec> {
        self.check(info, source, &pictures, seed)
    }
}

impl JobRequest for VideoRequest {
    type Inputs = (Arc<VideoUpload>, SettingsPictures);
    fn inputs(&self, app: &App) -> ApiResult<Self::Inputs> {
        Ok((app.video(&self.video)?, app.pictures(&self.dream)?))
    }
    fn model(&self) -> &str {
        &self.dream.model
    }
    fn into_job(
        self,
        info: &ModelInfo,
        (video, pictures): Self::Inputs,
        seed: u64,
    ) -> ApiResult<JobSpec> {
        self.check(info, video, &pictures, seed)
    }
}

/// Queues a checked job: 202 with the job, 429 when the queue is full.
fn queue(app: &App, spec: JobSpec) -> ApiResult<(StatusCode, Json<Value>)> {
    let job = app.queue.submit(spec).map_err(|e| match e {
        QueueError::Full(n) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{n} jobs are already waiting; try again when one has finished"),
        ),
        QueueError::Closed => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
        }
    })?;
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
}

/// A job as the API shows it.
fn job_json(job: &Job) -> Value {
    let task = &job.spec.task;
    json!({
        "id": job.id,
        "mode": task.mode(),
        "model": task.model(),
        "request": job.spec.request,
        "command": job.spec.command,
        "status": job.status(),
        "source": task.source().map(|s| format!("/api/images/{}", s.id)),
        "preview": format!("/api/jobs/{}/preview", job.id),
        "result": format!("/api/jobs/{}/result", job.id),
        "result_type": job.result().map(|output| output.media_type),
        "events": format!("/api/jobs/{}/events", job.id),
    })
}

async fn list_jobs(State(app): State<Arc<App>>) -> Json<Value> {
    let jobs: Vec<Value> = app.queue.list().iter().map(|j| job_json(j)).collect();
    Json(json!(jobs))
}

async fn job_status(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = app.job(&id)?;
    Ok(Json(job_json(&job)))
}

/// `GET /api/live`: a live dream over a WebSocket (see [`live`]).
async fn live_socket(State(app): State<Arc<App>>, upgrade: WebSocketUpgrade) -> Response {
    let (hub, placement) = (app.live.clone(), app.config.placement.clone());
    upgrade.on_upgrade(move |socket| async move {
        let check = |request| async move { app.check_live(request).await };
        live::session(hub, placement, socket, check).await;
    })
}

/// `GET /api/live/recordings/{id}`: a finished live recording (MP4).
async fn live_recording(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found(format!("no live recording has id '{id}'"));
    let number: u64 = id.parse().map_err(|_| missing())?;
    let path = app.live.recording(number).ok_or_else(missing)?;
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(missing)?;
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"live-{number}.mp4\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = app.job(&id)?;
    app.queue.cancel(&job);
    Ok(Json(job_json(&job)))
}

async fn preview(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Response> {
    let job = app.job(&id)?;
    let jpeg = job
        .preview()
        .ok_or_else(|| ApiError::not_found("no preview yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg.as_ref().clone(),
    )
        .into_response())
}

async fn result(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Response> {
    let job = app.job(&id)?;
    let output = job.result().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("job {} is {:?}, not done", job.id, job.status().state).to_lowercase(),
        )
    })?;
    let name = format!(
        "attachment; filename=\"{}-{}.{}\"",
        job.spec.task.mode(),
        job.id,
        output.extension
    );
    Ok((
        [
            (header::CONTENT_TYPE, output.media_type.to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        output.bytes.clone(),
    )
        .into_response())
}

/// `GET /api/jobs/{id}/events`: the job's status as a `status` event now and after every
/// change, until it ends. While a page listens, the job counts as watched; when none has
/// listened for the disconnect grace, the job is cancelled.
async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = app.job(&id)?;
    let watcher = job.watch();
    let start = (job.subscribe(), app.shutdown.clone(), watcher, true);
    let stream = futures_util::stream::unfold(Some(start), |state| async move {
        let (mut status, mut shutdown, watcher, first) = state?;
        if !first {
            tokio::select! {
                changed = status.changed() => changed.ok()?,
                _ = shutdown.wait_for(|stop| *stop) => return None,
            }
        }
        let now = status.borrow_and_update().clone();
        let event = Event::default()
            .event("status")
            .json_data(&now)
            .unwrap_or_else(|_| Event::default().comment("unserialisable status"));
        let next = (!now.state.is_final()).then_some((status, shutdown, watcher, false));
        Some((Ok(event), next))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(2))))
}
