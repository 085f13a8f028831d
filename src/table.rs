//! The one column layout of the human listings (`status`, `history`,
//! `test --list`): left-aligned columns two spaces apart, each as wide as
//! its widest cell, no trailing blanks. Pure.

use std::fmt::Write as _;

/// Renders `rows` (the header first) as aligned lines, one per row.
pub fn render(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        if widths.len() < row.len() {
            widths.resize(row.len(), 0);
        }
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{c:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A cell for an optional value: `-` when absent or empty.
pub fn dash(value: Option<String>) -> String {
    value
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}
