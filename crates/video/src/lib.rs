//! Plaza short video: profiles' videos uploaded by the tus resumable protocol,
//! transcoded by ffmpeg into an H.264/AAC ladder, and a For You feed learnt online from
//! every view, like, comment and share.
//!
//! The main design choice is **everything durable in the database, everything heavy out
//! of the request path**. An upload is a list of parts in the object store, advanced by
//! conditional updates of its offset (`uploads.rs`), so any node resumes it. Publishing
//! inserts a `processing` video that is also its own transcoding job, claimed with a
//! lease by exactly one node and run niced, bounded per node and in a bounded queue
//! (`transcode.rs`). The feed (`feed.rs`) retrieves candidates from six bounded sources,
//! scores them with a logistic regression that each view trains at once (`learner.rs`,
//! merged across nodes through `video_model`), and re-ranks for diversity and
//! exploration; every item says why it was chosen.

pub mod bench_support;
mod engagement;
pub mod feed;
pub mod ffmpeg;
pub mod learner;
mod migrations;
pub mod model;
pub mod routes;
mod service;
mod storage;
pub mod transcode;
mod tus;
mod uploads;

pub use engagement::{Comment, SharedVideo, REPLAYS_MAX, WATCHED_MS_MAX};
pub use feed::{FeedItem, MODEL_SYNC_INTERVAL};
pub use migrations::MIGRATIONS;
pub use model::{VideoStatus, Visibility};
pub use routes::{router, VideoCards};
pub use service::{Video, VideoConfig, VideoError, VideoHandle};
pub use tus::tus_router;
pub use uploads::{UploadState, PART_BYTES};
