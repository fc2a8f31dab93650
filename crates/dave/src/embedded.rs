//! dave's migrations, seeds and test data, built into the binary (see
//! `build.rs`): `dave migrate` and `dave seed` need no files on disk, and the
//! test harness migrates from the same tables the binary carries.

include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_folders_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (table, sub) in [(MIGRATIONS, ""), (SEEDS, "seeds"), (DATA, "data")] {
            let mut on_disk: Vec<String> = std::fs::read_dir(dir.join(sub))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            on_disk.sort();
            let embedded: Vec<String> = table.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(embedded, on_disk, "migrations/{sub}");
            for (name, text) in table {
                assert_eq!(
                    *text,
                    std::fs::read_to_string(dir.join(sub).join(name)).unwrap()
                );
            }
        }
        assert!(!MIGRATIONS.is_empty());
    }
}
