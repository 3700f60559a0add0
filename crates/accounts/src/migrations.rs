use plaza_store::Migration;

/// The accounts service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "accounts",
        version: 1,
        name: "users, sessions and contacts",
        sqlite: r#"
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            display_name_lower TEXT NOT NULL,
            avatar_url TEXT,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX users_display_name_lower ON users (display_name_lower);
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT NOT NULL
        );
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE contacts (
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            contact_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('outgoing', 'incoming', 'accepted')),
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, contact_id)
        );
    "#,
        postgres: r#"
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            display_name_lower TEXT NOT NULL,
            avatar_url TEXT,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX users_username_prefix ON users (username text_pattern_ops);
        CREATE INDEX users_display_name_lower ON users (display_name_lower text_pattern_ops);
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT NOT NULL
        );
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE contacts (
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            contact_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('outgoing', 'incoming', 'accepted')),
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, contact_id)
        );
    "#,
    },
    Migration {
        service: "accounts",
        version: 2,
        name: "roles granted by an operator",
        // Before this, whoever registered a name listed in PLAZA_ADMINS became an admin.
        sqlite: r#"
            CREATE TABLE user_roles (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('admin')),
                granted_at BIGINT NOT NULL,
                PRIMARY KEY (user_id, role)
            );
        "#,
        postgres: r#"
            CREATE TABLE user_roles (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('admin')),
                granted_at BIGINT NOT NULL,
                PRIMARY KEY (user_id, role)
            );
        "#,
    },
    Migration {
        service: "accounts",
        version: 3,
        name: "profiles and one-way follows",
        sqlite: PROFILES_AND_FOLLOWS,
        postgres: PROFILES_AND_FOLLOWS,
    },
];

/// The counts are columns kept in the follow's own transaction, so a profile is one row
/// read however many followers it has.
const PROFILES_AND_FOLLOWS: &str = r#"
    ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN followers_count BIGINT NOT NULL DEFAULT 0 CHECK (followers_count >= 0);
    ALTER TABLE users ADD COLUMN following_count BIGINT NOT NULL DEFAULT 0 CHECK (following_count >= 0);
    CREATE TABLE follows (
        follower_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        followee_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (follower_id, followee_id),
        CHECK (follower_id <> followee_id)
    );
    CREATE INDEX follows_followers ON follows (followee_id, created_at, follower_id);
    CREATE INDEX follows_following ON follows (follower_id, created_at, followee_id);
"#;
