//! The checksum that says whether an applied file changed.
//!
//! sha256 over the file's text after [`normalize`]: line endings become `\n`
//! and a leading byte-order mark is dropped, so a Windows checkout (CRLF, via
//! git's autocrlf) or an editor's BOM is not a change, while any edit to the
//! SQL itself is.

use sha2::{Digest, Sha256};

/// The text as the runner executes and checksums it.
pub fn normalize(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.replace("\r\n", "\n")
}

/// Lower-case hex sha256 of already-normalised text.
pub fn checksum(normalized: &str) -> String {
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_bom_are_not_changes_but_edits_are() {
        let lf = checksum(&normalize("BEGIN;\nSELECT 1;\nCOMMIT;\n"));
        assert_eq!(
            lf,
            checksum(&normalize("BEGIN;\r\nSELECT 1;\r\nCOMMIT;\r\n"))
        );
        assert_eq!(
            lf,
            checksum(&normalize("\u{feff}BEGIN;\nSELECT 1;\nCOMMIT;\n"))
        );
        assert_ne!(lf, checksum(&normalize("BEGIN;\nSELECT 2;\nCOMMIT;\n")));
        assert_eq!(lf.len(), 64);
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
