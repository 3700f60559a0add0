use plaza_store::Migration;

const SCHEMA: &str = r#"
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
        title TEXT,
        owner_id TEXT,
        direct_key TEXT UNIQUE,
        last_seq BIGINT NOT NULL DEFAULT 0,
        last_activity_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE conversation_members (
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        user_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
        read_seq BIGINT NOT NULL DEFAULT 0,
        joined_at BIGINT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX conversation_members_user ON conversation_members (user_id);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        seq BIGINT NOT NULL,
        sender_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (conversation_id, sender_id, client_id)
    );
"#;

/// Which media were sent in which conversation: the members of those conversations may
/// read them.
const MEDIA_SHARES: &str = r#"
    CREATE TABLE conversation_media (
        media_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        PRIMARY KEY (media_id, conversation_id)
    );
"#;

/// Who may join and what a new member sees: `joined_seq` is the conversation's last `seq`
/// when the member joined (history starts after it), a departure keeps others from adding
/// back someone who left, and `created_by` counts a user's group creations.
const MEMBERSHIP_RULES: &str = r#"
    ALTER TABLE conversation_members ADD COLUMN joined_seq BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN created_by TEXT;
    CREATE INDEX conversations_created_by ON conversations (created_by, created_at);
    CREATE TABLE conversation_departures (
        conversation_id TEXT NOT NULL REFERENCES conversations (id),
        user_id TEXT NOT NULL,
        left_at BIGINT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    );
"#;

/// The chat service's schema, in order. The DDL is portable, so both engines share it.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "chat",
        version: 1,
        name: "conversations, members, messages",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        service: "chat",
        version: 2,
        name: "media shared in conversations",
        sqlite: MEDIA_SHARES,
        postgres: MEDIA_SHARES,
    },
    Migration {
        service: "chat",
        version: 3,
        name: "history from joining, departures, group creators",
        sqlite: MEMBERSHIP_RULES,
        postgres: MEMBERSHIP_RULES,
    },
];
