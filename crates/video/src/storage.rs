//! Where a video's bytes live in the object store (the media crate's: files under the
//! data directory, or an S3 bucket), so every node serves every video:
//!
//! - `video-uploads/{upload}/{part}`: the parts of a resumable upload, one per flush;
//! - `videos/{video}/video.mp4`, `videos/{video}/poster.jpg`,
//!   `videos/{video}/hls/master.m3u8`, `videos/{video}/hls/v{n}/…`: what a transcode made.

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;

pub(crate) fn upload_part_key(upload_id: &str, part_id: &str) -> String {
    format!("video-uploads/{upload_id}/{part_id}")
}

pub(crate) fn upload_prefix(upload_id: &str) -> String {
    format!("video-uploads/{upload_id}")
}

pub(crate) fn video_prefix(video_id: &str) -> String {
    format!("videos/{video_id}")
}

pub(crate) fn video_key(video_id: &str, file: &str) -> String {
    format!("videos/{video_id}/{file}")
}

/// Writes a local file to `key`, in memory-bounded parts for big files.
pub(crate) async fn put_file(
    objects: &Arc<dyn ObjectStore>,
    key: &str,
    file: &std::path::Path,
) -> Result<(), object_store::Error> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|error| object_store::Error::Generic { store: "local", source: Box::new(error) })?;
    objects.put(&ObjectPath::from(key), PutPayload::from(bytes)).await?;
    Ok(())
}

/// Deletes every object under `prefix`; failures are logged (an orphan file is
/// harmless, and the prefix is never reused).
pub(crate) async fn delete_prefix(objects: &Arc<dyn ObjectStore>, prefix: &str) {
    let prefix = ObjectPath::from(prefix);
    let mut listing = objects.list(Some(&prefix));
    let mut keys = Vec::new();
    while let Some(entry) = listing.next().await {
        match entry {
            Ok(meta) => keys.push(meta.location),
            Err(error) => {
                tracing::warn!("listing {prefix} to delete it: {error}");
                return;
            }
        }
    }
    for key in keys {
        if let Err(error) = objects.delete(&key).await {
            tracing::warn!("deleting {key}: {error}");
        }
    }
}
