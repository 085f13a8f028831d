//! The one column layout of the human listings (`status`, `history`,
//! `locks`, `test --list`): columns two spaces apart, each as wide as its
//! widest cell, left-aligned unless a column is a number (right-aligned),
//! no trailing blanks. Pure.

use std::fmt::Write as _;

/// How a column's cells are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    /// Numbers and durations: their last digits line up.
    Right,
}

/// Renders `rows` (the header first) as left-aligned lines, one per row.
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    render_aligned(rows, &[])
}

/// Renders `rows` (the header first), column `i` aligned by `align[i]`
/// (left where `align` has no entry).
pub(crate) fn render_aligned(rows: &[Vec<String>], align: &[Align]) -> String {
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
            match align.get(i) {
                Some(Align::Right) => {
                    let _ = write!(line, "{c:>w$}");
                }
                _ => {
                    let _ = write!(line, "{c:<w$}");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A cell for an optional value: `-` when absent or empty.
pub(crate) fn dash(value: Option<String>) -> String {
    value
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}
