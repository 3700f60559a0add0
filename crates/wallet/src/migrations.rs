use plaza_store::Migration;

/// Accounts, the journal, idempotency keys and payment PINs. Portable DDL: both engines
/// share it. Money is `BIGINT` minor units; time is `BIGINT` epoch milliseconds.
const LEDGER: &str = r#"
    CREATE TABLE wallet_accounts (
        id TEXT PRIMARY KEY,
        owner_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'funding', 'fees', 'escrow', 'red_packets')),
        currency TEXT NOT NULL,
        balance BIGINT NOT NULL,
        held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
        created_at BIGINT NOT NULL,
        CHECK (kind = 'funding' OR balance >= 0)
    );
    CREATE INDEX wallet_accounts_owner ON wallet_accounts (owner_id);
    CREATE TABLE wallet_movements (
        id TEXT PRIMARY KEY,
        transaction_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        debit_account TEXT NOT NULL REFERENCES wallet_accounts (id),
        credit_account TEXT NOT NULL REFERENCES wallet_accounts (id),
        amount BIGINT NOT NULL CHECK (amount > 0),
        currency TEXT NOT NULL,
        reference TEXT NOT NULL,
        note TEXT,
        created_at BIGINT NOT NULL,
        CHECK (debit_account <> credit_account)
    );
    CREATE INDEX wallet_movements_debit ON wallet_movements (debit_account, created_at);
    CREATE INDEX wallet_movements_credit ON wallet_movements (credit_account, created_at);
    CREATE INDEX wallet_movements_transaction ON wallet_movements (transaction_id);
    CREATE TABLE wallet_idempotency (
        scope TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        operation TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        result TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (scope, idempotency_key)
    );
    CREATE INDEX wallet_idempotency_created ON wallet_idempotency (created_at);
    CREATE TABLE wallet_topup_days (
        user_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        day BIGINT NOT NULL,
        total BIGINT NOT NULL,
        PRIMARY KEY (user_id, currency, day)
    );
    CREATE TABLE wallet_pins (
        user_id TEXT PRIMARY KEY,
        pin_hash TEXT NOT NULL,
        failed_attempts BIGINT NOT NULL DEFAULT 0,
        locked_until BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL
    );
"#;

/// Red packets and their shares, split when the packet is created.
const RED_PACKETS: &str = r#"
    CREATE TABLE wallet_red_packets (
        id TEXT PRIMARY KEY,
        sender_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        total BIGINT NOT NULL CHECK (total > 0),
        share_count BIGINT NOT NULL CHECK (share_count >= 1),
        mode TEXT NOT NULL CHECK (mode IN ('lucky', 'equal')),
        greeting TEXT,
        message_id TEXT,
        claimed_count BIGINT NOT NULL DEFAULT 0,
        claimed_amount BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        refunded_at BIGINT,
        refunded_amount BIGINT,
        CHECK (claimed_count <= share_count),
        CHECK (claimed_amount <= total)
    );
    CREATE INDEX wallet_red_packets_due ON wallet_red_packets (refunded_at, expires_at);
    CREATE TABLE wallet_red_packet_shares (
        red_packet_id TEXT NOT NULL REFERENCES wallet_red_packets (id),
        share_index BIGINT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        claimed_by TEXT,
        claimed_at BIGINT,
        PRIMARY KEY (red_packet_id, share_index),
        UNIQUE (red_packet_id, claimed_by)
    );
"#;

/// Payment intents: money held from a payer for another service until it is captured,
/// voided or (after capture) refunded.
const PAYMENT_INTENTS: &str = r#"
    CREATE TABLE wallet_payment_intents (
        id TEXT PRIMARY KEY,
        payer_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        held BIGINT NOT NULL CHECK (held >= 0),
        captured BIGINT NOT NULL DEFAULT 0 CHECK (captured >= 0),
        fee BIGINT NOT NULL DEFAULT 0 CHECK (fee >= 0),
        refunded BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0),
        payee_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('held', 'captured', 'voided')),
        description TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        CHECK (captured <= amount),
        CHECK (refunded <= captured)
    );
    CREATE INDEX wallet_payment_intents_payer ON wallet_payment_intents (payer_id, status);
"#;

/// The wallet's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { service: "wallet", version: 1, name: "ledger, idempotency, PINs", sqlite: LEDGER, postgres: LEDGER },
    Migration {
        service: "wallet",
        version: 2,
        name: "red packets and shares",
        sqlite: RED_PACKETS,
        postgres: RED_PACKETS,
    },
    Migration {
        service: "wallet",
        version: 3,
        name: "payment intents",
        sqlite: PAYMENT_INTENTS,
        postgres: PAYMENT_INTENTS,
    },
];
