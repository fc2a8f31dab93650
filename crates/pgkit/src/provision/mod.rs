//! `pgkit provision`: the schema-per-service pattern, done so that it keeps
//! working after the next migration.
//!
//! One schema per service, owned by the role that runs its migrations (the
//! migration owner), and one runtime role the service logs in as, with data
//! privileges only. The standard's recipe (`GRANT ALL ON ALL TABLES IN SCHEMA`)
//! covers the tables that exist when it runs and silently misses every table a
//! later migration creates; [`Plan`] adds `ALTER DEFAULT PRIVILEGES FOR ROLE
//! <migration owner>` so those are covered too. Every statement is idempotent,
//! so running it again changes nothing, and the whole plan runs in one
//! transaction, so a failure leaves nothing half done.
//!
//! Passwords never travel in clear text: the SCRAM-SHA-256 verifier is
//! computed here (as `psql`'s `\password` does), so the server log and
//! `pg_stat_activity` see only the verifier, and the displayed SQL (`--dry-run`)
//! shows `PASSWORD '***'`. `docs/operations.md` explains each statement.

pub mod ident;

use tokio_postgres::Client;

use crate::secret::Secret;
pub use ident::{Ident, NameError};

/// How the service's role logs in.
#[derive(Debug, Clone)]
pub enum Login {
    /// A password role; the password comes from the environment variable the
    /// operator named (read by the CLI).
    Password(Secret),
    /// Cloud SQL IAM database authentication: `--role` becomes a NOLOGIN
    /// group holding the privileges, and the IAM user (created with
    /// `gcloud sql users create ... --type=cloud_iam_*`) is made a member.
    IamUser { email: String },
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub schema: String,
    pub role: String,
    pub login: Login,
    /// The role that runs migrations and so owns the tables; `None` means
    /// the role running provision (`CURRENT_USER`).
    pub owner: Option<String>,
}

/// Provisioning could not be planned or applied. Never carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("the password is empty; put the role's password in the variable --password-env names")]
    EmptyPassword,
    #[error("the password contains a NUL byte, which PostgreSQL cannot store")]
    NulInPassword,
    /// The runtime role would be a role that must never be the service's:
    /// a superuser, the role running provision, or the schema's owner
    /// (`ALTER ROLE … SET search_path` on it would also change every
    /// other database and session of that role). Nothing was changed.
    #[error("refusing to make {role} the runtime role of schema {schema}: {reason}; nothing was changed")]
    UnsafeRole {
        role: String,
        schema: String,
        reason: String,
    },
    /// A statement failed; everything before it was rolled back.
    #[error("provision failed while {purpose}: {message}{}; nothing was changed", hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Statement {
        purpose: &'static str,
        message: String,
        hint: Option<String>,
    },
}

/// The statements that provision one service, checked and ready to print or run.
#[derive(Debug, Clone)]
pub struct Plan {
    schema: Ident,
    role: Ident,
    owner: Option<Ident>,
    login: PlannedLogin,
    session: Option<SessionDefaults>,
}

/// Session settings written as the role's defaults (`ALTER ROLE … SET`).
/// A direct connection sends its own at connect and overrides them; behind
/// a transaction pooler, which takes no start-up options, they are what
/// every session gets, and the pool checks them at start-up.
#[derive(Debug, Clone)]
struct SessionDefaults {
    statement_timeout_ms: u128,
    idle_in_transaction_timeout_ms: u128,
    environment: String,
}

#[derive(Debug, Clone)]
enum PlannedLogin {
    /// The SCRAM-SHA-256 verifier of the password.
    Password(Secret),
    Iam {
        user: Ident,
        email: String,
    },
}

/// One statement and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub purpose: &'static str,
    pub sql: String,
}

/// Data privileges of the runtime role: what a service does with its rows.
/// Not TRUNCATE, REFERENCES or TRIGGER: those belong to migrations.
const TABLE_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE";
/// `nextval()` needs USAGE; `currval()` needs SELECT or USAGE.
const SEQUENCE_PRIVILEGES: &str = "USAGE, SELECT";

impl Plan {
    /// Checks every name and, for a password login, computes its verifier.
    pub fn new(req: &ProvisionRequest) -> Result<Plan, ProvisionError> {
        let schema = Ident::schema(&req.schema)?;
        let role = Ident::role(&req.role)?;
        let owner = req.owner.as_deref().map(Ident::existing_role).transpose()?;
        if owner.as_ref() == Some(&role) {
            return Err(ProvisionError::UnsafeRole {
                role: role.to_string(),
                schema: schema.to_string(),
                reason:
                    "it is the migration owner (--owner), which owns the tables and may drop them"
                        .into(),
            });
        }
        let login = match &req.login {
            Login::Password(password) => {
                let p = password.expose();
                if p.is_empty() {
                    return Err(ProvisionError::EmptyPassword);
                }
                if p.contains('\0') {
                    return Err(ProvisionError::NulInPassword);
                }
                PlannedLogin::Password(Secret::new(postgres_protocol::password::scram_sha_256(
                    p.as_bytes(),
                )))
            }
            Login::IamUser { email } => PlannedLogin::Iam {
                user: Ident::iam_user(email)?,
                email: email.trim().to_ascii_lowercase(),
            },
        };
        Ok(Plan {
            schema,
            role,
            owner,
            login,
            session: None,
        })
    }

    /// Also writes the service's session settings (`DB_QUERY_TIMEOUT`,
    /// `DB_IDLE_IN_TRANSACTION_TIMEOUT`, `APP_ENVIRONMENT`) as the role's
    /// defaults, which is what `DB_POOLER=transaction` relies on.
    pub fn with_session_defaults(mut self, params: &crate::connect::SessionParams) -> Plan {
        self.session = Some(SessionDefaults {
            statement_timeout_ms: params.statement_timeout.as_millis().max(1),
            idle_in_transaction_timeout_ms: params.idle_in_transaction_timeout.as_millis().max(1),
            environment: params.environment.clone(),
        });
        self
    }

    /// The statements with `PASSWORD '***'`: what `--dry-run` prints.
    pub fn statements(&self) -> Vec<Statement> {
        self.render(false)
    }

    /// The plan as one SQL script for people (and `psql -f`, once the
    /// password is filled in): a header, each statement under a comment
    /// saying why, in a transaction.
    pub fn to_sql(&self) -> String {
        let mut out = format!(
            "-- pgkit provision: schema {}, role {} ({}), tables owned by {}\nBEGIN;\n",
            self.schema,
            self.role,
            match &self.login {
                PlannedLogin::Password(_) => "password login".to_string(),
                PlannedLogin::Iam { user, .. } => format!("privileges for IAM user {user}"),
            },
            self.owner_display()
        );
        for s in self.statements() {
            out.push_str(&format!("\n-- {}\n{}\n", s.purpose, s.sql));
        }
        out.push_str("\nCOMMIT;\n");
        out
    }

    /// Runs the plan in one transaction. The caller's connection must be a
    /// role that may create roles and is the migration owner or a member of it.
    pub async fn apply(&self, client: &Client) -> Result<(), ProvisionError> {
        begin(client).await?;
        if let Err(e) = self.refuse_unsafe_roles(client).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        for statement in self.render(true) {
            if let Err(e) = client.batch_execute(&statement.sql).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(statement_error(statement.purpose, &e));
            }
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| statement_error("committing", &e))
    }

    /// Refuses, before anything is changed, a runtime role (or IAM user)
    /// that already exists as a superuser (or a Cloud SQL
    /// `cloudsqlsuperuser`), is the role running provision, is the
    /// migration owner, or owns the schema.
    async fn refuse_unsafe_roles(&self, client: &Client) -> Result<(), ProvisionError> {
        const CHECK: &str = "SELECT r.rolsuper \
                   OR EXISTS (SELECT FROM pg_catalog.pg_roles s \
                              WHERE s.rolname = 'cloudsqlsuperuser' \
                                AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')), \
               r.rolname IN (current_user, session_user), \
               r.rolname = coalesce($3, current_user), \
               EXISTS (SELECT FROM pg_catalog.pg_namespace n \
                       WHERE n.nspname = $2 AND n.nspowner = r.oid) \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1";
        let owner = self.owner.as_ref().map(Ident::to_string);
        let schema = self.schema.to_string();
        for role in self.login_roles() {
            let name = role.to_string();
            let row = client
                .query_opt(CHECK, &[&name, &schema, &owner])
                .await
                .map_err(|e| statement_error("checking the runtime role", &e))?;
            let Some(row) = row else { continue };
            let reason = if row.get::<_, bool>(0) {
                "it is a superuser: the service could do anything, and ALTER ROLE … SET search_path \
                 would change its settings in every database"
            } else if row.get::<_, bool>(1) {
                "it is the role running provision (the connecting role)"
            } else if row.get::<_, bool>(2) {
                "it is the migration owner, which owns the tables and may drop them"
            } else if row.get::<_, bool>(3) {
                "it owns the schema, so it could drop or alter every table in it"
            } else {
                continue;
            };
            return Err(ProvisionError::UnsafeRole {
                role: name,
                schema,
                reason: reason.into(),
            });
        }
        Ok(())
    }

    fn owner_display(&self) -> String {
        match &self.owner {
            Some(o) => o.to_string(),
            None => "the current user".to_string(),
        }
    }

    /// `CURRENT_USER` unless `--owner` names the migration owner.
    fn owner_sql(&self) -> String {
        self.owner
            .as_ref()
            .map_or_else(|| "CURRENT_USER".to_string(), Ident::quoted)
    }

    fn render(&self, with_secret: bool) -> Vec<Statement> {
        let (schema, role, owner) = (self.schema.quoted(), self.role.quoted(), self.owner_sql());
        let tracking = format!("{schema}.{}", crate::migrate::TABLE);
        let tracking_literal = postgres_protocol::escape::escape_literal(&tracking);
        let mut out = vec![
            Statement {
                purpose: "one provision at a time (two at once could both try to create the role)",
                sql: "SELECT pg_advisory_xact_lock(hashtext('pgkit provision'));".into(),
            },
            Statement {
                purpose: "the service's schema, owned by the migration owner",
                sql: format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};"),
            },
        ];
        out.extend(self.role_statements(with_secret));
        out.extend([
            Statement {
                purpose: "the role may connect to this database (even where CONNECT was revoked from PUBLIC)",
                sql: do_block(&format!(
                    "EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {});",
                    self.role.literal()
                )),
            },
            Statement {
                purpose: "the role may look up objects in the schema",
                sql: format!("GRANT USAGE ON SCHEMA {schema} TO {role};"),
            },
            Statement {
                purpose: "data privileges on the tables that exist now",
                sql: format!("GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {schema} TO {role};"),
            },
            Statement {
                purpose: "and on the sequences that exist now (serial and identity columns)",
                sql: format!("GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {schema} TO {role};"),
            },
            Statement {
                purpose: "tables the migration owner creates later get the same privileges (GRANT ... ON ALL TABLES alone misses them)",
                sql: format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {TABLE_PRIVILEGES} ON TABLES TO {role};"
                ),
            },
            Statement {
                purpose: "and so do sequences it creates later",
                sql: format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCES TO {role};"
                ),
            },
                   Statement {
                purpose: "pgkit's tracking table is read-only for the service: it must not rewrite its migration history (pgkit migrate does the same when it creates the table later)",
                sql: do_block(&format!(
                    "IF to_regclass({tracking_literal}) IS NOT NULL THEN\n        \
                     REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {tracking} FROM {role};\n    \
                     END IF;"
                )),
            },
        ]);
        out.extend(self.search_path_statements());
        out.extend(self.session_statements());
        out
    }

    /// The roles a login uses: the runtime role and, for IAM, its user
    /// (role settings are not inherited through membership).
    fn login_roles(&self) -> Vec<&Ident> {
        let mut roles = vec![&self.role];
        if let PlannedLogin::Iam { user, .. } = &self.login {
            roles.push(user);
        }
        roles
    }

    fn session_statements(&self) -> Vec<Statement> {
        let Some(d) = &self.session else {
            return Vec::new();
        };
        let settings = [
            ("statement_timeout", format!("{}ms", d.statement_timeout_ms)),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", d.idle_in_transaction_timeout_ms),
            ),
            ("app.environment", d.environment.clone()),
        ];
        let mut out = Vec::new();
        for role in self.login_roles() {
            for (name, value) in &settings {
                out.push(Statement {
                    purpose: "every session of the role gets the service's settings, also through a transaction pooler (DB_POOLER=transaction)",
                    sql: format!(
                        "ALTER ROLE {} SET {name} = {};",
                        role.quoted(),
                        postgres_protocol::escape::escape_literal(value)
                    ),
                });
            }
        }
        out
    }

    fn role_statements(&self, with_secret: bool) -> Vec<Statement> {
        let (role, role_literal) = (self.role.quoted(), self.role.literal());
        match &self.login {
            PlannedLogin::Password(verifier) => {
                let password = if with_secret {
                    postgres_protocol::escape::escape_literal(verifier.expose())
                } else {
                    "'***'".to_string()
                };
                vec![Statement {
                    purpose: "the runtime role, created once; an existing role keeps its password",
                    sql: do_block(&format!(
                        "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_literal}) THEN\n        \
                         CREATE ROLE {role} LOGIN PASSWORD {password};\n    \
                         ELSE\n        \
                         RAISE NOTICE 'role % exists; its password is left unchanged', {role_literal};\n    \
                         END IF;"
                    )),
                }]
            }
            PlannedLogin::Iam { user, email } => {
                let hint = format!(
                    "create it first: gcloud sql users create {user} --instance=INSTANCE --type={}",
                    iam_user_type(email)
                );
                vec![
                    Statement {
                        purpose: "the privileges live in a group role, created once (IAM users log in with tokens, not passwords)",
                        sql: do_block(&format!(
                            "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_literal}) THEN\n        \
                             CREATE ROLE {role} NOLOGIN;\n    \
                             END IF;"
                        )),
                    },
                    Statement {
                        purpose: "the IAM database user must exist (Cloud SQL creates it, not SQL)",
                        sql: do_block(&format!(
                            "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {user_literal}) THEN\n        \
                             RAISE EXCEPTION 'IAM database user % does not exist', {user_literal}\n            \
                             USING HINT = {hint_literal};\n    \
                             END IF;",
                            user_literal = user.literal(),
                            hint_literal = postgres_protocol::escape::escape_literal(&hint),
                        )),
                    },
                    Statement {
                        purpose: "the IAM user gets the group's privileges",
                        sql: format!("GRANT {role} TO {};", user.quoted()),
                    },
                ]
            }
        }
    }

    /// Unqualified names in the service's queries resolve in its schema
    /// first; `public` stays for extensions installed there.
    fn search_path_statements(&self) -> Vec<Statement> {
        let schema = self.schema.quoted();
        self.login_roles()
            .into_iter()
            .map(|r| Statement {
                purpose: "the role's queries find the schema's tables without qualifying them",
                sql: format!(
                    "ALTER ROLE {} SET search_path = {schema}, public;",
                    r.quoted()
                ),
            })
            .collect()
    }
}

/// `cloud_iam_service_account` for service accounts, `cloud_iam_user` for people.
fn iam_user_type(email: &str) -> &'static str {
    if email.ends_with(".gserviceaccount.com") {
        "cloud_iam_service_account"
    } else {
        "cloud_iam_user"
    }
}

/// A `DO` block around `body`, with a dollar-quote tag that `body` cannot end.
fn do_block(body: &str) -> String {
    let mut tag = "$pgkit$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$pgkit{n}$");
    }
    format!("DO {tag}\nBEGIN\n    {body}\nEND\n{tag};")
}

async fn begin(client: &Client) -> Result<(), ProvisionError> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| statement_error("starting the transaction", &e))
}

fn statement_error(purpose: &'static str, e: &tokio_postgres::Error) -> ProvisionError {
    match e.as_db_error() {
        Some(db) => ProvisionError::Statement {
            purpose,
            message: db.message().to_string(),
            hint: db.hint().map(str::to_string),
        },
        None => ProvisionError::Statement {
            purpose,
            message: e.to_string(),
            hint: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(login: Login) -> ProvisionRequest {
        ProvisionRequest {
            schema: "dave".into(),
            role: "dave_app".into(),
            login,
            owner: None,
        }
    }

    #[test]
    fn dry_run_shows_every_grant_and_never_the_password() {
        let plan = Plan::new(&request(Login::Password(Secret::new("Very-Secret-9")))).unwrap();
        let sql = plan.to_sql();
        assert!(!sql.contains("Very-Secret-9"), "{sql}");
        assert!(!sql.contains("SCRAM-SHA-256"), "{sql}");
        assert!(
            sql.contains("CREATE ROLE \"dave_app\" LOGIN PASSWORD '***';"),
            "{sql}"
        );
        for expected in [
            "CREATE SCHEMA IF NOT EXISTS \"dave\" AUTHORIZATION CURRENT_USER;",
            "GRANT USAGE ON SCHEMA \"dave\" TO \"dave_app\";",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"dave\" TO \"dave_app\";",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA \"dave\" TO \"dave_app\";",
            "ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA \"dave\" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"dave_app\";",
            "ALTER ROLE \"dave_app\" SET search_path = \"dave\", public;",
            "IF to_regclass('\"dave\".pgkit_migrations') IS NOT NULL THEN\n        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON \"dave\".pgkit_migrations FROM \"dave_app\";",
        ] {
            assert!(sql.contains(expected), "missing {expected}\n{sql}");
        }
        assert!(sql.starts_with("-- pgkit provision: schema dave, role dave_app"));
        assert!(sql.trim_end().ends_with("COMMIT;"));
    }

    #[test]
    fn the_applied_form_carries_a_verifier_not_the_password() {
        let plan = Plan::new(&request(Login::Password(Secret::new("pw-with-'quote")))).unwrap();
        let applied: String = plan.render(true).into_iter().map(|s| s.sql).collect();
        assert!(
            applied.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
            "{applied}"
        );
        assert!(!applied.contains("pw-with"), "{applied}");
        assert!(
            !format!("{plan:?}").contains("SCRAM-SHA-256$"),
            "Debug shows the verifier"
        );
    }

    #[test]
    fn owner_flag_is_quoted_into_default_privileges() {
        let mut req = request(Login::Password(Secret::new("x")));
        req.owner = Some("dave_owner".into());
        let sql = Plan::new(&req).unwrap().to_sql();
        assert!(sql.contains("AUTHORIZATION \"dave_owner\";"), "{sql}");
        assert!(sql.contains("FOR ROLE \"dave_owner\" IN SCHEMA"), "{sql}");
    }

    #[test]
    fn iam_login_grants_a_group_to_the_iam_user() {
        let plan = Plan::new(&request(Login::IamUser {
            email: "dave-run@proj.iam.gserviceaccount.com".into(),
        }))
        .unwrap();
        let sql = plan.to_sql();
        assert!(sql.contains("CREATE ROLE \"dave_app\" NOLOGIN;"), "{sql}");
        assert!(
            sql.contains("GRANT \"dave_app\" TO \"dave-run@proj.iam\";"),
            "{sql}"
        );
        assert!(
            sql.contains("gcloud sql users create dave-run@proj.iam --instance=INSTANCE --type=cloud_iam_service_account"),
            "{sql}"
        );
        assert!(
            sql.contains("ALTER ROLE \"dave-run@proj.iam\" SET search_path"),
            "{sql}"
        );
    }

    #[test]
    fn bad_input_is_refused_before_any_sql() {
        let mut req = request(Login::Password(Secret::new("")));
        assert!(matches!(
            Plan::new(&req),
            Err(ProvisionError::EmptyPassword)
        ));
        req.login = Login::Password(Secret::new("a\0b"));
        assert!(matches!(
            Plan::new(&req),
            Err(ProvisionError::NulInPassword)
        ));
        req.login = Login::Password(Secret::new("ok"));
        req.schema = "dave; DROP SCHEMA public".into();
        let err = Plan::new(&req).unwrap_err().to_string();
        assert!(err.starts_with("invalid schema name"), "{err}");
    }

    #[test]
    fn do_block_tag_cannot_be_closed_from_inside() {
        let block = do_block("RAISE NOTICE '$pgkit$';");
        assert!(block.starts_with("DO $pgkit1$\n"), "{block}");
        assert!(block.ends_with("$pgkit1$;"), "{block}");
    }
}
