//! One ingest session's packaging: FLV tags (RTMP) or WebM bytes (a browser's
//! MediaRecorder) piped into a supervised ffmpeg that cuts HLS segments into a scratch
//! directory, and an uploader that moves each finished segment
//! into the object store under the room's own numbering, records it, and rewrites the
//! live playlist. ffmpeg runs niced, killed when dropped, with every argument fixed here
//! (no user text reaches its command line); if it dies mid-stream it is started again at
//! the next keyframe, a few times, each run's first segment a discontinuity.

use crate::playlist::{self, Segment};
use crate::rtmp::{flv, Media};
use crate::service::{LiveError, LiveHandle};
use crate::storage;
use object_store::PutPayload;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};

/// ffmpeg runs one session may start (the first and its restarts).
const RUNS_MAX: u32 = 4;
/// How long a write into ffmpeg may block before it counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ffmpeg may take to flush and exit after its input ends.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the scratch directory is looked at for finished segments.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// ffmpeg stderr lines logged per run (it logs warnings and errors only).
const STDERR_LINES_MAX: usize = 50;
/// The largest segment accepted from the scratch directory.
const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PackagerError {
    #[error("ffmpeg could not start: {0} (is ffmpeg installed?)")]
    Spawn(std::io::Error),
    #[error("ffmpeg stopped {0} times")]
    TooManyRestarts(u32),
    #[error("a browser recording must start with its WebM header")]
    NotWebm,
    #[error("scratch directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Packages one session's media.
pub(crate) struct Packager {
    room_id: String,
    session_dir: PathBuf,
    niceness: i32,
    segment_seconds: u64,
    run: Option<Run>,
    runs_started: u32,
    /// The latest sequence header of each track, and the metadata: a new run needs them
    /// before any frame.
    video_header: Option<Media>,
    audio_header: Option<Media>,
    metadata: Option<Media>,
    video_codec: Option<u8>,
    audio_format: Option<u8>,
    /// A browser session's first chunk (its EBML header, tracks and first cluster): a new
    /// run is fed it before the chunks that follow, as MediaRecorder's chunks decode only
    /// after it.
    webm_head: Option<Vec<u8>>,
    uploader: Arc<tokio::sync::Mutex<Uploader>>,
    poller: tokio::task::JoinHandle<()>,
    current_dir: tokio::sync::watch::Sender<Option<PathBuf>>,
}

struct Run {
    child: Child,
    stdin: ChildStdin,
    dir: PathBuf,
}

impl Packager {
    pub(crate) async fn start(live: &LiveHandle, room_id: &str) -> Result<Self, LiveError> {
        let segments = live.segments(room_id).await?;
        let session_dir = live.inner.config.work_dir.join(room_id).join(plaza_kernel::new_id());
        let uploader = Arc::new(tokio::sync::Mutex::new(Uploader {
            live: live.clone(),
            room_id: room_id.to_string(),
            segments,
            uploaded: Default::default(),
        }));
        let (current_dir, mut watched) = tokio::sync::watch::channel::<Option<PathBuf>>(None);
        let polled = uploader.clone();
        let poller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let dir = watched.borrow_and_update().clone();
                if let Some(dir) = dir {
                    polled.lock().await.sync(&dir).await;
                }
            }
        });
        Ok(Self {
            room_id: room_id.to_string(),
            session_dir,
            niceness: live.inner.config.niceness,
            segment_seconds: live.inner.config.segment_duration.as_secs().max(1),
            run: None,
            runs_started: 0,
            video_header: None,
            audio_header: None,
            metadata: None,
            video_codec: None,
            audio_format: None,
            webm_head: None,
            uploader,
            poller,
            current_dir,
        })
    }

    /// Takes one media message. Before a run, only what a run needs is kept, and a run
    /// starts at a video keyframe, so every run's first segment decodes on its own.
    pub(crate) async fn push(&mut self, media: Media) -> Result<(), PackagerError> {
        self.remember(&media);
        if self.run.is_none() {
            let keyframe = media.type_id == 9 && flv::is_keyframe(&media.payload);
            if !keyframe || flv::is_sequence_header(9, &media.payload) {
                return Ok(());
            }
            self.start_run().await?;
        }
        let mut tag = Vec::with_capacity(media.payload.len() + 15);
        flv::tag(media.type_id, media.timestamp, &media.payload, &mut tag);
        if self.write(&tag).await.is_err() {
            tracing::warn!(room = %self.room_id, "ffmpeg stopped taking input; starting it again at the next keyframe");
            self.finish_run().await;
        }
        Ok(())
    }

    /// Takes one chunk of a browser's WebM recording, in order. The first chunk must open
    /// the recording (the EBML magic), or the session is refused; a run that dies is
    /// started again with that first chunk, then the next chunks (ffmpeg's Matroska
    /// demuxer finds the next cluster).
    pub(crate) async fn push_webm(&mut self, chunk: &[u8]) -> Result<(), PackagerError> {
        if self.webm_head.is_none() {
            if !chunk.starts_with(&WEBM_MAGIC) {
                return Err(PackagerError::NotWebm);
            }
            self.webm_head = Some(chunk.to_vec());
            return self.start_webm_run().await;
        }
        if self.run.is_none() {
            self.start_webm_run().await?;
        }
        if self.write(chunk).await.is_err() {
            tracing::warn!(room = %self.room_id, "ffmpeg stopped taking input; starting it again with the next chunk");
            self.finish_run().await;
        }
        Ok(())
    }

    async fn start_webm_run(&mut self) -> Result<(), PackagerError> {
        let dir = self.next_run_dir().await?;
        let args = ffmpeg_args(&dir, Input::WebM, self.segment_seconds);
        self.spawn_run(&dir, &args).await?;
        let head = self.webm_head.clone().unwrap_or_default();
        self.write(&head).await?;
        self.current_dir.send_replace(Some(dir));
        Ok(())
    }

    fn remember(&mut self, media: &Media) {
        match media.type_id {
            9 => {
                self.video_codec = self.video_codec.or(flv::video_codec(&media.payload));
                if flv::is_sequence_header(9, &media.payload) {
                    self.video_header = Some(media.clone());
                }
            }
            8 => {
                self.audio_format = self.audio_format.or(flv::audio_format(&media.payload));
                if flv::is_sequence_header(8, &media.payload) {
                    self.audio_header = Some(media.clone());
                }
            }
            18 => self.metadata = Some(media.clone()),
            _ => {}
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), std::io::Error> {
        let Some(run) = self.run.as_mut() else { return Ok(()) };
        match tokio::time::timeout(WRITE_TIMEOUT, run.stdin.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "ffmpeg took no input for 10 s")),
        }
    }

    async fn next_run_dir(&mut self) -> Result<PathBuf, PackagerError> {
        if self.runs_started >= RUNS_MAX {
            return Err(PackagerError::TooManyRestarts(self.runs_started));
        }
        self.runs_started += 1;
        let dir = self.session_dir.join(format!("run{}", self.runs_started));
        tokio::fs::create_dir_all(&dir).await?;
        Ok(dir)
    }

    async fn start_run(&mut self) -> Result<(), PackagerError> {
        let dir = self.next_run_dir().await?;
        let has_audio = self.audio_format.is_some();
        let input = Input::Flv {
            video_is_h264: self.video_codec == Some(flv::H264),
            audio_is_aac: self.audio_format.map(|format| format == flv::AAC),
        };
        let args = ffmpeg_args(&dir, input, self.segment_seconds);
        self.spawn_run(&dir, &args).await?;
        let mut opening = flv::header(has_audio, true);
        for media in [&self.metadata, &self.video_header, &self.audio_header].into_iter().flatten() {
            flv::tag(media.type_id, media.timestamp, &media.payload, &mut opening);
        }
        self.write(&opening).await?;
        self.current_dir.send_replace(Some(dir));
        Ok(())
    }

    /// Starts a niced ffmpeg with `args`, its stderr to the log; the run is current.
    async fn spawn_run(&mut self, dir: &Path, args: &[OsString]) -> Result<(), PackagerError> {
        let mut command = tokio::process::Command::new("nice");
        command
            .arg("-n")
            .arg(self.niceness.clamp(0, 19).to_string())
            .arg("ffmpeg")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(PackagerError::Spawn)?;
        let stdin = child.stdin.take().ok_or_else(|| PackagerError::Spawn(std::io::Error::other("no stdin")))?;
        if let Some(stderr) = child.stderr.take() {
            let room_id = self.room_id.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                let mut logged = 0;
                while let Ok(Some(line)) = lines.next_line().await {
                    if logged < STDERR_LINES_MAX {
                        logged += 1;
                        let line: String = line.chars().take(300).collect();
                        tracing::warn!(room = %room_id, "ffmpeg: {line}");
                    }
                }
            });
        }
        self.run = Some(Run { child, stdin, dir: dir.to_path_buf() });
        Ok(())
    }

    /// Ends the current run: its input closes, ffmpeg writes its last segment and exits
    /// (or is killed), and the uploader takes what is left.
    async fn finish_run(&mut self) {
        let Some(Run { mut child, stdin, dir }) = self.run.take() else { return };
        drop(stdin);
        match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if !status.success() => tracing::warn!(room = %self.room_id, "ffmpeg ended: {status}"),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(room = %self.room_id, "ffmpeg did not exit within {EXIT_TIMEOUT:?}; killing it");
                let _ = child.kill().await;
            }
        }
        self.current_dir.send_replace(None);
        self.uploader.lock().await.sync(&dir).await;
    }

    /// Ends the session's packaging: the last run flushed and uploaded, the scratch
    /// directory removed.
    pub(crate) async fn finish(mut self) {
        self.finish_run().await;
        self.poller.abort();
        if let Err(error) = tokio::fs::remove_dir_all(&self.session_dir).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(room = %self.room_id, "removing {}: {error}", self.session_dir.display());
            }
        }
    }
}

/// What a session's ffmpeg reads on stdin.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// RTMP's FLV, with what its sequence headers said of the codecs.
    Flv { video_is_h264: bool, audio_is_aac: Option<bool> },
    /// A browser's MediaRecorder WebM (VP8 or VP9, H.264 in some browsers, Opus): always
    /// transcoded, since HLS carries neither VP8/VP9 nor Opus for every player.
    WebM,
}

/// The first bytes of every EBML (WebM, Matroska) file.
const WEBM_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// ffmpeg's arguments: FLV or WebM on stdin, HLS of `segment_seconds` segments out,
/// copying H.264 and AAC and transcoding only what is not.
fn ffmpeg_args(dir: &Path, input: Input, segment_seconds: u64) -> Vec<OsString> {
    let (format, video_is_h264, audio_is_aac) = match input {
        Input::Flv { video_is_h264, audio_is_aac } => ("flv", video_is_h264, audio_is_aac),
        // "0:a:0?" below: a recording without a microphone has no audio track.
        Input::WebM => ("matroska", false, None),
    };
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "warning",
        "-protocol_whitelist",
        "pipe",
        "-f",
        format,
        "-analyzeduration",
        "2000000",
        "-probesize",
        "2000000",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    fn push(args: &mut Vec<OsString>, items: &[&str]) {
        args.extend(items.iter().map(OsString::from));
    }
    if video_is_h264 {
        push(&mut args, &["-c:v", "copy"]);
    } else {
        let keyframes = format!("expr:gte(t,n_forced*{segment_seconds})");
        push(&mut args, &["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"]);
        push(&mut args, &["-force_key_frames", &keyframes]);
    }
    match (input, audio_is_aac) {
        (Input::WebM, _) => push(&mut args, &["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k"]),
        (_, Some(true)) => push(&mut args, &["-map", "0:a:0", "-c:a", "copy"]),
        (_, Some(false)) => push(&mut args, &["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]),
        (_, None) => {}
    }
    let segment_seconds = segment_seconds.to_string();
    push(&mut args, &["-f", "hls", "-hls_time", &segment_seconds]);
    push(&mut args, &["-hls_list_size", "0", "-hls_flags", "temp_file", "-hls_segment_filename"]);
    args.push(dir.join("local%d.ts").into_os_string());
    args.push(dir.join("local.m3u8").into_os_string());
    args
}

/// Moves finished segments from scratch directories into the room's recording.
struct Uploader {
    live: LiveHandle,
    room_id: String,
    /// The room's recording so far (all sessions), for the live window.
    segments: Vec<Segment>,
    /// Segments taken from each run's directory.
    uploaded: std::collections::HashMap<PathBuf, usize>,
}

impl Uploader {
    /// Uploads what ffmpeg finished in `dir` since the last look. Failures are logged and
    /// retried at the next look: the segment stays in the directory until it is stored.
    async fn sync(&mut self, dir: &Path) {
        let listed = match tokio::fs::read_to_string(dir.join("local.m3u8")).await {
            Ok(text) => playlist::parse_ffmpeg_playlist(&text),
            Err(_) => return,
        };
        let done = self.uploaded.get(dir).copied().unwrap_or(0);
        for (index, (name, duration_ms)) in listed.into_iter().enumerate().skip(done) {
            // Only the names this run's arguments make are read.
            if !name.starts_with("local") || !name.ends_with(".ts") || name.contains('/') {
                tracing::warn!(room = %self.room_id, "ffmpeg listed an unexpected segment {name:?}");
                return;
            }
            let segment = Segment {
                seq: self.segments.last().map_or(0, |last| last.seq + 1),
                duration_ms,
                discontinuity: index == 0 && !self.segments.is_empty(),
            };
            if let Err(error) = self.store(&dir.join(&name), segment).await {
                tracing::warn!(room = %self.room_id, "storing segment {}: {error}", segment.seq);
                return;
            }
            self.segments.push(segment);
            self.uploaded.insert(dir.to_path_buf(), index + 1);
            let _ = tokio::fs::remove_file(dir.join(&name)).await;
        }
    }

    async fn store(&self, file: &Path, segment: Segment) -> Result<(), LiveError> {
        let size = tokio::fs::metadata(file).await.map_err(object_error)?.len();
        if size > SEGMENT_BYTES_MAX {
            return Err(object_error(std::io::Error::other(format!("{size} bytes"))));
        }
        let bytes = tokio::fs::read(file).await.map_err(object_error)?;
        let objects = &self.live.inner.objects;
        objects.put(&storage::segment_key(&self.room_id, segment.seq), PutPayload::from(bytes)).await?;
        self.live.record_segment(&self.room_id, segment).await?;
        // An ended room's playlist is the replay, which the session rewrites as it stops.
        if self.live.room_status(&self.room_id).await? == crate::RoomStatus::Ended {
            return Ok(());
        }
        let mut all = self.segments.clone();
        all.push(segment);
        let window = playlist::live_playlist(&all, self.live.inner.config.live_window_segments);
        objects.put(&storage::playlist_key(&self.room_id), PutPayload::from(window.into_bytes())).await?;
        Ok(())
    }
}

fn object_error(error: std::io::Error) -> LiveError {
    LiveError::Storage(object_store::Error::Generic { store: "live scratch", source: Box::new(error) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_copies_h264_and_aac_and_transcodes_anything_else() {
        let text =
            |args: Vec<OsString>| args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let flv = |video_is_h264, audio_is_aac| Input::Flv { video_is_h264, audio_is_aac };
        let copy = text(ffmpeg_args(Path::new("/w"), flv(true, Some(true)), 1));
        assert!(copy.contains("-f flv") && copy.contains("-i pipe:0"), "{copy}");
        assert!(copy.contains("-c:v copy") && copy.contains("-c:a copy") && copy.contains("-hls_time 1"), "{copy}");
        assert!(copy.ends_with("/w/local%d.ts /w/local.m3u8"), "{copy}");
        let transcode = text(ffmpeg_args(Path::new("/w"), flv(false, Some(false)), 1));
        assert!(transcode.contains("-c:v libx264") && transcode.contains("-c:a aac"), "{transcode}");
        let silent = text(ffmpeg_args(Path::new("/w"), flv(true, None), 2));
        assert!(!silent.contains("0:a:0") && silent.contains("-hls_time 2"), "{silent}");
        // A browser's WebM: VP8/VP9 and Opus become H.264 and AAC; a missing microphone
        // is not an error.
        let browser = text(ffmpeg_args(Path::new("/w"), Input::WebM, 1));
        assert!(browser.contains("-f matroska") && browser.contains("-c:v libx264"), "{browser}");
        assert!(browser.contains("-map 0:a:0? -c:a aac"), "{browser}");
    }
}
