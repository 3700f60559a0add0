use plaza_store::Migration;

/// Quotes, rides, offers, ratings, drivers' vehicles and the dispatch lease. Portable DDL:
/// both engines share it. Coordinates are `DOUBLE PRECISION` (not money); money is
/// `BIGINT` minor units; time is `BIGINT` epoch milliseconds.
const SCHEMA: &str = r#"
    CREATE TABLE ride_quotes (
        id TEXT PRIMARY KEY,
        rider_id TEXT NOT NULL,
        pickup_lat DOUBLE PRECISION NOT NULL,
        pickup_lng DOUBLE PRECISION NOT NULL,
        dropoff_lat DOUBLE PRECISION NOT NULL,
        dropoff_lng DOUBLE PRECISION NOT NULL,
        fare_amount BIGINT NOT NULL CHECK (fare_amount > 0),
        currency TEXT NOT NULL,
        distance_m BIGINT NOT NULL,
        duration_s BIGINT NOT NULL,
        surge_milli BIGINT NOT NULL,
        pickup_eta_s BIGINT,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX ride_quotes_expiry ON ride_quotes (expires_at);
    CREATE TABLE rides (
        id TEXT PRIMARY KEY,
        quote_id TEXT NOT NULL UNIQUE,
        rider_id TEXT NOT NULL,
        driver_id TEXT,
        status TEXT NOT NULL CHECK (status IN
            ('requested', 'driver_assigned', 'driver_arrived', 'in_progress', 'completed', 'cancelled', 'no_driver')),
        pickup_lat DOUBLE PRECISION NOT NULL,
        pickup_lng DOUBLE PRECISION NOT NULL,
        dropoff_lat DOUBLE PRECISION NOT NULL,
        dropoff_lng DOUBLE PRECISION NOT NULL,
        fare_amount BIGINT NOT NULL,
        currency TEXT NOT NULL,
        distance_m BIGINT NOT NULL,
        duration_s BIGINT NOT NULL,
        surge_milli BIGINT NOT NULL,
        payment_intent_id TEXT NOT NULL,
        hold_amount BIGINT NOT NULL,
        payment_status TEXT NOT NULL CHECK (payment_status IN ('held', 'captured', 'released')),
        charged_amount BIGINT NOT NULL DEFAULT 0,
        offered_driver_id TEXT,
        offer_expires_at BIGINT,
        dispatch_rounds BIGINT NOT NULL DEFAULT 0,
        cancelled_by TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX rides_status ON rides (status, created_at);
    CREATE INDEX rides_rider ON rides (rider_id, status);
    CREATE INDEX rides_driver ON rides (driver_id, status);
    CREATE INDEX rides_offered ON rides (offered_driver_id);
    CREATE TABLE ride_offers (
        ride_id TEXT NOT NULL REFERENCES rides (id),
        driver_id TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('open', 'accepted', 'declined', 'expired')),
        created_at BIGINT NOT NULL,
        PRIMARY KEY (ride_id, driver_id)
    );
    CREATE TABLE ride_ratings (
        ride_id TEXT NOT NULL REFERENCES rides (id),
        rater_id TEXT NOT NULL,
        ratee_id TEXT NOT NULL,
        stars BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
        comment TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (ride_id, rater_id)
    );
    CREATE TABLE ride_drivers (
        driver_id TEXT PRIMARY KEY,
        plate TEXT NOT NULL,
        model TEXT NOT NULL,
        seats BIGINT NOT NULL,
        online BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE ride_leases (
        region TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
"#;

/// One open ride per rider, decided by the database: two concurrent requests on different
/// quotes cannot both insert (a partial unique index; both engines have them). And the
/// holds taken for a request whose ride is not saved yet, so that a crash between the
/// wallet call and the ride's row leaves a trace the dispatcher's sweep can release.
///
/// A database where the race already happened would refuse the index, so each rider's
/// open rides but the oldest are first cancelled at no charge; their holds, still `held`
/// on a final ride, are released by the dispatcher's settlement sweep.
const ONE_OPEN_RIDE_AND_PENDING_HOLDS: &str = r#"
    UPDATE rides SET status = 'cancelled', cancelled_by = 'rider', charged_amount = 0, offered_driver_id = NULL,
        offer_expires_at = NULL
    WHERE status IN ('requested', 'driver_assigned', 'driver_arrived', 'in_progress')
      AND EXISTS (SELECT 1 FROM rides AS older WHERE older.rider_id = rides.rider_id
          AND older.status IN ('requested', 'driver_assigned', 'driver_arrived', 'in_progress')
          AND (older.created_at < rides.created_at OR (older.created_at = rides.created_at AND older.id < rides.id)));
    CREATE UNIQUE INDEX rides_one_open_per_rider ON rides (rider_id)
        WHERE status IN ('requested', 'driver_assigned', 'driver_arrived', 'in_progress');
    CREATE TABLE ride_holds (
        quote_id TEXT PRIMARY KEY,
        rider_id TEXT NOT NULL,
        quote_expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX ride_holds_expiry ON ride_holds (quote_expires_at);
"#;

/// What a trip's fare is judged by (see "The fare" in the service's docs): when it started,
/// how far the driver's accepted locations went while it was under way, and whether it was
/// marked for review.
const TRIP_ROUTE: &str = r#"
    ALTER TABLE rides ADD COLUMN started_at BIGINT;
    ALTER TABLE rides ADD COLUMN route_m DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE rides ADD COLUMN review TEXT;
"#;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        service: "rides",
        version: 1,
        name: "quotes, rides, offers, ratings, drivers, leases",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        service: "rides",
        version: 2,
        name: "one open ride per rider, pending holds",
        sqlite: ONE_OPEN_RIDE_AND_PENDING_HOLDS,
        postgres: ONE_OPEN_RIDE_AND_PENDING_HOLDS,
    },
    Migration {
        service: "rides",
        version: 3,
        name: "trip start, recorded route and review",
        sqlite: TRIP_ROUTE,
        postgres: TRIP_ROUTE,
    },
];
