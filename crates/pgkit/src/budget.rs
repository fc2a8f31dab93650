//! The connection budget: what the server accepts against what every
//! instance's pool may open.
//!
//! Cloud Run scales a service out to `MAX_INSTANCES`, each with a pool of up
//! to `DB_POOL_MAX_SIZE`; the server accepts `max_connections` minus the
//! slots reserved for superusers. When the product does not fit, the last
//! instances to scale out get 53300 `too many clients` under load. The pool
//! warns at start-up, `pgkit doctor` fails the check; behind a transaction
//! pooler the instances' pools count against the pooler's client limit
//! instead, and the server sees only the pooler's server pool.

use tokio_postgres::Client;

/// The server's side of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSlots {
    pub version: String,
    pub max_connections: u64,
    /// `superuser_reserved_connections` (+ `reserved_connections` from 16).
    pub reserved: u64,
    /// Client backends connected now.
    pub open: u64,
}

impl ServerSlots {
    pub async fn read(client: &Client) -> Result<ServerSlots, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version'),
                        current_setting('max_connections')::int,
                        current_setting('superuser_reserved_connections')::int
                          + coalesce(current_setting('reserved_connections', true), '0')::int,
                        (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int",
                &[],
            )
            .await?;
        let count = |i: usize| row.get::<_, i32>(i).max(0) as u64;
        Ok(ServerSlots {
            version: row.get(0),
            max_connections: count(1),
            reserved: count(2),
            open: count(3),
        })
    }

    /// Slots left for applications.
    pub fn for_applications(&self) -> u64 {
        self.max_connections.saturating_sub(self.reserved)
    }

    /// Whether `instances` pools of `pool_max` fit.
    pub fn fits(&self, pool_max: u64, instances: u64) -> bool {
        pool_max * instances <= self.for_applications()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_counts_reserved_slots_out() {
        let slots = ServerSlots {
            version: "15".into(),
            max_connections: 100,
            reserved: 3,
            open: 0,
        };
        assert_eq!(slots.for_applications(), 97);
        assert!(slots.fits(15, 6));
        assert!(!slots.fits(15, 7));
    }
}
