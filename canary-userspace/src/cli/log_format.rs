//! canaryd's log lines: env_logger's text, or one JSON object per line
//! (`--log-format json`) that journald forwarders, Vector or Fluent Bit
//! read without a parsing rule.

use std::io::Write;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[2025-01-01T00:00:00Z INFO ] message`
    #[default]
    Text,
    /// `{"time":"2025-01-01T00:00:00.000Z","level":"INFO","target":"canaryd","message":"..."}`
    Json,
}

/// One log record as a JSON line (no newline).
pub fn json_line(time: &str, level: log::Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "time": time,
        "level": level.as_str(),
        "target": target,
        "message": message,
    })
    .to_string()
}

/// Installs the process's logger at `level` in `format`.
pub fn init(format: LogFormat, level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    match format {
        LogFormat::Text => {
            b.format_target(false);
        }
        LogFormat::Json => {
            b.format(|buf, record| {
                let time = buf.timestamp_millis().to_string();
                let line = json_line(
                    &time,
                    record.level(),
                    record.target(),
                    &record.args().to_string(),
                );
                writeln!(buf, "{line}")
            });
        }
    }
    b.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_the_four_fields_even_with_newlines() {
        let line = json_line(
            "2025-01-01T00:00:00.000Z",
            log::Level::Warn,
            "canaryd",
            "reload failed:\n\"x\" is wrong",
        );
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "canaryd");
        assert_eq!(v["time"], "2025-01-01T00:00:00.000Z");
        assert_eq!(v["message"], "reload failed:\n\"x\" is wrong");
    }
}
