use plaza_store::Migration;

/// Shops, products, SKUs, the search postings, orders and their lines, reviews, holds
/// not yet recorded on an order, and the job lease. Portable DDL: both engines share it.
/// Money is `BIGINT` minor units, time `BIGINT` epoch milliseconds; ratings are kept as a
/// sum and a count so that a review updates them with one increment.
const SCHEMA: &str = r#"
    CREATE TABLE shops (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        rating_sum BIGINT NOT NULL DEFAULT 0,
        rating_count BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE shop_products (
        id TEXT PRIMARY KEY,
        shop_id TEXT NOT NULL REFERENCES shops (id),
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        media_ids TEXT NOT NULL,
        group_size BIGINT CHECK (group_size BETWEEN 2 AND 50),
        status TEXT NOT NULL CHECK (status IN ('active', 'archived')),
        title_terms BIGINT NOT NULL,
        description_terms BIGINT NOT NULL,
        rating_sum BIGINT NOT NULL DEFAULT 0,
        rating_count BIGINT NOT NULL DEFAULT 0,
        sold_count BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX shop_products_listing ON shop_products (status, created_at, id);
    CREATE INDEX shop_products_shop ON shop_products (shop_id, status, created_at, id);
    CREATE TABLE shop_skus (
        id TEXT PRIMARY KEY,
        product_id TEXT NOT NULL REFERENCES shop_products (id),
        position BIGINT NOT NULL,
        name TEXT NOT NULL,
        price_amount BIGINT NOT NULL CHECK (price_amount > 0),
        group_price_amount BIGINT CHECK (group_price_amount > 0),
        currency TEXT NOT NULL,
        stock BIGINT NOT NULL CHECK (stock >= 0)
    );
    CREATE INDEX shop_skus_product ON shop_skus (product_id, position);
    CREATE TABLE shop_postings (
        term TEXT NOT NULL,
        product_id TEXT NOT NULL REFERENCES shop_products (id),
        field TEXT NOT NULL CHECK (field IN ('title', 'description')),
        term_count BIGINT NOT NULL,
        PRIMARY KEY (term, product_id, field)
    );
    CREATE INDEX shop_postings_product ON shop_postings (product_id);
    CREATE TABLE shop_orders (
        id TEXT PRIMARY KEY,
        buyer_id TEXT NOT NULL,
        shop_id TEXT NOT NULL REFERENCES shops (id),
        seller_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('grouping', 'paid', 'shipped', 'completed', 'cancelled', 'refund_requested', 'refunded')),
        total_amount BIGINT NOT NULL CHECK (total_amount > 0),
        currency TEXT NOT NULL,
        payment_intent_id TEXT NOT NULL,
        payment_status TEXT NOT NULL CHECK (payment_status IN ('held', 'captured', 'released', 'refunded')),
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        address TEXT NOT NULL,
        carrier TEXT,
        tracking_number TEXT,
        shipped_at BIGINT,
        auto_confirm_at BIGINT,
        refund_reason TEXT,
        refund_amount BIGINT,
        status_before_refund TEXT,
        cancelled_by TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (buyer_id, idempotency_key)
    );
    CREATE INDEX shop_orders_buyer ON shop_orders (buyer_id, created_at, id);
    CREATE INDEX shop_orders_seller ON shop_orders (seller_id, created_at, id);
    CREATE INDEX shop_orders_auto_confirm ON shop_orders (status, auto_confirm_at);
    CREATE INDEX shop_orders_settlement ON shop_orders (payment_status, status);
    CREATE TABLE shop_order_items (
        order_id TEXT NOT NULL REFERENCES shop_orders (id),
        position BIGINT NOT NULL,
        sku_id TEXT NOT NULL REFERENCES shop_skus (id),
        product_id TEXT NOT NULL,
        title TEXT NOT NULL,
        sku_name TEXT NOT NULL,
        quantity BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 99),
        unit_price BIGINT NOT NULL CHECK (unit_price > 0),
        PRIMARY KEY (order_id, position)
    );
    CREATE TABLE shop_reviews (
        order_id TEXT PRIMARY KEY REFERENCES shop_orders (id),
        buyer_id TEXT NOT NULL,
        shop_id TEXT NOT NULL,
        stars BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
        text TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX shop_reviews_shop ON shop_reviews (shop_id, created_at);
    CREATE TABLE shop_pending_holds (
        buyer_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (buyer_id, idempotency_key)
    );
    CREATE INDEX shop_pending_holds_age ON shop_pending_holds (created_at);
    CREATE TABLE shop_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
"#;

/// Group buys (a seat count checked against the size, so no race fills a seat twice),
/// their members and the chats they were shared into; flash sales (their own units, taken
/// from the SKU's stock when the sale is scheduled) and each buyer's units of each sale.
const GROUPS_AND_FLASH_SALES: &str = r#"
    CREATE TABLE shop_group_buys (
        id TEXT PRIMARY KEY,
        product_id TEXT NOT NULL REFERENCES shop_products (id),
        sku_id TEXT NOT NULL REFERENCES shop_skus (id),
        leader_id TEXT NOT NULL,
        size BIGINT NOT NULL CHECK (size BETWEEN 2 AND 50),
        price_amount BIGINT NOT NULL CHECK (price_amount > 0),
        currency TEXT NOT NULL,
        seats_taken BIGINT NOT NULL CHECK (seats_taken >= 0 AND seats_taken <= size),
        status TEXT NOT NULL CHECK (status IN ('forming', 'complete', 'failed')),
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX shop_group_buys_open ON shop_group_buys (product_id, status, expires_at);
    CREATE INDEX shop_group_buys_expiry ON shop_group_buys (status, expires_at);
    CREATE TABLE shop_group_members (
        group_buy_id TEXT NOT NULL REFERENCES shop_group_buys (id),
        buyer_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        joined_at BIGINT NOT NULL,
        PRIMARY KEY (group_buy_id, buyer_id)
    );
    CREATE TABLE shop_group_shares (
        group_buy_id TEXT NOT NULL REFERENCES shop_group_buys (id),
        conversation_id TEXT NOT NULL,
        shared_by TEXT NOT NULL,
        shared_at BIGINT NOT NULL,
        PRIMARY KEY (group_buy_id, conversation_id)
    );
    ALTER TABLE shop_orders ADD COLUMN group_buy_id TEXT;
    ALTER TABLE shop_orders ADD COLUMN flash_sale_id TEXT;
    CREATE INDEX shop_orders_group ON shop_orders (group_buy_id, status);
    CREATE TABLE shop_flash_sales (
        id TEXT PRIMARY KEY,
        shop_id TEXT NOT NULL REFERENCES shops (id),
        product_id TEXT NOT NULL REFERENCES shop_products (id),
        sku_id TEXT NOT NULL REFERENCES shop_skus (id),
        price_amount BIGINT NOT NULL CHECK (price_amount > 0),
        currency TEXT NOT NULL,
        quantity BIGINT NOT NULL CHECK (quantity > 0),
        remaining BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= quantity),
        per_user_limit BIGINT NOT NULL CHECK (per_user_limit > 0),
        starts_at BIGINT NOT NULL,
        ends_at BIGINT NOT NULL,
        returned BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX shop_flash_sales_product ON shop_flash_sales (product_id, ends_at);
    CREATE INDEX shop_flash_sales_ending ON shop_flash_sales (returned, ends_at);
    CREATE TABLE shop_flash_purchases (
        flash_sale_id TEXT NOT NULL REFERENCES shop_flash_sales (id),
        buyer_id TEXT NOT NULL,
        units BIGINT NOT NULL CHECK (units >= 0),
        PRIMARY KEY (flash_sale_id, buyer_id)
    );
"#;

/// The catalogue index moves into each node's memory (`search.rs`): the postings table
/// goes, and a one-row clock orders the product writes that a node's index must apply.
/// Existing products keep `search_seq` 0, which a node's first catch-up (from -1) reads.
const SEARCH_CLOCK: &str = r#"
    DROP TABLE shop_postings;
    ALTER TABLE shop_products ADD COLUMN search_seq BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX shop_products_search_seq ON shop_products (search_seq);
    CREATE TABLE shop_search_clock (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL
    );
    INSERT INTO shop_search_clock (id, seq) VALUES (1, 0);
"#;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "shop",
        version: 1,
        name: "shops, products, search postings, orders, reviews, leases",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        service: "shop",
        version: 2,
        name: "group buys, their members and shares; flash sales and purchases",
        sqlite: GROUPS_AND_FLASH_SALES,
        postgres: GROUPS_AND_FLASH_SALES,
    },
    Migration {
        service: "shop",
        version: 3,
        name: "the search index in memory: a change clock instead of postings",
        sqlite: SEARCH_CLOCK,
        postgres: SEARCH_CLOCK,
    },
    Migration {
        service: "shop",
        version: 4,
        name: "orders by flash sale, for a sale's totals",
        sqlite: ORDERS_BY_SALE,
        postgres: ORDERS_BY_SALE,
    },
    Migration {
        service: "shop",
        version: 5,
        name: "the jobs' order indexes hold only the orders they look for",
        sqlite: PARTIAL_ORDER_INDEXES,
        postgres: PARTIAL_ORDER_INDEXES,
    },
];

/// `flash_sale_totals` (a live room's sales, read by its host while live) sums a sale's
/// orders; without this it would scan every order.
const ORDERS_BY_SALE: &str = "CREATE INDEX shop_orders_flash_sale ON shop_orders (flash_sale_id);";

/// Each index that a job or a rare read uses holds only the orders it can find, so that
/// placing an order (a flash sale's are thousands a second) writes three index entries
/// fewer: a paid order is not shipped (auto-confirm), not waiting for settlement, and
/// most orders belong to no group. Each job's query repeats its index's condition word
/// for word, which is how both engines' planners see that the partial index answers it.
const PARTIAL_ORDER_INDEXES: &str = r#"
    DROP INDEX shop_orders_auto_confirm;
    CREATE INDEX shop_orders_auto_confirm ON shop_orders (auto_confirm_at) WHERE status = 'shipped';
    DROP INDEX shop_orders_settlement;
    CREATE INDEX shop_orders_unsettled ON shop_orders (id)
        WHERE (payment_status = 'held' AND status IN ('cancelled', 'completed', 'refunded'))
           OR (payment_status = 'captured' AND status = 'refunded');
    DROP INDEX shop_orders_group;
    CREATE INDEX shop_orders_group ON shop_orders (group_buy_id, status) WHERE group_buy_id IS NOT NULL;
"#;
