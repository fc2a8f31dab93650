//! Schema and role names that must be written into SQL text.
//!
//! DDL (`CREATE SCHEMA`, `GRANT`, `ALTER ROLE`) takes no bind parameters, so
//! names given on the command line end up inside the statement. Each one is
//! checked against a narrow shape first (what a service's schema or role is
//! called in practice), then quoted with libpq's rules; a name that fails the
//! check never reaches the database. Cloud SQL IAM users are the one place
//! where `@`, `.` and `-` are legitimate, so they have their own constructor.

use std::fmt;

use postgres_protocol::escape::{escape_identifier, escape_literal};

/// PostgreSQL keeps names to 63 bytes (NAMEDATALEN - 1) and silently cuts
/// longer ones, which would make the grant land on another name.
const MAX_LEN: usize = 63;

/// Role names PostgreSQL reserves or gives a meaning of their own.
const RESERVED_ROLES: &[&str] = &[
    "public",
    "none",
    "current_user",
    "current_role",
    "session_user",
];

/// A name that failed its check; says which name, what is wrong, what fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: {problem}; {accepted}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub problem: String,
    pub accepted: &'static str,
}

/// A checked schema or role name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident(String);

const PLAIN_ACCEPTED: &str =
    "use 1 to 63 lower-case ASCII letters, digits and _, starting with a letter or _ (e.g. dave, dave_app)";
const IAM_ACCEPTED: &str =
    "use the IAM principal's email, e.g. dave-run@my-project.iam.gserviceaccount.com or alice@example.com";

impl Ident {
    /// A service schema: a plain lower-case name outside the `pg_` namespace.
    pub fn schema(name: &str) -> Result<Ident, NameError> {
        let ident = plain("schema name", name)?;
        if name.starts_with("pg_") {
            return Err(error(
                "schema name",
                name,
                "names starting with pg_ are reserved for the system",
                PLAIN_ACCEPTED,
            ));
        }
        Ok(ident)
    }

    /// A role pgkit creates or grants to: a plain lower-case name.
    pub fn role(name: &str) -> Result<Ident, NameError> {
        let ident = plain("role name", name)?;
        check_not_reserved("role name", name)?;
        Ok(ident)
    }

    /// A role that already exists and may be an IAM user (`--owner`): a
    /// plain name or an IAM database user name.
    pub fn existing_role(name: &str) -> Result<Ident, NameError> {
        if name.contains('@') {
            check_iam_shape("role name", name)?;
            return Ok(Ident(name.to_string()));
        }
        Ident::role(name)
    }

    /// The database user Cloud SQL creates for an IAM principal: the email,
    /// minus `.gserviceaccount.com` for service accounts.
    pub fn iam_user(email: &str) -> Result<Ident, NameError> {
        let email = email.trim().to_ascii_lowercase();
        check_iam_shape("IAM user email", &email)?;
        let name = crate::iam::iam_user_name(&email);
        if name.len() > MAX_LEN {
            return Err(error(
                "IAM user email",
                &email,
                "the database user name would be longer than 63 bytes, which PostgreSQL cannot hold",
                IAM_ACCEPTED,
            ));
        }
        Ok(Ident(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an SQL identifier: `"dave_app"`.
    pub fn quoted(&self) -> String {
        escape_identifier(&self.0)
    }

    /// The name as an SQL string literal: `'dave_app'`, for catalog lookups
    /// inside `DO` blocks.
    pub fn literal(&self) -> String {
        escape_literal(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn plain(what: &'static str, name: &str) -> Result<Ident, NameError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_LEN {
        Some("it is longer than 63 bytes")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        Some("it must start with a lower-case letter or _")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("only lower-case ASCII letters, digits and _ are accepted")
    } else {
        None
    };
    match problem {
        Some(p) => Err(error(what, name, p, PLAIN_ACCEPTED)),
        None => Ok(Ident(name.to_string())),
    }
}

fn check_not_reserved(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.starts_with("pg_") {
        return Err(error(
            what,
            name,
            "names starting with pg_ are reserved for the system",
            PLAIN_ACCEPTED,
        ));
    }
    if RESERVED_ROLES.contains(&name) {
        return Err(error(
            what,
            name,
            "it is a reserved role name",
            PLAIN_ACCEPTED,
        ));
    }
    Ok(())
}

/// `local@domain` with the characters emails of IAM principals use.
fn check_iam_shape(what: &'static str, name: &str) -> Result<(), NameError> {
    let allowed = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@' | '+')
    };
    let problem = match name.split_once('@') {
        _ if name.len() > 320 => Some("it is too long for an email"),
        None => Some("it is not an email address (no @)"),
        Some((local, domain)) if local.is_empty() || domain.is_empty() || domain.contains('@') => {
            Some("it is not an email address")
        }
        Some(_) if !name.chars().all(allowed) => {
            Some("only lower-case ASCII letters, digits and . _ - + @ are accepted")
        }
        Some(_) => None,
    };
    match problem {
        Some(p) => Err(error(what, name, p, IAM_ACCEPTED)),
        None => Ok(()),
    }
}

fn error(what: &'static str, name: &str, problem: &str, accepted: &'static str) -> NameError {
    NameError {
        what,
        name: name.to_string(),
        problem: problem.to_string(),
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_are_quoted() {
        let schema = Ident::schema("dave").unwrap();
        assert_eq!(schema.quoted(), "\"dave\"");
        assert_eq!(schema.literal(), "'dave'");
        assert_eq!(Ident::role("dave_app2").unwrap().as_str(), "dave_app2");
        assert!(Ident::role("_x").is_ok());
    }

    #[test]
    fn anything_that_could_break_out_of_a_quote_is_refused() {
        for bad in [
            "",
            "Dave",
            "dave-app",
            "2dave",
            "x\"; DROP ROLE postgres; --",
            "a'b",
            "a b",
            "a\\b",
            "dåve",
            &"a".repeat(64),
        ] {
            let err = Ident::schema(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid schema name"),
                "{bad}: {err}"
            );
            assert!(Ident::role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        assert!(Ident::schema("pg_temp").is_err());
        for bad in ["public", "current_user", "none", "pg_monitor"] {
            let err = Ident::role(bad).unwrap_err().to_string();
            assert!(err.contains("reserved"), "{bad}: {err}");
        }
    }

    #[test]
    fn iam_user_name_drops_the_service_account_suffix() {
        let sa = Ident::iam_user("Dave-Run@My-Project.iam.gserviceaccount.com").unwrap();
        assert_eq!(sa.as_str(), "dave-run@my-project.iam");
        assert_eq!(sa.quoted(), "\"dave-run@my-project.iam\"");
        let human = Ident::iam_user("alice@example.com").unwrap();
        assert_eq!(human.as_str(), "alice@example.com");
        for bad in ["dave", "a@b@c", "@x.com", "a\"b@x.com", "a'b@x.com"] {
            assert!(Ident::iam_user(bad).is_err(), "{bad}");
        }
        let long = format!("{}@p.iam.gserviceaccount.com", "a".repeat(60));
        assert!(Ident::iam_user(&long)
            .unwrap_err()
            .to_string()
            .contains("63 bytes"));
    }

    #[test]
    fn owner_may_be_plain_or_an_iam_user() {
        assert!(Ident::existing_role("dave_owner").is_ok());
        assert!(Ident::existing_role("ops@p.iam").is_ok());
        assert!(Ident::existing_role("x\"y").is_err());
    }
}
