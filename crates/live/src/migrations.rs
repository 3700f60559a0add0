use plaza_store::Migration;

/// The live service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "live",
        version: 1,
        name: "live rooms, their products and their HLS segments",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        service: "live",
        version: 2,
        name: "live chat, moderation and each node's viewers",
        sqlite: CHAT,
        postgres: CHAT,
    },
    Migration {
        service: "live",
        version: 3,
        name: "in-stream deals: each room's flash sales and its current one",
        sqlite: DEALS,
        postgres: DEALS,
    },
];

/// A room's current deal is two columns of its row, so that one conditional update claims
/// the room's one slot (`deals.rs`) and the 1 s recount returns it with the stats;
/// `live_deals` keeps every sale a room ran, for its sales and to name the room of a sale's
/// orders. Orders of a pinned product find their live rooms by `live_rooms_pinned`.
const DEALS: &str = r#"
    ALTER TABLE live_rooms ADD COLUMN deal_flash_sale_id TEXT;
    ALTER TABLE live_rooms ADD COLUMN deal_ends_at BIGINT;
    CREATE INDEX live_rooms_pinned ON live_rooms (pinned_product_id);
    CREATE TABLE live_deals (
        flash_sale_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL REFERENCES live_rooms (id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX live_deals_room ON live_deals (room_id, created_at);
"#;

/// One text for both engines. A room's ingest is held by one node at a time through
/// `ingest_node`/`ingest_until` (a lease renewed while media flows), and `last_media_at`
/// is what the idle end is measured from. The segments are the recording: a reconnect
/// appends to them (its first one marked as a discontinuity), and the replay's playlist is
/// written from them.
const SCHEMA: &str = r#"
    CREATE TABLE live_rooms (
        id TEXT PRIMARY KEY,
        host_id TEXT NOT NULL,
        title TEXT NOT NULL,
        cover_media_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('created', 'live', 'ended')),
        stream_key_digest TEXT NOT NULL,
        viewers BIGINT NOT NULL DEFAULT 0 CHECK (viewers >= 0),
        likes BIGINT NOT NULL DEFAULT 0 CHECK (likes >= 0),
        pinned_product_id TEXT,
        ingest_node TEXT,
        ingest_until BIGINT,
        last_media_at BIGINT,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        ended_at BIGINT
    );
    CREATE UNIQUE INDEX live_rooms_stream_key ON live_rooms (stream_key_digest);
    CREATE INDEX live_rooms_status ON live_rooms (status, viewers);
    CREATE INDEX live_rooms_ended ON live_rooms (status, ended_at);
    CREATE INDEX live_rooms_host ON live_rooms (host_id, created_at);
    CREATE TABLE live_room_products (
        room_id TEXT NOT NULL REFERENCES live_rooms (id) ON DELETE CASCADE,
        product_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (room_id, product_id)
    );
    CREATE TABLE live_segments (
        room_id TEXT NOT NULL REFERENCES live_rooms (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL CHECK (seq >= 0),
        duration_ms BIGINT NOT NULL CHECK (duration_ms >= 0),
        discontinuity BIGINT NOT NULL CHECK (discontinuity IN (0, 1)),
        created_at BIGINT NOT NULL,
        PRIMARY KEY (room_id, seq)
    );
"#;

/// Live chat is kept per room (the last messages on joining, the replay's chat), never in
/// the viewers' event logs; `chat.rs` bounds each room's. Moderation is per room and
/// durable. Each node counts its own joined sockets per room in `live_room_nodes`
/// (renewed every second; a row not renewed for 3 s no longer counts, one silent for a
/// minute is deleted), and with NATS also writes who joined in `live_room_members`, so
/// that chat posted through any node knows a join made on another.
const CHAT: &str = r#"
    CREATE TABLE live_chat_messages (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL REFERENCES live_rooms (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX live_chat_messages_room ON live_chat_messages (room_id, id);
    CREATE TABLE live_room_moderation (
        room_id TEXT NOT NULL REFERENCES live_rooms (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        muted BIGINT NOT NULL CHECK (muted IN (0, 1)),
        banned BIGINT NOT NULL CHECK (banned IN (0, 1)),
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE live_room_nodes (
        room_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        viewers BIGINT NOT NULL CHECK (viewers >= 0),
        seen_at BIGINT NOT NULL,
        PRIMARY KEY (room_id, node_id)
    );
    CREATE INDEX live_room_nodes_seen ON live_room_nodes (seen_at);
    CREATE TABLE live_room_members (
        room_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        PRIMARY KEY (room_id, user_id, node_id)
    );
"#;
