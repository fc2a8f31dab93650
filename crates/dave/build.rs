//! Builds the list of dave's migration, seed and test-data files into the
//! binary, so a deployed container needs no migrations folder and a new file
//! in `migrations/` is picked up without editing any Rust.
//!
//! Writes `$OUT_DIR/embedded_migrations.rs` with three
//! `&[(file name, contents)]` tables (`include_str!` of each `.sql` file, in
//! name order): `MIGRATIONS` (`migrations/*.sql`), `SEEDS`
//! (`migrations/seeds/*.sql`) and `DATA` (`migrations/data/*.sql`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

/// Paths in the generated code are relative to `CARGO_MANIFEST_DIR`, read
/// when the crate compiles: another checkout sharing the target directory
/// then still compiles its own files.
fn table(out: &mut String, name: &str, root: &Path, sub: &str) {
    let _ = writeln!(out, "pub static {name}: &[(&str, &str)] = &[");
    for path in sql_files(&root.join(sub)) {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let relative = if sub.is_empty() {
            format!("/migrations/{file}")
        } else {
            format!("/migrations/{sub}/{file}")
        };
        let _ = writeln!(
            out,
            "    ({file:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {relative:?}))),"
        );
    }
    out.push_str("];\n");
}

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let migrations = root.join("migrations");
    println!("cargo:rerun-if-changed=migrations");
    let mut out = String::new();
    table(&mut out, "MIGRATIONS", &migrations, "");
    table(&mut out, "SEEDS", &migrations, "seeds");
    table(&mut out, "DATA", &migrations, "data");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(dest.join("embedded_migrations.rs"), out).expect("OUT_DIR is writable");
}
