//! Durations and sizes as SPEC section 1 writes them: `500ms`, `10s`, `5m`,
//! `1h` or whole seconds; bytes with an optional `K`, `M`, `G` suffix
//! (powers of 1024). Pure: used by clap value parsers and by test headers.

use std::time::Duration;

/// Parses `500ms`, `10s`, `5m`, `1h` or plain whole seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = split_number(t);
    if digits.is_empty() || digits.len() > 12 {
        return Err(format!(
            "`{text}` is not a duration: write whole numbers with ms, s, m, h or d (e.g. 500ms, 10s, 5m, 1h, 7d) or plain seconds"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: the number is out of range"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        // Days, for the look-back of `history --since` and `timeline`.
        "d" => Duration::from_secs(n * 86_400),
        _ => {
            return Err(format!(
                "`{text}` is not a duration: unit `{unit}` is not one of ms, s, m, h, d"
            ))
        }
    };
    Ok(d)
}

/// Parses bytes with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = split_number(t);
    if digits.is_empty() || digits.len() > 15 {
        return Err(format!(
            "`{text}` is not a size: write whole bytes with an optional K, M or G suffix (e.g. 512M)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size: the number is out of range"))?;
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` is not a size: suffix `{unit}` is not one of K, M, G"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is not a size: too large"))
}

fn split_number(t: &str) -> (&str, &str) {
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    t.split_at(end)
}

/// Formats a size the way humans read it: `512B`, `1.0K`, `16.0M` (powers
/// of 1024, as sizes are written).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1}{unit}")
}

/// Formats a duration the way humans read it in logs: `850ms`, `12.3s`, `4m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
