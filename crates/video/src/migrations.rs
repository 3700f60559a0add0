use plaza_store::Migration;

/// The video service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "video",
        version: 1,
        name: "uploads, videos and their transcoding jobs, engagement, and what the feed learnt",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        service: "video",
        version: 2,
        name: "an index for the newest ready videos of a set of authors",
        sqlite: AUTHOR_READY,
        postgres: AUTHOR_READY,
    },
];

/// The Following feed and For You's following source ask for `author_id IN (…) AND
/// status = 'ready'`, newest first. With only `videos_author (author_id, created_at)`,
/// SQLite without statistics (Plaza runs no `ANALYZE`) chose `videos_fresh (status, …)`
/// and sorted every ready video (`plaza-bench video-ranking` at 100,000 videos: p50
/// 270 ms for a viewer who follows ten); with both equalities in one index it reads only
/// those authors' ready videos.
const AUTHOR_READY: &str = "CREATE INDEX videos_author_ready ON videos (author_id, status, created_at);";

/// One text for both engines: `DOUBLE PRECISION` is a real on SQLite too.
const SCHEMA: &str = r#"
    CREATE TABLE video_uploads (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        length_bytes BIGINT NOT NULL CHECK (length_bytes > 0),
        offset_bytes BIGINT NOT NULL DEFAULT 0 CHECK (offset_bytes >= 0 AND offset_bytes <= length_bytes),
        writer_until BIGINT,
        video_id TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX video_uploads_owner ON video_uploads (owner_id, created_at);
    CREATE INDEX video_uploads_expiry ON video_uploads (expires_at);
    CREATE TABLE video_upload_parts (
        upload_id TEXT NOT NULL REFERENCES video_uploads (id) ON DELETE CASCADE,
        start_bytes BIGINT NOT NULL,
        length_bytes BIGINT NOT NULL CHECK (length_bytes > 0),
        object_key TEXT NOT NULL,
        PRIMARY KEY (upload_id, start_bytes)
    );
    CREATE TABLE videos (
        id TEXT PRIMARY KEY,
        author_id TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        caption TEXT NOT NULL,
        hashtags TEXT NOT NULL,
        product_id TEXT,
        visibility TEXT NOT NULL CHECK (visibility IN ('public', 'followers', 'private')),
        status TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
        failure TEXT,
        duration_ms BIGINT,
        width BIGINT,
        height BIGINT,
        created_at BIGINT NOT NULL,
        ready_at BIGINT,
        views BIGINT NOT NULL DEFAULT 0,
        completions BIGINT NOT NULL DEFAULT 0,
        likes BIGINT NOT NULL DEFAULT 0 CHECK (likes >= 0),
        comments BIGINT NOT NULL DEFAULT 0 CHECK (comments >= 0),
        shares BIGINT NOT NULL DEFAULT 0,
        trend_score DOUBLE PRECISION NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT
    );
    CREATE INDEX videos_author ON videos (author_id, created_at);
    CREATE INDEX videos_jobs ON videos (status, next_attempt_at);
    CREATE INDEX videos_trending ON videos (status, trend_score);
    CREATE INDEX videos_fresh ON videos (status, ready_at);
    CREATE TABLE video_hashtags (
        tag TEXT NOT NULL,
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tag, video_id)
    );
    CREATE INDEX video_hashtags_recent ON video_hashtags (tag, created_at);
    CREATE TABLE video_likes (
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (video_id, user_id)
    );
    CREATE TABLE video_comments (
        id TEXT PRIMARY KEY,
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        author_id TEXT NOT NULL,
        parent_id TEXT REFERENCES video_comments (id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX video_comments_by_video ON video_comments (video_id, created_at);
    CREATE TABLE video_views (
        user_id TEXT NOT NULL,
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        day BIGINT NOT NULL,
        watched_ms BIGINT NOT NULL,
        completed BIGINT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (user_id, video_id, day)
    );
    CREATE INDEX video_views_recent ON video_views (user_id, at);
    CREATE TABLE video_hidden (
        user_id TEXT NOT NULL,
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        at BIGINT NOT NULL,
        PRIMARY KEY (user_id, video_id)
    );
    CREATE TABLE video_affinities (
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'author')),
        item TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, kind, item)
    );
    CREATE INDEX video_affinities_top ON video_affinities (user_id, kind, score);
    CREATE TABLE video_coengagement (
        video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        other_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
        score DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (video_id, other_id)
    );
    CREATE TABLE video_model (
        id BIGINT PRIMARY KEY,
        weights TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
"#;
