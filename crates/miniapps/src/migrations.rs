use plaza_store::Migration;

/// Registered apps. `redirect_uris` and `scopes` are JSON arrays; the client secret is a
/// SHA-256 digest in hex. Time is `BIGINT` epoch milliseconds. Portable DDL.
const SCHEMA: &str = r#"
    CREATE TABLE miniapps (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL UNIQUE,
        developer_id TEXT NOT NULL,
        name TEXT NOT NULL,
        name_folded TEXT NOT NULL,
        description TEXT NOT NULL,
        home_url TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        webhook_url TEXT,
        scopes TEXT NOT NULL,
        client_secret_hash TEXT NOT NULL,
        webhook_secret TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        secret_rotated_at BIGINT NOT NULL
    );
    CREATE INDEX miniapps_developer ON miniapps (developer_id, created_at);
    CREATE INDEX miniapps_directory ON miniapps (created_at, id);
"#;

pub const MIGRATIONS: &[Migration] =
    &[Migration { service: "miniapps", version: 1, name: "registered apps", sqlite: SCHEMA, postgres: SCHEMA }];
