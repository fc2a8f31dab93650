//! The server's settings: the options are validated (nothing that could
//! break out of its `postgresql.conf` line), and written to `pgkit.conf` at
//! every start, which `postgresql.conf` includes.

use std::fs;
use std::io::Write;

use super::{Inner, LocalError};

const CONF_FILE: &str = "pgkit.conf";

impl Inner {
    pub(super) fn setting_is(&self, name: &str, value: &str) -> bool {
        self.settings
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
    }

    /// pgkit's own settings, rewritten at every start.
    pub(super) fn write_conf(&self) -> Result<(), LocalError> {
        let mut text = String::from(
            "# Written by pgkit at every start of this local cluster; edits here are lost.\n\
             # Put your own settings in postgresql.conf before the include line.\n",
        );
        text.push_str("listen_addresses = ''\n");
        text.push_str(&format!(
            "unix_socket_directories = {}\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        ));
        for (name, value) in &self.settings {
            text.push_str(&format!("{name} = {}\n", conf_quote(value)));
        }
        let path = self.data_dir.join(CONF_FILE);
        fs::write(&path, text).map_err(LocalError::io("write", &path))?;
        if let Some(user) = self.server_user {
            user.chown(&path)?;
        }
        Ok(())
    }

    /// Makes `postgresql.conf` include pgkit's file; done once, after `initdb`.
    pub(super) fn include_pgkit_conf(&self) -> Result<(), LocalError> {
        let conf = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "\n# pgkit writes its settings there at every start.\ninclude_if_exists = '{CONF_FILE}'"
                )
            })
            .map_err(LocalError::io("append to", conf))
    }
}

pub(super) fn validate_superuser(name: &str) -> Result<(), LocalError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        return Ok(());
    }
    Err(LocalError::InvalidSetting {
        name: "superuser".to_owned(),
        reason: format!("{name:?} must be 1..63 ASCII letters, digits or underscores"),
    })
}

pub(super) fn validate_setting(name: &str, value: &str) -> Result<(), LocalError> {
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !name_ok {
        return Err(LocalError::InvalidSetting {
            name: name.to_owned(),
            reason: "a setting name is ASCII letters, digits, '_' and '.', e.g. fsync".to_owned(),
        });
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(LocalError::InvalidSetting {
            name: name.to_owned(),
            reason: "the value must be one line".to_owned(),
        });
    }
    Ok(())
}

/// A `postgresql.conf` string literal.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_and_quoted() {
        assert!(validate_setting("fsync", "off").is_ok());
        assert!(validate_setting("auto_explain.log_min_duration", "0").is_ok());
        assert!(validate_setting("fsync = on\nssl", "off").is_err());
        assert!(validate_setting("ssl", "on\nlisten_addresses='*'").is_err());
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(conf_quote(r"a\b"), r"'a\\b'");
    }
}
