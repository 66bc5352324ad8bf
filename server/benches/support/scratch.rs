//! A scratch PostgreSQL database for one benchmark run, next to the one `DATABASE_URL` names,
//! dropped afterwards.

use sqlx::PgPool;
use uuid::Uuid;

/// A fresh, empty database: its URL, and the admin pool that created it.
pub struct ScratchDatabase {
    pub url: String,
    name: String,
    admin: PgPool,
}

impl ScratchDatabase {
    /// Creates it on the server of `DATABASE_URL`.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL")?;
        let admin = PgPool::connect(&admin_url).await?;
        let name = format!("tenki_bench_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }

    /// Drops it, even if connections are still open.
    pub async fn drop_it(self) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
    }
}
