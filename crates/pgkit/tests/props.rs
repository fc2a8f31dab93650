//! Property tests for pgkit's parsers of outside input: the DSN (an
//! environment variable anyone on the project may set), migration files
//! (split into statements and classified) and the linter (which reads any
//! `.sql` file it is pointed at).
//!
//! What must hold for every input, not just the examples in the unit tests:
//! nothing panics; what the formatter writes parses back to the same value;
//! a DSN error or redacted DSN never shows the password, whatever the
//! password holds. Case counts stay modest so the file runs in seconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pgkit::dsn::{Dsn, Host};
use pgkit::lint::{lint_files, LintOptions};
use pgkit::migrate::{Migration, TxMode};
use proptest::prelude::*;

// ---------------------------------------------------------------- DSN

/// A password as generators make them: base64 (`+ / =`) and the symbols of
/// password managers, raw `/ ? #` included. Raw `@`, `%` and `&` are left to
/// [`encoded_password`]: `%XX` in a raw password is a percent escape by
/// definition, and a raw `@` or `&` can make the URL ambiguous.
fn raw_password() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=?#:!*~._-]{12,40}"
        // `?…user=…` in a raw password reads as a query naming the user
        // and no userinfo at all; percent-encoding is the way out.
        .prop_filter("reads as a query with a user", |p| !p.contains("user="))
}

/// Any printable text, `@ % & ;` and non-ASCII included: fine once encoded.
fn encoded_password() -> impl Strategy<Value = String> {
    "[ -~éü€]{12,40}"
}

fn user() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,15}"
}

fn dbname() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,15}"
}

fn tcp_host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("::1".to_string()),
    ]
}

/// A Cloud SQL socket directory: `/cloudsql/PROJECT:REGION:INSTANCE`.
fn socket_dir() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}:[a-z]+-[a-z]+[0-9]:[a-z][a-z0-9-]{0,12}"
        .prop_map(|s| format!("/cloudsql/{s}"))
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// `host[:port]` as written after the `@` (IPv6 between brackets).
fn authority_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Everything a DSN error or a displayed DSN must not show.
fn assert_hidden(shown: &str, password: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !shown.contains(password),
        "password {password:?} shown in {shown:?}"
    );
    let encoded = encode(password);
    prop_assert!(
        !shown.contains(&encoded),
        "encoded password shown in {shown:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dsn_parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = Dsn::parse(&text);
    }

    /// Arbitrary text after the scheme, from the characters that steer the
    /// parser, so that every branch is reached, not just the scheme check.
    #[test]
    fn dsn_parse_never_panics_on_url_like_text(
        rest in "[a-z0-9:@/?#&=%\\[\\],.é]{0,60}",
        scheme in prop_oneof![Just("postgresql://"), Just("postgres://")],
    ) {
        if let Ok(dsn) = Dsn::parse(&format!("{scheme}{rest}")) {
            // Whatever was accepted formats to a URL that reads back the same.
            let again = Dsn::parse(&dsn.to_url_with_password());
            prop_assert_eq!(again.as_ref(), Ok(&dsn), "{}", rest);
        }
    }

    #[test]
    fn tcp_dsn_with_raw_password_parses_back_to_its_parts(
        user in user(),
        password in raw_password(),
        host in tcp_host(),
        port in 1u16..,
        db in dbname(),
    ) {
        let url = format!(
            "postgresql://{user}:{password}@{}/{db}?sslmode=require",
            authority_host(&host, port)
        );
        let dsn = Dsn::parse(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(&dsn.user, &user);
        prop_assert_eq!(dsn.password().map(|p| p.expose()), Some(password.as_str()));
        prop_assert_eq!(&dsn.host, &Host::Tcp(host));
        prop_assert_eq!(dsn.port, port);
        prop_assert_eq!(&dsn.dbname, &db);
        assert_hidden(&dsn.to_string(), &password)?;
        assert_hidden(&format!("{dsn:?}"), &password)?;
        prop_assert_eq!(Dsn::parse(&dsn.to_url_with_password()), Ok(dsn));
    }

    #[test]
    fn tcp_dsn_with_encoded_password_parses_back_to_its_parts(
        user in user(),
        password in encoded_password(),
        host in tcp_host(),
        port in 1u16..,
        db in dbname(),
    ) {
        let url = format!(
            "postgresql://{user}:{}@{}/{db}",
            encode(&password),
            authority_host(&host, port)
        );
        let dsn = Dsn::parse(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(&dsn.user, &user);
        prop_assert_eq!(dsn.password().map(|p| p.expose()), Some(password.as_str()));
        prop_assert_eq!(&dsn.host, &Host::Tcp(host));
        prop_assert_eq!(dsn.port, port);
        prop_assert_eq!(&dsn.dbname, &db);
        assert_hidden(&dsn.redacted(), &password)?;
        prop_assert_eq!(Dsn::parse(&dsn.to_url_with_password()), Ok(dsn));
    }

    #[test]
    fn socket_dsn_with_raw_or_encoded_password_parses_back_to_its_parts(
        user in user(),
        raw in raw_password(),
        encoded in encoded_password(),
        use_raw in any::<bool>(),
        dir in socket_dir(),
        db in dbname(),
    ) {
        let (password, written) = if use_raw {
            (raw.clone(), raw)
        } else {
            let written = encode(&encoded);
            (encoded, written)
        };
        let url = format!("postgresql://{user}:{written}@/{db}?host={dir}");
        let dsn = Dsn::parse(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(&dsn.user, &user);
        prop_assert_eq!(dsn.password().map(|p| p.expose()), Some(password.as_str()));
        prop_assert_eq!(dsn.socket_dir(), Some(std::path::Path::new(&dir)));
        prop_assert!(dsn.is_cloud_sql_socket());
        prop_assert_eq!(&dsn.dbname, &db);
        assert_hidden(&dsn.redacted(), &password)?;
        prop_assert_eq!(Dsn::parse(&dsn.to_url_with_password()), Ok(dsn));
    }

    /// Each mistake a person makes in a DSN, with a password next to it
    /// (raw or encoded): refused, and the message names the mistake without
    /// a character of the password's text.
    #[test]
    fn dsn_errors_never_show_the_password(
        user in user(),
        raw in raw_password(),
        encoded in encoded_password(),
        use_raw in any::<bool>(),
        host in "[a-z]{1,10}",
        mistake in 0usize..9,
    ) {
        let (password, written) = if use_raw {
            (raw.clone(), raw)
        } else {
            let written = encode(&encoded);
            (encoded, written)
        };
        let url = match mistake {
            0 => format!("postgresql://{user}:{written}@{host}:notaport/d"),
            1 => format!("postgresql://{user}:{written}@{host}:0/d"),
            2 => format!("postgresql://{user}:{written}@{host}:65536/d"),
            3 => format!("postgresql://{user}:{written}@{host}/d?colour=blue"),
            4 => format!("postgresql://{user}:{written}@{host}/d?sslmode=sometimes"),
            5 => format!("postgresql://{user}:{written}@{host},{host}2/d"),
            6 => format!("postgresql://:{written}@{host}/d"),
            7 => format!("mysql://{user}:{written}@{host}/d"),
            _ => format!("postgresql://{user}:{written}@{host}/d?sslmode=verify-full"),
        };
        match Dsn::parse(&url) {
            Ok(dsn) => prop_assert!(false, "{} was accepted as {}", url, dsn),
            Err(e) => {
                assert_hidden(&e.to_string(), &password)?;
                assert_hidden(&format!("{e:?}"), &password)?;
                // The port and host mistakes come with the way out.
                if mistake <= 2 || mistake == 5 {
                    prop_assert!(e.to_string().contains("percent-encode"), "{}", e);
                }
            }
        }
    }
}

// ------------------------------------------------- migration SQL splitter

/// A piece of an expression that may hide a `;` from the splitter.
fn sql_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,5}",
        "[a-z_][a-z0-9_]{0,8}",
        // A string literal, quotes doubled, any `;` `"` `$` inside.
        "[a-z ;\"$é(){}-]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        // An escape string: backslash escapes, `;` inside.
        "[a-z ;]{0,8}".prop_map(|s| format!("E'it\\'s {s}'")),
        // A quoted identifier.
        "[a-z ;'$]{1,12}".prop_map(|s| format!("\"{s}\"")),
        // A dollar-quoted string; the body never holds its own delimiter.
        ("[a-z]{0,4}", "[a-z ;'\"\n]{0,20}")
            .prop_map(|(tag, body)| format!("${tag}${body}${tag}$")),
        // A parenthesised list.
        "[0-9]{1,3}(, [0-9]{1,3}){0,3}".prop_map(|s| format!("({s})")),
    ]
}

/// A comment that may sit inside a statement or between two.
fn sql_comment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ;'\"$]{0,20}".prop_map(|s| format!("-- {s}\n")),
        "[a-z ;'\"$\n]{0,20}".prop_map(|s| format!("/* {s} */")),
    ]
}

/// One well-formed statement, ending with its `;`.
fn sql_statement() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::collection::vec(sql_piece(), 1..5),
            prop::option::of(sql_comment())
        )
            .prop_map(|(pieces, comment)| {
                let comment = comment.unwrap_or_default();
                format!("SELECT {} {comment}AS x;", pieces.join(", "))
            }),
        ("[a-z]{1,8}", sql_piece())
            .prop_map(|(t, p)| format!("CREATE TABLE {t} (a text DEFAULT {p}, \"b;\" int);")),
        ("[a-z]{1,8}", sql_piece()).prop_map(|(t, p)| format!("INSERT INTO {t} VALUES ({p});")),
        "[a-z ;']{0,12}".prop_map(|s| format!(
            "DO $$ BEGIN RAISE NOTICE '{}'; END $$;",
            s.replace('\'', "''")
        )),
        ("[a-z]{1,8}", 0u8..3).prop_map(|(f, n)| {
            let body: String = (0..=n).map(|i| format!(" SELECT {i};")).collect();
            format!(
                "CREATE OR REPLACE FUNCTION {f}() RETURNS int LANGUAGE sql BEGIN ATOMIC{body} \
                 SELECT CASE WHEN true THEN 1 ELSE 0 END; END;"
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Statements joined with blank text and comments come back one by
    /// one, exactly as written: psql would send the same ones.
    #[test]
    fn splitting_generated_statements_yields_them_back(
        parts in prop::collection::vec(
            (sql_statement(), prop::option::of(sql_comment()), "[ \n\t]{0,3}"),
            1..8,
        ),
    ) {
        let mut text = String::new();
        for (statement, comment, blank) in &parts {
            text.push_str(comment.as_deref().unwrap_or(""));
            text.push_str(statement);
            text.push_str(blank);
        }
        let migration = Migration::from_file("001_generated.sql", &text)
            .map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        let got: Vec<&str> = migration
            .statements
            .iter()
            .map(|s| &migration.sql[s.range.clone()])
            .collect();
        let want: Vec<&str> = parts.iter().map(|(s, _, _)| s.as_str()).collect();
        prop_assert_eq!(got, want, "{}", text);
        prop_assert_eq!(migration.mode, TxMode::Wrapped);
    }

    /// A file wrapped in its own BEGIN … COMMIT is recognised as such
    /// wherever the generated statements put semicolons in between.
    #[test]
    fn own_transaction_is_found_around_generated_statements(
        statements in prop::collection::vec(sql_statement(), 1..6),
    ) {
        let text = format!("BEGIN;\n{}\nCOMMIT;\n", statements.join("\n"));
        let migration = Migration::from_file("002_own.sql", &text)
            .map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        let commit = statements.len() + 1;
        prop_assert_eq!(migration.mode, TxMode::Own { begin: 0, commit });
    }

    /// Any text: no panic; statements lie inside the file, in order,
    /// without overlapping, each starting and ending on a character boundary.
    #[test]
    fn splitting_any_text_never_panics_and_stays_in_bounds(
        text in prop_oneof![
            any::<String>(),
            "[a-z ;'\"$()\\-/*\nE\\\\é]{0,80}",
        ],
    ) {
        if let Ok(migration) = Migration::from_file("003_any.sql", &text) {
            let mut end = 0;
            for s in &migration.statements {
                prop_assert!(s.range.start >= end && s.range.start < s.range.end);
                prop_assert!(s.range.end <= migration.sql.len());
                prop_assert!(migration.sql.is_char_boundary(s.range.start));
                prop_assert!(migration.sql.is_char_boundary(s.range.end));
                end = s.range.end;
            }
            for byte in [0, migration.sql.len() / 2, migration.sql.len()] {
                prop_assert!(migration.line_of(byte) >= 1);
            }
        }
    }
}

// ----------------------------------------------------------------- lint

/// Every `.sql` file of the lint fixtures: real migrations that break (and
/// follow) each rule, so the mutations below reach every rule's code.
fn fixture_sql() -> &'static [String] {
    static FILES: OnceLock<Vec<String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files = Vec::new();
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    files.push(fs::read_to_string(&path).unwrap());
                }
            }
        }
        files.sort();
        assert!(files.len() > 20, "lint fixtures not found");
        files
    })
}

fn fixture() -> impl Strategy<Value = String> {
    prop::sample::select(fixture_sql())
}

/// Checks what must hold of any report: findings point into the file, at
/// a column the line has, and say what to do.
fn check_findings(text: &str, report: &pgkit::lint::Report) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    for finding in report.findings() {
        prop_assert!(
            finding.line >= 1 && finding.line as usize <= lines.len(),
            "{finding:?}"
        );
        let width = lines[finding.line as usize - 1].chars().count() as u32;
        prop_assert!(finding.col >= 1 && finding.col <= width + 1, "{finding:?}");
        prop_assert!(
            !finding.message.is_empty() && !finding.fix.is_empty(),
            "{finding:?}"
        );
    }
    let _ = report.to_text();
    let _ = report.to_json();
    Ok(())
}

fn lint_one(name: &str, folder: Option<&str>, text: &str) -> pgkit::lint::Report {
    let path = match folder {
        Some(f) => PathBuf::from("migrations").join(f).join(name),
        None => PathBuf::from("migrations").join(name),
    };
    lint_files(&[(path, text.to_string())], &LintOptions::default())
}

proptest! {
    // The linter parses a whole file per case: fewer cases keep it quick.
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any text, as a migration, a seed or test data: no panic, and every
    /// finding points inside the file.
    #[test]
    fn lint_never_panics_and_findings_point_into_the_file(
        text in prop_oneof![
            any::<String>(),
            "[a-zA-Z ;'\"$()\\-/*\n,.=é]{0,120}",
            prop::collection::vec(sql_statement(), 0..5).prop_map(|s| s.join("\n")),
        ],
        folder in prop_oneof![Just(None), Just(Some("seeds")), Just(Some("data"))],
    ) {
        let report = lint_one("001_any.sql", folder, &text);
        check_findings(&text, &report)?;
    }

    /// SQL-looking text cut at a random character (an editor crash, a bad
    /// merge): still no panic, and the file is reported as broken or not,
    /// never half-checked with a crash.
    #[test]
    fn lint_never_panics_on_truncated_statements(
        statements in prop::collection::vec(sql_statement(), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = statements.join("\n");
        let chars: Vec<char> = text.chars().collect();
        let truncated: String = chars[..cut.index(chars.len() + 1)].iter().collect();
        let report = lint_one("001_cut.sql", None, &truncated);
        check_findings(&truncated, &report)?;
    }

    /// The fixtures' real migrations, damaged: cut short, with text (quotes,
    /// dollar quotes, comments, non-ASCII) dropped in at any character, or
    /// wrapped whole in a `DO` block whose body offsets must be mapped back.
    #[test]
    fn lint_never_panics_on_damaged_real_migrations(
        file in fixture(),
        damage in 0u8..3,
        at in any::<prop::sample::Index>(),
        insert in prop_oneof![
            "[ -~]{0,12}",
            Just("$$".to_string()),
            Just("'".to_string()),
            Just("/*".to_string()),
            Just("--".to_string()),
            Just("\néé€ \t".to_string()),
            Just("DO $$ BEGIN ".to_string()),
        ],
        folder in prop_oneof![Just(None), Just(Some("seeds")), Just(Some("data"))],
    ) {
        let chars: Vec<char> = file.chars().collect();
        let i = at.index(chars.len() + 1);
        let text: String = match damage {
            0 => chars[..i].iter().collect(),
            1 => {
                let (a, b) = chars.split_at(i);
                format!("{}{insert}{}", a.iter().collect::<String>(), b.iter().collect::<String>())
            }
            _ => format!("-- é\nDO $body$\nBEGIN\n{file}\nEND\n$body$;\n"),
        };
        let report = lint_one("002_damaged.sql", folder, &text);
        check_findings(&text, &report)?;
    }

    /// Several real files run together as one, as a careless merge would.
    #[test]
    fn lint_never_panics_on_merged_real_migrations(
        files in prop::collection::vec(fixture(), 1..4),
        folder in prop_oneof![Just(None), Just(Some("seeds")), Just(Some("data"))],
    ) {
        let text = files.join("\n");
        let report = lint_one("003_merged.sql", folder, &text);
        check_findings(&text, &report)?;
    }
}
