//! ffprobe and ffmpeg as subprocesses. Every argument is built here from numbers and
//! paths Plaza made itself; no user text (a caption, a file name) ever reaches a
//! command line. Each run is niced below the server, killed when its future is dropped
//! (a lost lease, a shutdown) or when it outlives its time-out, and keeps only the tail
//! of its stderr for the log.

use serde::Deserialize;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The most stdout read from one run (ffprobe's JSON is a few kilobytes).
const STDOUT_MAX_BYTES: u64 = 1024 * 1024;
/// The stderr lines kept for the log.
const STDERR_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} could not start: {source} (is ffmpeg installed?)")]
    Spawn { program: &'static str, source: std::io::Error },
    #[error("{program} ran longer than {timeout:?}")]
    TimedOut { program: &'static str, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: &'static str, status: String, stderr: String },
    #[error("{program}: {source}")]
    Io { program: &'static str, source: std::io::Error },
}

/// Runs `program` (`ffmpeg` or `ffprobe`) with `args` at `niceness`; its stdout.
pub async fn run(
    program: &'static str,
    args: &[OsString],
    niceness: i32,
    timeout: Duration,
) -> Result<Vec<u8>, ProcessError> {
    let mut command = tokio::process::Command::new("nice");
    command
        .arg("-n")
        .arg(niceness.clamp(0, 19).to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn { program, source })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let read_stdout = async {
            let mut bytes = Vec::new();
            if let Some(stdout) = stdout {
                stdout.take(STDOUT_MAX_BYTES).read_to_end(&mut bytes).await?;
            }
            Ok::<_, std::io::Error>(bytes)
        };
        let read_stderr = async {
            let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
            if let Some(stderr) = stderr {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.chars().take(300).collect());
                }
            }
            tail.into_iter().collect::<Vec<_>>().join(" | ")
        };
        let (stdout, stderr) = tokio::join!(read_stdout, read_stderr);
        let status = child.wait().await.map_err(|source| ProcessError::Io { program, source })?;
        let stdout = stdout.map_err(|source| ProcessError::Io { program, source })?;
        if status.success() {
            if !stderr.is_empty() {
                tracing::debug!("{program}: {stderr}");
            }
            Ok(stdout)
        } else {
            Err(ProcessError::Failed { program, status: status.to_string(), stderr })
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| ProcessError::TimedOut { program, timeout })?
}

/// What ffprobe says of a file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Probe {
    #[serde(default)]
    pub format: ProbeFormat,
    #[serde(default)]
    pub streams: Vec<ProbeStream>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProbeFormat {
    #[serde(default)]
    pub format_name: String,
    pub duration: Option<String>,
    pub bit_rate: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProbeStream {
    #[serde(default)]
    pub codec_type: String,
    #[serde(default)]
    pub codec_name: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub pix_fmt: Option<String>,
    pub bit_rate: Option<String>,
}

impl Probe {
    pub fn duration_seconds(&self) -> Option<f64> {
        self.format.duration.as_deref()?.parse::<f64>().ok().filter(|seconds| seconds.is_finite())
    }

    pub fn video(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|stream| stream.codec_type == "video")
    }

    pub fn audio(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|stream| stream.codec_type == "audio")
    }

    /// The video stream's bit rate, or the whole file's when the stream has none.
    pub fn video_bit_rate(&self) -> Option<i64> {
        let stream = self.video()?.bit_rate.as_deref().and_then(|rate| rate.parse().ok());
        stream.or_else(|| self.format.bit_rate.as_deref().and_then(|rate| rate.parse().ok()))
    }

    /// Whether this is a moving picture at all: a still image is probed as one frame of
    /// "video" by the image demuxers.
    pub fn is_video(&self) -> bool {
        let still = self.format.format_name.contains("image2")
            || self.format.format_name.ends_with("_pipe")
            || matches!(self.video().map(|stream| stream.codec_name.as_str()), Some("png" | "mjpeg" | "webp" | "bmp"));
        self.video().is_some() && !still && self.duration_seconds().is_some_and(|seconds| seconds >= 0.1)
    }
}

/// Input options for a file a user uploaded: it is read only as a local file in one of
/// the common video containers. Without them a "video" that is really an HLS playlist or
/// a concat list could make ffmpeg open other local files or URLs.
pub const UNTRUSTED_INPUT: [&str; 4] =
    ["-protocol_whitelist", "file", "-format_whitelist", "mov,matroska,webm,avi,mpegts,flv,mpeg"];

/// Probes `file`, an upload.
pub async fn probe(file: &Path, niceness: i32, timeout: Duration) -> Result<Probe, ProcessError> {
    let mut args: Vec<OsString> = UNTRUSTED_INPUT.iter().map(OsString::from).collect();
    args.extend([
        "-v".into(),
        "error".into(),
        "-print_format".into(),
        "json".into(),
        "-show_format".into(),
        "-show_streams".into(),
        file.as_os_str().to_owned(),
    ]);
    let stdout = run("ffprobe", &args, niceness, timeout).await?;
    serde_json::from_slice(&stdout).map_err(|error| ProcessError::Failed {
        program: "ffprobe",
        status: "unreadable output".into(),
        stderr: error.to_string(),
    })
}
