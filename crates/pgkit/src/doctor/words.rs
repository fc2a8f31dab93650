//! The fixes the doctor names, worded after the standard's troubleshooting
//! section and specific to where the DSN points: a Cloud SQL socket
//! (`/cloudsql/PROJECT:REGION:INSTANCE`) gets the Cloud SQL commands
//! (cloud-sql-proxy, `--add-cloudsql-instances`, `gcloud sql users
//! set-password`), anything else the plain PostgreSQL ones.

use crate::dsn::{Dsn, Host};

/// Where the DSN points, for wording fixes.
#[derive(Debug, Clone)]
pub(super) struct Place {
    kind: Kind,
    port: u16,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `/cloudsql/PROJECT:REGION:INSTANCE`.
    CloudSql {
        connection: String,
        instance: String,
    },
    LocalSocket,
    Tcp,
}

impl Place {
    pub(super) fn of(dsn: &Dsn) -> Place {
        let kind = match &dsn.host {
            Host::Socket(dir) if dsn.is_cloud_sql_socket() => {
                let connection = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| n.contains(':'))
                    .unwrap_or_else(|| "PROJECT:REGION:INSTANCE".to_string());
                let instance = connection
                    .rsplit(':')
                    .next()
                    .unwrap_or("INSTANCE")
                    .to_string();
                Kind::CloudSql {
                    connection,
                    instance,
                }
            }
            Host::Socket(_) => Kind::LocalSocket,
            Host::Tcp(_) => Kind::Tcp,
        };
        Place {
            kind,
            port: dsn.port,
        }
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    pub(super) fn is_cloud_sql(&self) -> bool {
        matches!(self.kind, Kind::CloudSql { .. })
    }

    /// The Cloud SQL instance name, or `INSTANCE` when the DSN does not say.
    pub(super) fn instance(&self) -> &str {
        match &self.kind {
            Kind::CloudSql { instance, .. } => instance,
            _ => "INSTANCE",
        }
    }

    /// Nothing listens where the DSN points.
    pub(super) fn start_server(&self) -> String {
        match &self.kind {
            Kind::CloudSql { connection, .. } => format!(
                "nothing provides the Cloud SQL socket: on Cloud Run, deploy with \
                 --add-cloudsql-instances {connection} (its service account needs roles/cloudsql.client); \
                 locally, start cloud-sql-proxy --unix-socket /cloudsql {connection}"
            ),
            Kind::LocalSocket => format!(
                "start PostgreSQL (pgkit local start for the embedded one), or point host= at the \
                 directory that holds .s.PGSQL.{} (Debian: /var/run/postgresql)",
                self.port
            ),
            Kind::Tcp => format!(
                "start PostgreSQL there, or cloud-sql-proxy --port {} PROJECT:REGION:INSTANCE for a \
                 local proxy; or fix the host and port in the DSN",
                self.port
            ),
        }
    }

    /// A TCP address that does not answer at all.
    pub(super) fn no_route(&self) -> String {
        "on Cloud Run, a private IP is reached through a VPC connector (--vpc-connector) or Direct \
         VPC egress; check firewall rules, and for a public IP the instance's authorized networks \
         (or use the Cloud SQL connection, --add-cloudsql-instances, instead)"
            .to_string()
    }

    /// The password was refused.
    pub(super) fn reset_password(&self, user: &str, iam: bool) -> String {
        if iam {
            return format!(
                "the IAM token was refused: the user must be the service account's email without \
                 .gserviceaccount.com, created with gcloud sql users create {user} --instance={} \
                 --type=cloud_iam_service_account; the account needs roles/cloudsql.instanceUser and \
                 the instance the flag cloudsql.iam_authentication=on",
                self.instance()
            );
        }
        match &self.kind {
            Kind::CloudSql { instance, .. } => format!(
                "set the password again: gcloud sql users set-password {user} --instance={instance} \
                 --prompt-for-password, then put the same one in the secret behind DATABASE_URL and \
                 redeploy; or the user does not exist (the standard's \"User doesn't exist in Cloud \
                 SQL\"; the server answers the same): gcloud sql users list --instance={instance}, \
                 and gcloud sql users create {user} --instance={instance} --prompt-for-password"
            ),
            _ => format!(
                "check the password in DATABASE_URL (percent-encode @ : / ? # in it), or set a new \
                 one as an admin: ALTER ROLE {user} PASSWORD '...'; or the role does not exist (the \
                 server answers the same; on Cloud SQL the standard's \"User doesn't exist in Cloud \
                 SQL\"): create it with CREATE ROLE {user} LOGIN PASSWORD '...', on Cloud SQL with \
                 gcloud sql users create {user} --instance=INSTANCE --prompt-for-password"
            ),
        }
    }

    /// The role in the DSN does not exist.
    pub(super) fn create_user(&self, user: &str) -> String {
        match &self.kind {
            Kind::CloudSql { instance, .. } => format!(
                "create it: gcloud sql users create {user} --instance={instance} --prompt-for-password \
                 (or, for an IAM login, --type=cloud_iam_service_account); or fix the user in the DSN"
            ),
            _ => format!("create it: CREATE ROLE {user} LOGIN PASSWORD '...'; or fix the user in the DSN"),
        }
    }

    /// The database in the DSN does not exist.
    pub(super) fn create_database(&self, db: &str) -> String {
        match &self.kind {
            Kind::CloudSql { instance, .. } => format!(
                "create it: gcloud sql databases create {db} --instance={instance}; or fix the \
                 database name at the end of the DSN"
            ),
            _ => format!(
                "create it: CREATE DATABASE {db}; or fix the database name at the end of the DSN"
            ),
        }
    }

    /// How to run a GRANT: who may, and where.
    pub(super) fn as_admin(&self) -> &'static str {
        if self.is_cloud_sql() {
            "as the schema's owner (or the postgres user, a member of cloudsqlsuperuser), run"
        } else {
            "as the schema's owner or a superuser, run"
        }
    }

    /// More connections are needed than the server allows.
    pub(super) fn raise_max_connections(&self) -> String {
        match &self.kind {
            Kind::CloudSql { instance, .. } => format!(
                "raise max_connections: gcloud sql instances patch {instance} \
                 --database-flags=max_connections=N (this restarts the instance and replaces its \
                 other database flags, so list those too)"
            ),
            _ => "raise max_connections in postgresql.conf (takes a restart)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_sql_sockets_name_the_instance() {
        let dsn =
            Dsn::parse("postgresql://dave:pw@/dave?host=/cloudsql/proj:europe-west1:main").unwrap();
        let place = Place::of(&dsn);
        assert!(place.is_cloud_sql());
        assert_eq!(place.instance(), "main");
        let start = place.start_server();
        assert!(
            start.contains("--add-cloudsql-instances proj:europe-west1:main"),
            "{start}"
        );
        assert!(
            start.contains("cloud-sql-proxy --unix-socket /cloudsql proj:europe-west1:main"),
            "{start}"
        );
        let reset = place.reset_password("dave", false);
        assert!(
            reset.contains("gcloud sql users set-password dave --instance=main"),
            "{reset}"
        );
    }

    #[test]
    fn other_places_get_plain_postgres_fixes() {
        let local = Place::of(&Dsn::parse("postgresql://u@/d?host=/tmp/pg").unwrap());
        assert!(local.start_server().contains(".s.PGSQL.5432"));
        // The plain PostgreSQL fixes come first; a missing role (which the
        // server reports as a wrong password) is named too, with the
        // standard's Cloud SQL wording and command as the alternative.
        let reset = local.reset_password("u", false);
        assert!(
            reset.starts_with("check the password in DATABASE_URL"),
            "{reset}"
        );
        assert!(reset.contains("CREATE ROLE u LOGIN PASSWORD"), "{reset}");
        assert!(reset.contains("User doesn't exist in Cloud SQL"), "{reset}");
        let tcp = Place::of(&Dsn::parse("postgresql://u@127.0.0.1:6543/d").unwrap());
        assert!(tcp.start_server().contains("--port 6543"));
        assert!(tcp
            .create_database("d")
            .starts_with("create it: CREATE DATABASE d;"));
    }
}
