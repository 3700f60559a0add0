//! A small migration runner: each service contributes an ordered list of [`Migration`]s
//! with SQL for both engines. Applied migrations are recorded with a checksum, so a
//! migration edited after release is caught at start-up instead of drifting silently.
//! On PostgreSQL an advisory lock makes concurrent start-ups of several nodes safe.

use crate::{Backend, Store, StoreError};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// One schema change of one service.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The owning service, e.g. `"accounts"`.
    pub service: &'static str,
    /// Increasing from 1 within the service.
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// A migration that [`Store::migrate`] applied in this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub service: &'static str,
    pub version: i64,
    pub name: &'static str,
}

/// An arbitrary constant naming Plaza's migration lock among PostgreSQL advisory locks.
const POSTGRES_MIGRATION_LOCK: i64 = 0x0050_4C41_5A41;

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    /// A digest of the statements with white space folded, so that re-indenting a
    /// migration does not count as changing it.
    fn checksum(&self, backend: Backend) -> String {
        let folded: Vec<String> = statements(self.sql(backend))
            .map(|statement| statement.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        plaza_kernel::id::to_hex(&Sha256::digest(folded.join(";\n").as_bytes()))
    }
}

impl Store {
    /// Applies every migration not yet applied, in order, each in its own transaction.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<Vec<AppliedMigration>, StoreError> {
        // On PostgreSQL a session-level advisory lock, held on a connection of its own,
        // makes nodes starting together migrate one after another — taken before anything
        // else, since even `CREATE TABLE IF NOT EXISTS` races with itself there. (SQLite's
        // single writer already serialises them, and its pool has no second connection.)
        let lock = match self.backend() {
            Backend::Postgres => {
                let mut connection = self.write().acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(POSTGRES_MIGRATION_LOCK)
                    .execute(&mut *connection)
                    .await?;
                Some(connection)
            }
            Backend::Sqlite => None,
        };
        let result = self.migrate_locked(migrations).await;
        if let Some(mut connection) = lock {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(POSTGRES_MIGRATION_LOCK)
                .execute(&mut *connection)
                .await?;
        }
        result
    }

    async fn migrate_locked(&self, migrations: &[Migration]) -> Result<Vec<AppliedMigration>, StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS plaza_migrations (
                service TEXT NOT NULL,
                version BIGINT NOT NULL,
                name TEXT NOT NULL,
                checksum TEXT NOT NULL,
                applied_at BIGINT NOT NULL,
                PRIMARY KEY (service, version)
            )",
        )
        .execute(self.write())
        .await?;
        self.apply_pending(migrations).await
    }

    async fn apply_pending(&self, migrations: &[Migration]) -> Result<Vec<AppliedMigration>, StoreError> {
        let rows =
            sqlx::query("SELECT service, version, checksum FROM plaza_migrations").fetch_all(self.write()).await?;
        let mut applied_before = std::collections::HashMap::new();
        for row in rows {
            let service: String = row.try_get("service")?;
            let version: i64 = row.try_get("version")?;
            let checksum: String = row.try_get("checksum")?;
            applied_before.insert((service, version), checksum);
        }
        let mut applied_now = Vec::new();
        for migration in migrations {
            let checksum = migration.checksum(self.backend());
            match applied_before.get(&(migration.service.to_string(), migration.version)) {
                Some(recorded) if *recorded == checksum => continue,
                Some(_) => {
                    return Err(StoreError::MigrationChanged {
                        service: migration.service.to_string(),
                        version: migration.version,
                    })
                }
                None => {}
            }
            self.apply_one(migration, &checksum).await.map_err(|source| StoreError::Migration {
                service: migration.service,
                version: migration.version,
                name: migration.name,
                source,
            })?;
            tracing::info!(
                service = migration.service,
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
            applied_now.push(AppliedMigration {
                service: migration.service,
                version: migration.version,
                name: migration.name,
            });
        }
        Ok(applied_now)
    }

    async fn apply_one(&self, migration: &Migration, checksum: &str) -> Result<(), sqlx::Error> {
        let mut transaction = self.begin().await?;
        for statement in statements(migration.sql(self.backend())) {
            sqlx::query(statement).execute(&mut *transaction).await?;
        }
        sqlx::query(
            "INSERT INTO plaza_migrations (service, version, name, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(migration.service)
        .bind(migration.version)
        .bind(migration.name)
        .bind(checksum)
        .bind(plaza_kernel::Timestamp::now().unix_millis())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await
    }
}

/// Splits a migration into statements at each `;`. Migrations are ours, so the rule is
/// simple: never put a `;` inside a string literal or a trigger body.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|statement| !statement.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Migration = Migration {
        service: "test",
        version: 1,
        name: "things",
        sqlite: "CREATE TABLE things (id TEXT PRIMARY KEY); CREATE INDEX things_id ON things (id);",
        postgres: "CREATE TABLE things (id TEXT PRIMARY KEY); CREATE INDEX things_id ON things (id);",
    };

    #[tokio::test]
    async fn migrations_apply_once_and_detect_edits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2).await.expect("connect");
        assert_eq!(store.migrate(&[FIRST]).await.expect("first run").len(), 1);
        assert!(store.migrate(&[FIRST]).await.expect("second run").is_empty());
        let reindented = Migration {
            sqlite: "CREATE TABLE things (id TEXT PRIMARY KEY);\n\n    CREATE INDEX things_id\n        ON things (id);",
            ..FIRST
        };
        assert!(store.migrate(&[reindented]).await.expect("white space is not a change").is_empty());
        let edited = Migration { sqlite: "CREATE TABLE other (id TEXT);", ..FIRST };
        assert!(matches!(store.migrate(&[edited]).await, Err(StoreError::MigrationChanged { .. })));
    }

    #[tokio::test]
    async fn a_failing_migration_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2).await.expect("connect");
        let broken = Migration {
            service: "test",
            version: 1,
            name: "broken",
            sqlite: "CREATE TABLE half (id TEXT); THIS IS NOT SQL;",
            postgres: "",
        };
        assert!(matches!(store.migrate(&[broken]).await, Err(StoreError::Migration { .. })));
        let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'")
            .fetch_one(store.read())
            .await
            .expect("count");
        assert_eq!(tables, 0);
    }
}
