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

/// The OAuth 2.0 / OpenID Connect server (`oauth.rs`, `tokens.rs`, `keys.rs`).
///
/// - `miniapp_grants`: what a user let an app do (scopes as a JSON array), with the
///   user's pairwise `sub` for that app, so a pay order naming a `sub` finds its user.
/// - `miniapp_codes`: authorization codes by SHA-256 digest; `used_at` is set by the one
///   exchange that wins, and `family_id` names the tokens it issued (revoked on a replay).
/// - `miniapp_tokens`: access and refresh tokens by SHA-256 digest. A family is one
///   code's tokens and all their refreshes; `used_at` marks a rotated refresh token (a
///   second use is reuse and revokes the family). `user_id` is NULL for app tokens
///   (`client_credentials`).
/// - `miniapp_signing_keys`: the id_token keys (PKCS#8, not encrypted: see `keys.rs`);
///   `retired_at` is when a key stopped signing, and it stays published a while after.
/// - `miniapp_server_secrets`: random secrets made once per deployment (the pairwise
///   subject's HMAC key).
const OAUTH: &str = r#"
    CREATE TABLE miniapp_grants (
        user_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        sub TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, app_id)
    );
    CREATE INDEX miniapp_grants_recent ON miniapp_grants (user_id, updated_at, app_id);
    CREATE INDEX miniapp_grants_subject ON miniapp_grants (app_id, sub);
    CREATE TABLE miniapp_codes (
        code_hash TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scopes TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        nonce TEXT,
        auth_time BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        family_id TEXT
    );
    CREATE INDEX miniapp_codes_user_app ON miniapp_codes (user_id, app_id);
    CREATE INDEX miniapp_codes_expiry ON miniapp_codes (expires_at);
    CREATE TABLE miniapp_tokens (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
        app_id TEXT NOT NULL,
        user_id TEXT,
        family_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        auth_time BIGINT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        revoked_at BIGINT
    );
    CREATE INDEX miniapp_tokens_family ON miniapp_tokens (family_id);
    CREATE INDEX miniapp_tokens_user_app ON miniapp_tokens (user_id, app_id);
    CREATE INDEX miniapp_tokens_expiry ON miniapp_tokens (expires_at);
    CREATE TABLE miniapp_signing_keys (
        kid TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        private_key TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        retired_at BIGINT
    );
    CREATE TABLE miniapp_server_secrets (
        name TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
"#;

/// Pay orders and their webhooks (`payments.rs`, `webhooks.rs`).
///
/// - `miniapp_pay_orders`: one per app and `out_trade_no`; `idempotency_key` (NULL when
///   none was sent: NULLs never collide) and `request_hash` make creation retry-safe;
///   `refunded` and `refunds` only grow, each by a conditional update.
/// - `miniapp_refunds`: one per refund, unique per order and key.
/// - `miniapp_webhook_deliveries`: the outbox; `id` is the `webhook-id`; a sender holds a
///   row while `lease_until` is in the future, and `attempts` counts its claims.
/// - `miniapp_webhook_attempts`: the log of every attempt, for the developer.
const PAYMENTS: &str = r#"
    CREATE TABLE miniapp_pay_orders (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        out_trade_no TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_sub TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        currency TEXT NOT NULL,
        description TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('created', 'paid', 'expired')),
        fee BIGINT NOT NULL,
        refunded BIGINT NOT NULL CHECK (refunded >= 0 AND refunded <= amount),
        refunds INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        paid_at BIGINT,
        updated_at BIGINT NOT NULL,
        UNIQUE (app_id, out_trade_no)
    );
    CREATE UNIQUE INDEX miniapp_pay_orders_key ON miniapp_pay_orders (app_id, idempotency_key);
    CREATE INDEX miniapp_pay_orders_unpaid ON miniapp_pay_orders (status, expires_at);
    CREATE INDEX miniapp_pay_orders_user ON miniapp_pay_orders (user_id, created_at);
    CREATE TABLE miniapp_refunds (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        currency TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX miniapp_refunds_key ON miniapp_refunds (order_id, idempotency_key);
    CREATE TABLE miniapp_webhook_deliveries (
        id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        order_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        lease_until BIGINT NOT NULL,
        lease_owner TEXT,
        retry_until BIGINT NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        last_attempt_at BIGINT,
        delivered_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX miniapp_webhook_due ON miniapp_webhook_deliveries (status, next_attempt_at);
    CREATE INDEX miniapp_webhook_log ON miniapp_webhook_deliveries (app_id, id);
    CREATE TABLE miniapp_webhook_attempts (
        delivery_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        response_excerpt TEXT,
        duration_ms BIGINT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX miniapp_webhook_attempts_delivery ON miniapp_webhook_attempts (delivery_id, number);
"#;

pub const MIGRATIONS: &[Migration] = &[
    Migration { service: "miniapps", version: 1, name: "registered apps", sqlite: SCHEMA, postgres: SCHEMA },
    Migration { service: "miniapps", version: 2, name: "oauth and openid connect", sqlite: OAUTH, postgres: OAUTH },
    Migration {
        service: "miniapps",
        version: 3,
        name: "pay orders and webhooks",
        sqlite: PAYMENTS,
        postgres: PAYMENTS,
    },
];
