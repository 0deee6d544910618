//! Screening of policy text before it is parsed: hostile or broken input is refused with an
//! error naming the line, column or field, instead of exhausting memory or being silently
//! misread.
//!
//! The YAML loader behind the `config` crate (`yaml-rust2`) resolves an alias by copying
//! the anchored node, so a 1 KB document of nested aliases ("billion laughs") expands to
//! gigabytes, and its NUL handling ends the document early. So, before `config` sees the
//! text:
//!
//! 1. a leading UTF-8 byte-order mark is dropped (editors on Windows write one);
//! 2. documents over [`MAX_POLICY_BYTES`] are refused;
//! 3. NUL and every other control character except tab, LF and CR is refused, naming its
//!    line and column (YAML forbids them; the loader would truncate at a NUL);
//! 4. the text is run through the YAML *event* parser, which never expands aliases and
//!    takes time and memory linear in the text. It computes, exactly, how many values the
//!    document holds once every alias is expanded (an anchor's size is known when its node
//!    ends; an alias adds that size) and how many bytes of scalar text, and refuses the
//!    document past [`MAX_VALUES`] values, [`MAX_SCALAR_BYTES`] bytes or [`MAX_DEPTH`]
//!    levels of nesting (the later conversions recurse). A real policy holds a few hundred
//!    values, a few KB, five levels.
//! 5. `.nan`, `.inf` and numbers too large for a float are refused naming their field (the
//!    loader's own error names none).
//!
//! Counting before loading, rather than capping the loader, keeps the bound independent of
//! the loader's internals: whatever `config` does with the text, it never sees a document
//! whose expansion is larger than these limits.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// The largest policy file accepted, in bytes (a real one is a few KB).
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// The most values (scalars, lists and maps) a policy may hold with its aliases expanded.
pub const MAX_VALUES: u64 = 20_000;
/// The most bytes of scalar text a policy may hold with its aliases expanded.
pub const MAX_SCALAR_BYTES: u64 = 1 << 20;
/// The deepest nesting of lists and maps accepted.
pub const MAX_DEPTH: usize = 32;

/// A problem found by screening: the field path (empty if unknown) and the message.
pub type Problem = (String, String);

/// Screens policy text; returns it without a leading byte-order mark.
pub fn screen(text: &str) -> Result<&str, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() > MAX_POLICY_BYTES {
        return Err((
            String::new(),
            format!(
                "the policy is {} bytes, more than the {} accepted; a policy is a few KB: is this the right file?",
                text.len(),
                MAX_POLICY_BYTES
            ),
        ));
    }
    check_characters(text)?;
    check_structure(text)?;
    Ok(text)
}

/// The 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn check_characters(text: &str) -> Result<(), Problem> {
    let Some((at, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    else {
        return Ok(());
    };
    let (line, col) = line_col(text, at);
    let name = match c {
        '\0' => "a NUL byte".to_string(),
        c => format!("control character U+{:04X}", c as u32),
    };
    Err((
        String::new(),
        format!(
            "line {line}, column {col}: {name}; YAML allows no control characters but tab, LF and CR, and the text after it could be misread; remove it (an editor or a copy from a binary file put it there)"
        ),
    ))
}

/// One open list or map, for the field path of errors.
enum Frame {
    /// A list and the index of its next item.
    Seq(usize),
    /// A map: whether the next node is a key, and the last key.
    Map { at_key: bool, key: String },
}

/// An open list or map: its frame, its anchor (0: none), and the value and byte counts
/// at its start (to size its anchor when it ends).
struct Open {
    frame: Frame,
    anchor: usize,
    values: u64,
    bytes: u64,
}

struct Walk {
    stack: Vec<Open>,
    /// The expanded size of each anchor: values and scalar bytes.
    anchors: std::collections::HashMap<usize, (u64, u64)>,
    values: u64,
    bytes: u64,
}

impl Walk {
    fn path(&self) -> String {
        let mut p = String::new();
        for open in &self.stack {
            match &open.frame {
                Frame::Seq(i) => p.push_str(&format!("[{}]", i.saturating_sub(1))),
                Frame::Map { key, .. } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(key);
                }
            }
        }
        p
    }

    /// A node begins in the innermost collection; returns whether it is a map key.
    fn node(&mut self) -> bool {
        match self.stack.last_mut().map(|o| &mut o.frame) {
            Some(Frame::Seq(i)) => {
                *i += 1;
                false
            }
            Some(Frame::Map { at_key, .. }) => {
                let was = *at_key;
                *at_key = !*at_key;
                was
            }
            None => false,
        }
    }

    fn add(&mut self, values: u64, bytes: u64, mark: Marker) -> Result<(), Problem> {
        self.values = self.values.saturating_add(values);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.values > MAX_VALUES || self.bytes > MAX_SCALAR_BYTES {
            return Err((
                self.path(),
                format!(
                    "line {}, column {}: with its aliases (*name) expanded the policy holds more than {MAX_VALUES} values or {MAX_SCALAR_BYTES} bytes of text; a policy holds a few hundred: write the values out, or use fewer nested aliases",
                    mark.line(),
                    mark.col() + 1
                ),
            ));
        }
        Ok(())
    }
}

fn check_structure(text: &str) -> Result<(), Problem> {
    let mut parser = Parser::new_from_str(text);
    let mut w = Walk {
        stack: Vec::new(),
        anchors: std::collections::HashMap::new(),
        values: 0,
        bytes: 0,
    };
    loop {
        // A syntax error is left to the loader, which reports it in its own words.
        let Ok((event, mark)) = parser.next_token() else {
            return Ok(());
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(v, style, anchor, _) => {
                let is_key = w.node();
                if let Some(Frame::Map { key, .. }) = w.stack.last_mut().map(|o| &mut o.frame)
                    && is_key
                {
                    *key = v.clone();
                }
                if !is_key && style == TScalarStyle::Plain && is_unusable_float(&v) {
                    return Err((
                        w.path(),
                        format!(
                            "`{v}` is not a number a policy can use (NaN or infinite); write a finite number"
                        ),
                    ));
                }
                let bytes = v.len() as u64;
                w.add(1, bytes, mark)?;
                if anchor > 0 {
                    w.anchors.insert(anchor, (1, bytes));
                }
            }
            Event::Alias(anchor) => {
                w.node();
                let (values, bytes) = w.anchors.get(&anchor).copied().unwrap_or((1, 0));
                w.add(values, bytes, mark)?;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                w.node();
                w.add(1, 0, mark)?;
                if w.stack.len() >= MAX_DEPTH {
                    return Err((
                        w.path(),
                        format!(
                            "line {}, column {}: lists and maps nest more than {MAX_DEPTH} deep; a policy nests about five",
                            mark.line(),
                            mark.col() + 1
                        ),
                    ));
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(0)
                } else {
                    Frame::Map {
                        at_key: true,
                        key: String::new(),
                    }
                };
                w.stack.push(Open {
                    frame,
                    anchor,
                    values: w.values - 1,
                    bytes: w.bytes,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = w.stack.pop() else {
                    return Ok(());
                };
                if open.anchor > 0 {
                    w.anchors
                        .insert(open.anchor, (w.values - open.values, w.bytes - open.bytes));
                }
            }
            _ => {}
        }
    }
}

/// `.nan`, `.inf` and their spellings, and decimal numbers that overflow a float.
fn is_unusable_float(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.trim_start_matches(['+', '-']),
        ".nan" | ".inf" | "nan" | "inf" | "infinity"
    ) && v.starts_with(['.', '+', '-'])
    {
        return true;
    }
    let looks_numeric = lower
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && lower
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-' | '_'));
    looks_numeric && v.parse::<f64>().is_ok_and(|f| f.is_infinite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        assert_eq!(line_col("ab\ncé\0", 6), (2, 3));
        assert_eq!(line_col("\0", 0), (1, 1));
    }

    #[test]
    fn a_flat_document_counts_its_values_and_an_alias_its_anchor() {
        assert!(check_structure("a: &x [1, 2, 3]\nb: *x\n").is_ok());
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n\
                    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        // 10 + 100 + 1000 + 10000 + 100000 scalars: refused at `e`.
        let (field, msg) = check_structure(bomb).unwrap_err();
        assert_eq!(field, "e[0]", "{msg}");
        assert!(msg.contains("aliases"), "{msg}");
        // One level fewer is about 11 000 values: accepted.
        let smaller: String = bomb.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert!(check_structure(&smaller).is_ok());
    }

    #[test]
    fn an_alias_to_a_long_scalar_counts_its_bytes() {
        let long = "y".repeat(100_000);
        let text = format!("a: &a {long}\nb: [{}]\n", vec!["*a"; 20].join(", "));
        let (field, msg) = check_structure(&text).unwrap_err();
        assert!(field.starts_with("b["), "{field}");
        assert!(msg.contains("bytes of text"), "{msg}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        let (_, msg) = check_structure(&text).unwrap_err();
        assert!(msg.contains("nest more than"), "{msg}");
    }

    #[test]
    fn unusable_floats_are_named_by_their_field() {
        for v in [".nan", ".NaN", ".inf", "-.inf", "+.INF", "1e309", "-1e400"] {
            let (field, msg) = check_structure(&format!("a:\n  b: [1, {v}]\n")).unwrap_err();
            assert_eq!(field, "a.b[1]", "{v}");
            assert!(msg.contains(v), "{msg}");
        }
        for v in ["nan", "inf", "'.nan'", "1e308", "0.5", "1.5e3", "10.0.0.1"] {
            assert!(check_structure(&format!("a: {v}\n")).is_ok(), "{v}");
        }
    }

    #[test]
    fn control_characters_are_refused_with_their_place() {
        let (_, msg) = screen("a: 1\nb: x\0y\n").unwrap_err();
        assert!(msg.contains("line 2, column 5: a NUL byte"), "{msg}");
        let (_, msg) = screen("a: \u{1b}[1m\n").unwrap_err();
        assert!(
            msg.contains("line 1, column 4: control character U+001B"),
            "{msg}"
        );
        assert!(screen("a: 1\r\n\tb: 2\n").is_ok());
        assert_eq!(screen("\u{feff}a: 1\n").unwrap(), "a: 1\n");
    }
}
