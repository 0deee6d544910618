//! Writing suggested values into a policy file in place, keeping its comments and layout:
//! a value is replaced on its own line (or inside a `{ ... }` flow mapping), or a line is
//! added under its section. Every edit is checked by reading the edited text back as a
//! policy: an edit that does not read back as intended is refused, and nothing is written.

/// Where a value lives in a policy file.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// A top-level section's key: `defaults.bake`, `analysis.min_requests`.
    Section(&'static str),
    /// A key of the gate named `gate`, under `kind` (`error_rate`, `latency`; `None`: the
    /// gate's own keys, as `max` of a `query` gate).
    Gate {
        /// The gate's name.
        gate: String,
        /// The mapping under the gate that holds the key.
        kind: Option<&'static str>,
    },
}

/// One value to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// Where.
    pub place: Place,
    /// The key.
    pub key: &'static str,
    /// The new value, as YAML text (`2.1%`, `12m`, `800`).
    pub value: String,
}

impl std::fmt::Display for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Place::Section(s) => write!(f, "{s}.{}", self.key),
            Place::Gate {
                gate,
                kind: Some(k),
            } => write!(f, "gates[{gate}].{k}.{}", self.key),
            Place::Gate { gate, kind: None } => write!(f, "gates[{gate}].{}", self.key),
        }
    }
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn is_content(l: &str) -> bool {
    let t = l.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// The key of a line `key: ...` or `- key: ...`, and the column its value starts at.
fn key_of(l: &str) -> Option<(&str, usize)> {
    let t = l.trim_start();
    let (t, off) = match t.strip_prefix("- ") {
        Some(r) => (r.trim_start(), l.len() - r.trim_start().len()),
        None => (t, indent(l)),
    };
    let colon = t.find(':')?;
    let key = &t[..colon];
    if key.is_empty() || key.contains(' ') || key.contains('{') {
        return None;
    }
    Some((key, off + colon + 1))
}

/// The lines `(start, end)` (end exclusive) of the block under line `at`: the lines after
/// it indented deeper than `base`.
fn block(lines: &[String], at: usize, base: usize) -> (usize, usize) {
    let mut end = at + 1;
    while end < lines.len() && (!is_content(&lines[end]) || indent(&lines[end]) > base) {
        end += 1;
    }
    // Trailing blank or comment lines belong to what follows.
    while end > at + 1 && !is_content(&lines[end - 1]) {
        end -= 1;
    }
    (at + 1, end)
}

/// Sets `key: value` in the mapping that line `at` opens (block or `{ ... }` flow style).
fn set_in(lines: &mut Vec<String>, at: usize, key_col: usize, key: &str, value: &str) -> bool {
    let head = lines[at].clone();
    let Some((_, vcol)) = key_of(&head) else {
        return false;
    };
    let rest = head[vcol..].trim();
    if rest.starts_with('{') {
        // Flow mapping on one line: replace the key's value, or add it before the brace.
        let Some(close) = head.rfind('}') else {
            return false;
        };
        let inner = &head[head.find('{').unwrap_or(0) + 1..close];
        let mut parts: Vec<String> = inner
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if parts
            .iter()
            .any(|p| p.contains('{') || p.contains('"') || p.contains('\''))
        {
            return false;
        }
        match parts
            .iter_mut()
            .find(|p| p.split(':').next().map(str::trim) == Some(key))
        {
            Some(p) => *p = format!("{key}: {value}"),
            None => parts.push(format!("{key}: {value}")),
        }
        let open = head.find('{').unwrap_or(0);
        lines[at] = format!(
            "{}{{ {} }}{}",
            &head[..open],
            parts.join(", "),
            &head[close + 1..]
        );
        return true;
    }
    if !rest.is_empty() && !rest.starts_with('#') {
        return false;
    }
    let (start, end) = block(lines, at, key_col);
    let child = (start..end)
        .find(|&i| is_content(&lines[i]))
        .map(|i| indent(&lines[i]))
        .unwrap_or(key_col + 2);
    for i in start..end {
        if indent(&lines[i]) == child
            && let Some((k, vcol)) = key_of(&lines[i])
            && k == key
        {
            // The comment with the spaces before it, so columns of comments stay aligned.
            let rest = &lines[i][vcol..];
            let comment = rest
                .find(" #")
                .map(|c| {
                    let value_end = rest[..c].trim_end().len();
                    rest[value_end.max(1)..].to_string()
                })
                .unwrap_or_default();
            lines[i] = format!("{}{key}: {value}{comment}", &lines[i][..indent(&lines[i])]);
            return true;
        }
    }
    lines.insert(start, format!("{}{key}: {value}", " ".repeat(child)));
    true
}

/// Applies `edit` to the policy text; `None` if its place cannot be found or edited.
pub fn apply(text: &str, edit: &Edit) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let top = |lines: &[String], name: &str| {
        lines
            .iter()
            .position(|l| indent(l) == 0 && key_of(l).is_some_and(|(k, _)| k == name))
    };
    match &edit.place {
        Place::Section(s) => match top(&lines, s) {
            Some(at) => {
                if !set_in(&mut lines, at, 0, edit.key, &edit.value) {
                    return None;
                }
            }
            None => {
                lines.push(format!("{s}:"));
                lines.push(format!("  {}: {}", edit.key, edit.value));
            }
        },
        Place::Gate { gate, kind } => {
            let g = top(&lines, "gates")?;
            let (start, end) = block(&lines, g, 0);
            // The gate's item: the `name: <gate>` line, and the `- ` line that opens it.
            let named = (start..end).find(|&i| {
                key_of(&lines[i]).is_some_and(|(k, vcol)| {
                    k == "name" && {
                        let v = lines[i][vcol..].split(" #").next().unwrap_or("").trim();
                        v.trim_matches(|c| c == '"' || c == '\'') == gate
                    }
                })
            })?;
            let item = (start..=named)
                .rev()
                .find(|&i| lines[i].trim_start().starts_with("- "))?;
            let dash = indent(&lines[item]);
            let key_col = dash + 2;
            let mut item_end = item + 1;
            while item_end < end
                && (!is_content(&lines[item_end]) || indent(&lines[item_end]) > dash)
            {
                item_end += 1;
            }
            match kind {
                Some(k) => {
                    let at = (item..item_end)
                        .find(|&i| key_of(&lines[i]).is_some_and(|(kk, _)| kk == *k))?;
                    let col = if at == item {
                        key_col
                    } else {
                        indent(&lines[at])
                    };
                    if !set_in(&mut lines, at, col, edit.key, &edit.value) {
                        return None;
                    }
                }
                None => {
                    let existing = (item..item_end).find(|&i| {
                        key_of(&lines[i]).is_some_and(|(kk, _)| kk == edit.key)
                            && (i == item || indent(&lines[i]) == key_col)
                    });
                    match existing {
                        Some(i) if i != item => {
                            lines[i] =
                                format!("{}{}: {}", " ".repeat(key_col), edit.key, edit.value)
                        }
                        Some(_) => return None,
                        None => lines.insert(
                            item + 1,
                            format!("{}{}: {}", " ".repeat(key_col), edit.key, edit.value),
                        ),
                    }
                }
            }
        }
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "service: shop   # the shop\ndefaults:\n  bake: 10m      # soak\n  interval: 1m\n\ngates:\n  - name: errors\n    window: 1m\n    error_rate: { max: 1.5% }\n  - name: p99\n    latency:\n      quantile: 0.99\n      max: 400ms   # tight\n  - name: custom\n    query: x\n    max: 3\nanalysis:\n  failure_limit: 1\n";

    fn edit(place: Place, key: &'static str, value: &str) -> Edit {
        Edit {
            place,
            key,
            value: value.into(),
        }
    }

    #[test]
    fn values_are_replaced_where_they_are_and_comments_kept() {
        let gate = |g: &str, k| Place::Gate {
            gate: g.into(),
            kind: k,
        };
        let t = apply(
            POLICY,
            &edit(gate("errors", Some("error_rate")), "max", "3.2%"),
        )
        .unwrap();
        assert!(t.contains("    error_rate: { max: 3.2% }\n"), "{t}");
        let t = apply(&t, &edit(gate("p99", Some("latency")), "max", "620ms")).unwrap();
        assert!(t.contains("      max: 620ms   # tight\n"), "{t}");
        let t = apply(&t, &edit(gate("custom", None), "max", "4.5")).unwrap();
        assert!(t.contains("    query: x\n    max: 4.5\n"), "{t}");
        let t = apply(&t, &edit(Place::Section("defaults"), "bake", "12m")).unwrap();
        assert!(t.contains("  bake: 12m      # soak\n"), "{t}");
        let t = apply(&t, &edit(Place::Section("analysis"), "min_requests", "900")).unwrap();
        assert!(
            t.contains("analysis:\n  min_requests: 900\n  failure_limit: 1\n"),
            "{t}"
        );
        let t = apply(&t, &edit(Place::Section("settle"), "burn_in", "30s")).unwrap();
        assert!(t.ends_with("settle:\n  burn_in: 30s\n"), "{t}");
        assert!(t.starts_with("service: shop   # the shop\n"));
        assert_eq!(
            apply(POLICY, &edit(gate("nope", None), "max", "1")),
            None,
            "an unknown gate is not invented"
        );
    }
}
