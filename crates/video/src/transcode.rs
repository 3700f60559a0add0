//! Transcoding as a durable job in the `videos` row itself.
//!
//! Every node polls for a `processing` video whose `next_attempt_at` has come and whose
//! lease is free or expired, and claims it with one conditional update (the same
//! condition re-checked under the row lock, so two nodes never both win). While it
//! works it renews the lease; if a renewal finds the lease gone (another node took over
//! after a stall) the ffmpeg it runs is killed. A SIGKILL leaves the lease to expire and
//! the job to be claimed again after a restart: outputs go to fixed keys, so a second
//! run overwrites the first, and only the run holding the lease may mark the video
//! `ready`, once. A failure that ffmpeg might not repeat is retried after
//! `retry_base · 2^(attempt−1)`; one that it would (not a video, too long) fails the
//! video at once. At most `transcode_concurrency` jobs run per node, niced.
//!
//! The ladder: 720p and 360p H.264/AAC (the short side, so portrait videos stay sharp),
//! never upscaled, bit rate capped, `veryfast`, a keyframe every 2 s; the 720p file is
//! also the fast-start MP4; HLS is cut from both files without re-encoding (2 s
//! segments); the poster is a frame from the first second. A source already within the
//! top rung (H.264, 4:2:0, short side ≤ 720, ≤ 3 Mb/s) is copied, not re-encoded.

use crate::ffmpeg::{self, Probe, ProcessError};
use crate::service::{VideoError, VideoHandle};
use crate::storage;
use plaza_kernel::Timestamp;
use plaza_store::Row;
use serde_json::json;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The short side of each rung, best first.
pub const LADDER: [i64; 2] = [720, 360];
/// Bit rate caps of the rungs, in kb/s (`-maxrate`).
const MAXRATE_KBPS: [i64; 2] = [2_500, 800];
/// A source H.264 stream at most this fast may be copied as the top rung.
const COPY_MAX_BITS_PER_SECOND: i64 = 3_000_000;
/// Seconds between keyframes, and so the HLS segment length.
const KEYFRAME_SECONDS: u32 = 2;

/// What a transcode of one source will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Width and height of each rung.
    pub rungs: Vec<(i64, i64)>,
    /// Whether the top rung copies the source's video stream.
    pub copy_top: bool,
    pub has_audio: bool,
    /// Whether the audio is AAC already (then copied).
    pub copy_audio: bool,
}

/// How a job ended.
#[derive(Debug)]
enum Outcome {
    Ready {
        duration_ms: i64,
        width: i64,
        height: i64,
    },
    /// A failure ffmpeg would repeat: the video is `failed` with this code.
    Rejected(&'static str),
}

impl Plan {
    /// The ladder for a probed source.
    pub fn for_source(probe: &Probe) -> Option<Plan> {
        let video = probe.video()?;
        let (width, height) = (video.width?, video.height?);
        if width <= 0 || height <= 0 {
            return None;
        }
        let short = width.min(height);
        let mut rungs: Vec<(i64, i64)> = LADDER
            .iter()
            .map(|&target| {
                let target = target.min(short);
                let scale = |side: i64| ((side as f64 * target as f64 / short as f64 / 2.0).round() as i64 * 2).max(2);
                if width <= height {
                    (target / 2 * 2, scale(height))
                } else {
                    (scale(width), target / 2 * 2)
                }
            })
            .collect();
        rungs.dedup();
        let copy_top = video.codec_name == "h264"
            && video.pix_fmt.as_deref() == Some("yuv420p")
            && short <= LADDER[0]
            && short % 2 == 0
            && probe.video_bit_rate().is_some_and(|rate| rate <= COPY_MAX_BITS_PER_SECOND);
        let audio = probe.audio();
        Some(Plan {
            rungs,
            copy_top,
            has_audio: audio.is_some(),
            copy_audio: audio.is_some_and(|audio| audio.codec_name == "aac"),
        })
    }

    /// ffmpeg's arguments to encode the rungs as fast-start MP4 files `out/0.mp4`, `out/1.mp4`.
    pub fn encode_args(&self, source: &Path, out: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"].iter().map(OsString::from).collect();
        args.extend(ffmpeg::UNTRUSTED_INPUT.iter().map(OsString::from));
        args.push("-i".into());
        args.push(source.as_os_str().to_owned());
        let scaled: Vec<String> = self
            .rungs
            .iter()
            .enumerate()
            .filter(|(index, _)| !(self.copy_top && *index == 0))
            .map(|(index, (width, height))| format!("[s{index}]scale={width}:{height}[v{index}]"))
            .collect();
        let split = format!(
            "[0:v:0]split={}{}",
            scaled.len(),
            (0..self.rungs.len())
                .filter(|index| !(self.copy_top && *index == 0))
                .map(|index| format!("[s{index}]"))
                .collect::<String>()
        );
        if !scaled.is_empty() {
            args.push("-filter_complex".into());
            args.push(format!("{split};{}", scaled.join(";")).into());
        }
        for index in 0..self.rungs.len() {
            if self.copy_top && index == 0 {
                args.extend(["-map", "0:v:0", "-c:v", "copy"].map(OsString::from));
            } else {
                let crf = if index == 0 { "23" } else { "26" };
                let maxrate = MAXRATE_KBPS[index.min(MAXRATE_KBPS.len() - 1)];
                args.extend(
                    [
                        "-map".to_string(),
                        format!("[v{index}]"),
                        "-c:v".into(),
                        "libx264".into(),
                        "-preset".into(),
                        "veryfast".into(),
                        "-crf".into(),
                        crf.into(),
                        "-maxrate".into(),
                        format!("{maxrate}k"),
                        "-bufsize".into(),
                        format!("{}k", maxrate * 2),
                        "-pix_fmt".into(),
                        "yuv420p".into(),
                        "-force_key_frames".into(),
                        format!("expr:gte(t,n_forced*{KEYFRAME_SECONDS})"),
                    ]
                    .map(OsString::from),
                );
            }
            if self.has_audio {
                args.extend(["-map", "0:a:0"].map(OsString::from));
                if self.copy_audio {
                    args.extend(["-c:a", "copy"].map(OsString::from));
                } else {
                    args.extend(["-c:a", "aac", "-b:a", "128k", "-ac", "2"].map(OsString::from));
                }
            }
            args.extend(["-movflags", "+faststart"].map(OsString::from));
            args.push(out.join(format!("{index}.mp4")).into_os_string());
        }
        args
    }

    /// ffmpeg's arguments to cut HLS from the rungs' files, without re-encoding, into
    /// `out/hls/master.m3u8` and `out/hls/v{n}/`.
    pub fn hls_args(&self, out: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"].iter().map(OsString::from).collect();
        for index in 0..self.rungs.len() {
            args.push("-i".into());
            args.push(out.join(format!("{index}.mp4")).into_os_string());
        }
        let mut streams = Vec::new();
        for index in 0..self.rungs.len() {
            args.extend(["-map".to_string(), format!("{index}:v:0")].map(OsString::from));
            if self.has_audio {
                args.extend(["-map".to_string(), format!("{index}:a:0")].map(OsString::from));
                streams.push(format!("v:{index},a:{index}"));
            } else {
                streams.push(format!("v:{index}"));
            }
        }
        args.extend(
            [
                "-c".to_string(),
                "copy".into(),
                "-f".into(),
                "hls".into(),
                "-hls_time".into(),
                KEYFRAME_SECONDS.to_string(),
                "-hls_playlist_type".into(),
                "vod".into(),
                "-hls_flags".into(),
                "independent_segments".into(),
                "-hls_segment_filename".into(),
                out.join("hls/v%v/seg%03d.ts").to_string_lossy().into_owned(),
                "-master_pl_name".into(),
                "master.m3u8".into(),
                "-var_stream_map".into(),
                streams.join(" "),
            ]
            .map(OsString::from),
        );
        args.push(out.join("hls/v%v/index.m3u8").into_os_string());
        args
    }
}

impl VideoHandle {
    /// Runs transcoding jobs on this node until the process ends: at most
    /// `transcode_concurrency` at once, each claimed under a lease. Also sweeps spent
    /// uploads once a minute.
    pub async fn run_transcoder(self) {
        let permits = Arc::new(tokio::sync::Semaphore::new(self.inner.config.transcode_concurrency.max(1)));
        let mut last_sweep = std::time::Instant::now();
        loop {
            if last_sweep.elapsed() >= Duration::from_secs(60) {
                last_sweep = std::time::Instant::now();
                if let Err(error) = self.delete_spent_uploads().await {
                    tracing::warn!("sweeping spent uploads: {error}");
                }
            }
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            match self.claim().await {
                Ok(Some(job)) => {
                    let handle = self.clone();
                    tokio::spawn(async move {
                        handle.work(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::time::sleep(self.inner.config.poll_interval).await;
                }
                Err(error) => {
                    drop(permit);
                    tracing::warn!("claiming a transcoding job: {error}");
                    tokio::time::sleep(self.inner.config.poll_interval * 5).await;
                }
            }
        }
    }

    async fn claim(&self) -> Result<Option<Job>, sqlx::Error> {
        let now = Timestamp::now();
        let row = sqlx::query(
            "UPDATE videos SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
             WHERE id = (SELECT id FROM videos
                         WHERE status = 'processing' AND next_attempt_at <= $3
                           AND (lease_until IS NULL OR lease_until < $3)
                         ORDER BY next_attempt_at, id LIMIT 1)
               AND status = 'processing' AND (lease_until IS NULL OR lease_until < $3)
             RETURNING id, upload_id, author_id, attempts",
        )
        .bind(&self.inner.node_id)
        .bind(now.plus(self.inner.config.lease_ttl).unix_millis())
        .bind(now.unix_millis())
        .fetch_optional(self.inner.store.write())
        .await?;
        row.map(|row| {
            Ok(Job {
                video_id: row.try_get("id")?,
                upload_id: row.try_get("upload_id")?,
                author_id: row.try_get("author_id")?,
                attempt: row.try_get("attempts")?,
            })
        })
        .transpose()
    }

    /// Works one claimed job to its end, renewing the lease meanwhile.
    async fn work(&self, job: Job) {
        let scratch = self.inner.config.work_dir.join(format!("{}-{}", job.video_id, job.attempt));
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            outcome = self.transcode(&job, &scratch) => Some(outcome),
            () = self.keep_lease(&job) => None,
        };
        // This attempt's files, and those a killed node left of earlier attempts (an
        // orphaned ffmpeg still writing there fails at its next new file).
        for attempt in 1..=job.attempt {
            let dir = self.inner.config.work_dir.join(format!("{}-{attempt}", job.video_id));
            if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing {}: {error}", dir.display());
                }
            }
        }
        let finished = match outcome {
            None => {
                tracing::warn!(video = %job.video_id, "the transcoding lease was lost; another node has the job");
                return;
            }
            Some(Ok(outcome)) => self.finish(&job, outcome).await,
            Some(Err(error)) => {
                tracing::warn!(video = %job.video_id, attempt = job.attempt, "transcoding failed: {error}");
                self.retry_later(&job).await
            }
        };
        match finished {
            Ok(()) => {
                tracing::info!(video = %job.video_id, seconds = started.elapsed().as_secs_f64(), "transcode done")
            }
            Err(error) => tracing::warn!(video = %job.video_id, "recording the transcode's end: {error}"),
        }
    }

    /// Renews the lease every third of its life; returns when it is lost.
    async fn keep_lease(&self, job: &Job) {
        let ttl = self.inner.config.lease_ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            let renewed = sqlx::query(
                "UPDATE videos SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
            )
            .bind(&job.video_id)
            .bind(&self.inner.node_id)
            .bind(Timestamp::now().plus(ttl).unix_millis())
            .execute(self.inner.store.write())
            .await;
            match renewed {
                Ok(done) if done.rows_affected() == 1 => {}
                Ok(_) => return,
                Err(error) => tracing::warn!("renewing a transcoding lease: {error}"),
            }
        }
    }

    async fn transcode(&self, job: &Job, scratch: &Path) -> Result<Outcome, VideoError> {
        let config = &self.inner.config;
        tokio::fs::create_dir_all(scratch.join("hls")).await?;
        let source = scratch.join("source");
        self.assemble_upload(&job.upload_id, &source).await?;
        let probe = match ffmpeg::probe(&source, config.niceness, config.process_timeout).await {
            Ok(probe) => probe,
            Err(ProcessError::Failed { .. }) => return Ok(Outcome::Rejected("not_a_video")),
            Err(error) => return Err(process_error(error)),
        };
        if !probe.is_video() {
            return Ok(Outcome::Rejected("not_a_video"));
        }
        if probe.duration_seconds().unwrap_or(0.0) > config.duration_max.as_secs_f64() {
            return Ok(Outcome::Rejected("too_long"));
        }
        let Some(plan) = Plan::for_source(&probe) else { return Ok(Outcome::Rejected("not_a_video")) };
        let run = |args: Vec<OsString>| async move {
            ffmpeg::run("ffmpeg", &args, config.niceness, config.process_timeout).await.map_err(process_error)
        };
        run(plan.encode_args(&source, scratch)).await?;
        run(plan.hls_args(scratch)).await?;
        let top = scratch.join("0.mp4");
        let output = ffmpeg::probe(&top, config.niceness, config.process_timeout).await.map_err(process_error)?;
        let duration = output.duration_seconds().unwrap_or(0.0);
        let poster_at = format!("{:.3}", (duration / 2.0).min(1.0));
        let mut poster: Vec<OsString> =
            ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss"].iter().map(OsString::from).collect();
        poster.push(poster_at.into());
        poster.push("-i".into());
        poster.push(top.clone().into_os_string());
        poster.extend(["-frames:v", "1", "-q:v", "4"].map(OsString::from));
        poster.push(scratch.join("poster.jpg").into_os_string());
        run(poster).await?;
        self.store_outputs(&job.video_id, scratch).await?;
        let (width, height) = plan.rungs[0];
        Ok(Outcome::Ready { duration_ms: (duration * 1000.0).round() as i64, width, height })
    }

    /// Puts the MP4, the poster and every HLS file under the video's prefix.
    async fn store_outputs(&self, video_id: &str, scratch: &Path) -> Result<(), VideoError> {
        let objects = &self.inner.objects;
        storage::put_file(objects, &storage::video_key(video_id, "video.mp4"), &scratch.join("0.mp4")).await?;
        storage::put_file(objects, &storage::video_key(video_id, "poster.jpg"), &scratch.join("poster.jpg")).await?;
        let mut pending: Vec<PathBuf> = vec![scratch.join("hls")];
        while let Some(directory) = pending.pop() {
            let mut entries = tokio::fs::read_dir(&directory).await?;
            while let Some(entry) = entries.next_entry().await? {
                let path = entry.path();
                if entry.file_type().await?.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path.strip_prefix(scratch).map_err(std::io::Error::other)?;
                let key = storage::video_key(video_id, &relative.to_string_lossy());
                storage::put_file(objects, &key, &path).await?;
            }
        }
        Ok(())
    }

    /// Records the end of a job this node still holds, and tells the author.
    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<(), VideoError> {
        let now = Timestamp::now();
        let mut transaction = self.inner.store.begin().await?;
        let (updated, event_type, data) = match outcome {
            Outcome::Ready { duration_ms, width, height } => {
                let updated = sqlx::query(
                    "UPDATE videos SET status = 'ready', duration_ms = $3, width = $4, height = $5, ready_at = $6,
                            lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
                )
                .bind(&job.video_id)
                .bind(&self.inner.node_id)
                .bind(duration_ms)
                .bind(width)
                .bind(height)
                .bind(now.unix_millis())
                .execute(&mut *transaction)
                .await?;
                (updated, "video.ready", json!({"video_id": job.video_id, "duration_ms": duration_ms}))
            }
            Outcome::Rejected(failure) => {
                let updated = self.fail(&mut transaction, job, failure).await?;
                (updated, "video.failed", json!({"video_id": job.video_id, "failure": failure}))
            }
        };
        if updated.rows_affected() != 1 {
            // Deleted meanwhile, or another node finished it: leave its files to it.
            transaction.rollback().await?;
            if !self.exists(&job.video_id).await? {
                storage::delete_prefix(&self.inner.objects, &storage::video_prefix(&job.video_id)).await;
            }
            return Ok(());
        }
        let appended =
            self.inner.events.append(&mut transaction, std::slice::from_ref(&job.author_id), event_type, &data).await?;
        transaction.commit().await?;
        self.inner.events.publish(appended);
        Ok(())
    }

    async fn fail(
        &self,
        transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
        job: &Job,
        failure: &str,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        sqlx::query(
            "UPDATE videos SET status = 'failed', failure = $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
        )
        .bind(&job.video_id)
        .bind(&self.inner.node_id)
        .bind(failure)
        .execute(&mut **transaction)
        .await
    }

    /// Gives the job back with a backoff, or fails the video after the last attempt.
    async fn retry_later(&self, job: &Job) -> Result<(), VideoError> {
        let config = &self.inner.config;
        if job.attempt >= config.attempts_max {
            return self.finish(job, Outcome::Rejected("transcode_failed")).await;
        }
        let backoff = config.retry_base * 2u32.saturating_pow((job.attempt - 1).clamp(0, 20) as u32);
        sqlx::query(
            "UPDATE videos SET lease_owner = NULL, lease_until = NULL, next_attempt_at = $3
             WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
        )
        .bind(&job.video_id)
        .bind(&self.inner.node_id)
        .bind(Timestamp::now().plus(backoff).unix_millis())
        .execute(self.inner.store.write())
        .await?;
        Ok(())
    }

    async fn exists(&self, video_id: &str) -> Result<bool, sqlx::Error> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM videos WHERE id = $1")
            .bind(video_id)
            .fetch_optional(self.inner.store.read())
            .await?;
        Ok(found.is_some())
    }
}

/// A claimed job.
#[derive(Debug, Clone)]
struct Job {
    video_id: String,
    upload_id: String,
    author_id: String,
    attempt: i64,
}

fn process_error(error: ProcessError) -> VideoError {
    VideoError::Io(std::io::Error::other(error.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ffmpeg::{ProbeFormat, ProbeStream};

    fn probe(codec: &str, width: i64, height: i64, bit_rate: &str) -> Probe {
        Probe {
            format: ProbeFormat { format_name: "mov,mp4".into(), duration: Some("10.0".into()), bit_rate: None },
            streams: vec![
                ProbeStream {
                    codec_type: "video".into(),
                    codec_name: codec.into(),
                    width: Some(width),
                    height: Some(height),
                    pix_fmt: Some("yuv420p".into()),
                    bit_rate: Some(bit_rate.into()),
                },
                ProbeStream { codec_type: "audio".into(), codec_name: "opus".into(), ..ProbeStream::default() },
            ],
        }
    }

    #[test]
    fn the_ladder_scales_the_short_side_and_never_upscales() {
        let landscape = Plan::for_source(&probe("h264", 1920, 1080, "6000000")).unwrap();
        assert_eq!(landscape.rungs, vec![(1280, 720), (640, 360)]);
        assert!(!landscape.copy_top);
        let portrait = Plan::for_source(&probe("vp9", 1080, 1920, "6000000")).unwrap();
        assert_eq!(portrait.rungs, vec![(720, 1280), (360, 640)]);
        let small = Plan::for_source(&probe("vp9", 480, 270, "500000")).unwrap();
        assert_eq!(small.rungs, vec![(480, 270)], "one rung when the source is below both");
    }

    #[test]
    fn a_source_within_the_top_rung_is_copied() {
        let within = Plan::for_source(&probe("h264", 1280, 720, "2000000")).unwrap();
        assert!(within.copy_top);
        assert!(!within.copy_audio);
        let too_fast = Plan::for_source(&probe("h264", 1280, 720, "8000000")).unwrap();
        assert!(!too_fast.copy_top);
        let args: Vec<String> =
            within.encode_args(Path::new("/s"), Path::new("/o")).iter().map(|a| a.to_string_lossy().into()).collect();
        assert!(args.windows(2).any(|pair| pair[0] == "-c:v" && pair[1] == "copy"));
        assert_eq!(args.iter().filter(|arg| *arg == "libx264").count(), 1);
    }
}
