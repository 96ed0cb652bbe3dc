//! The YAML machinery of experiment files: problems collected with their YAML paths, typed
//! deserialisation that reports the exact path, reading a file (capped), `use: <file>`
//! blocks, and the expansion of lists (and samplers) into grids of alternatives.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigProblem, Error, Result};

/// Collects problems with their YAML paths.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigProblem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Join a YAML path and a child path reported by serde (`.` means "here").
pub(super) fn join_path(base: &str, child: &str) -> String {
    match (base.is_empty(), child.is_empty() || child == ".") {
        (_, true) => base.to_string(),
        (true, false) => child.to_string(),
        (false, false) if child.starts_with('[') => format!("{base}{child}"),
        (false, false) => format!("{base}.{child}"),
    }
}

/// Deserialise `value` into `T`, reporting the exact path of the first problem in it.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
    base: &str,
    problems: &mut Problems,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = join_path(base, &e.path().to_string());
            problems.add(path, e.into_inner().to_string());
            None
        }
    }
}

/// Largest configuration file read (a YAML file is a few KB; anything near this is a mistake).
pub(super) const MAX_YAML_BYTES: u64 = 16 << 20;

/// Deepest nesting of flow collections (`[`, `{`) accepted. The YAML parser's time grows with
/// the square of this depth (200 KB of `[` took 41 s to refuse), so it is checked first.
pub(super) const MAX_FLOW_DEPTH: usize = 64;

/// Where (line, column, from 1) flow collections first nest deeper than `MAX_FLOW_DEPTH`.
/// A bracket opens a collection only where a value starts (after a line start, `:`, `-`, `,`,
/// `?` or another opening bracket), outside quotes and comments, so `a[1` in a plain scalar
/// does not count; block nesting is bounded by the parser itself.
fn too_deep_flow(text: &str) -> Option<(usize, usize)> {
    let opens_value = |p: Option<char>| p.is_none_or(|p| ":-,?[{".contains(p));
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        // `previous`: the last significant character; `spaced`: whether whitespace (or the
        // line's start) came just before; `in_token`: inside an anchor or tag (`&a`, `!!seq`),
        // which leaves the position a value starts at as it was.
        let (mut quote, mut previous, mut spaced, mut in_token) = (None::<char>, None, true, false);
        let mut chars = line.chars().enumerate();
        while let Some((col, c)) = chars.next() {
            if in_token {
                in_token = !c.is_whitespace();
                spaced = c.is_whitespace();
                continue;
            }
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                    continue;
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if spaced => break,
                    '&' | '!' if spaced && opens_value(previous) => {
                        in_token = true;
                        continue;
                    }
                    '"' | '\'' if opens_value(previous) => quote = Some(c),
                    '[' | '{' if opens_value(previous) => {
                        depth += 1;
                        if depth > MAX_FLOW_DEPTH {
                            return Some((i + 1, col + 1));
                        }
                    }
                    '[' | '{' => {
                        // Part of a plain scalar: neither it nor what follows opens anything.
                        previous = Some('a');
                        spaced = false;
                        continue;
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            spaced = c.is_whitespace();
            if !spaced {
                previous = Some(c);
            }
        }
    }
    None
}

pub(super) fn read_yaml(file: &Path) -> Result<Value> {
    let text =
        crate::data::read_capped_string(file, crate::data::InputLimit::Fixed(MAX_YAML_BYTES))
            .map_err(|e| Error::config(file, "", e))?;
    if let Some((line, column)) = too_deep_flow(&text) {
        return Err(Error::config(
            file,
            format!("line {line}"),
            format!(
                "column {column}: brackets nested more than {MAX_FLOW_DEPTH} deep; a configuration needs a few levels"
            ),
        ));
    }
    serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}", l.line()))
            .unwrap_or_default();
        Error::config(file, at, format!("not valid YAML: {e}"))
    })
}

/// Replace `use: <file>` in a list element by the mapping in that file, with the element's
/// other keys overriding the file's.
pub(super) fn resolve_use(element: Value, path: &str, problems: &mut Problems) -> Option<Mapping> {
    let Value::Mapping(mut map) = element else {
        problems.add(path, "expected a mapping");
        return None;
    };
    let Some(use_value) = map.remove("use") else {
        return Some(map);
    };
    let Some(file) = use_value.as_str() else {
        problems.add(join_path(path, "use"), "expected a file path");
        return None;
    };
    let base = match read_yaml(Path::new(file)) {
        Ok(Value::Mapping(m)) => m,
        Ok(_) => {
            problems.add(
                join_path(path, "use"),
                format!("{file} does not hold a mapping"),
            );
            return None;
        }
        Err(e) => {
            problems.add(join_path(path, "use"), e.to_string());
            return None;
        }
    };
    let mut merged = base;
    if merged.contains_key("use") {
        problems.add(
            join_path(path, "use"),
            format!("{file} uses another file; only one level of `use` is allowed"),
        );
        return None;
    }
    for (k, v) in map {
        merged.insert(k, v);
    }
    Some(merged)
}

/// Most jobs one experiment may expand to: a typo in a grid (two long lists) must fail with
/// the count before anything is allocated for it.
pub const MAX_JOBS: usize = 100_000;

/// The alternatives of each key of a mapping whose values may be lists of alternatives. An
/// empty list of alternatives is a problem (it would silently remove the model).
pub(super) fn grid_alternatives(
    map: &Mapping,
    list_fields: &[&str],
    path: &str,
    problems: &mut Problems,
) -> Option<Vec<(Value, Vec<Value>)>> {
    let mut keys = Vec::new();
    for (k, v) in map {
        let native_list = k.as_str().is_some_and(|k| list_fields.contains(&k));
        let alternatives: Vec<Value> = match v {
            // A list-valued field takes a list; only a list of lists gives alternatives.
            Value::Sequence(items)
                if native_list && (items.is_empty() || !items.iter().all(|i| i.is_sequence())) =>
            {
                vec![v.clone()]
            }
            Value::Sequence(items) => items.clone(),
            Value::Mapping(m) if super::search::is_sampler(m) => match super::search::sample(m) {
                Ok(values) => values,
                Err(e) => {
                    problems.add(join_path(path, k.as_str().unwrap_or("?")), e);
                    return None;
                }
            },
            other => vec![other.clone()],
        };
        if alternatives.is_empty() {
            let key = k.as_str().unwrap_or("?");
            problems.add(
                join_path(path, key),
                "is an empty list: give one value, or a list of values to try",
            );
            return None;
        }
        keys.push((k.clone(), alternatives));
    }
    Some(keys)
}

/// How many combinations `grid_alternatives` expands to (saturating).
pub(super) fn grid_size(keys: &[(Value, Vec<Value>)]) -> usize {
    keys.iter()
        .fold(1usize, |n, (_, alts)| n.saturating_mul(alts.len()))
}

/// Every combination of the alternatives, in key order (the last key varies fastest).
pub(super) fn expand_grid(keys: &[(Value, Vec<Value>)]) -> Vec<Mapping> {
    let mut out = vec![Mapping::new()];
    for (k, alternatives) in keys {
        out = out
            .into_iter()
            .flat_map(|m| {
                alternatives.iter().map(move |a| {
                    let mut m = m.clone();
                    m.insert(k.clone(), a.clone());
                    m
                })
            })
            .collect();
    }
    out
}

/// A YAML value on one line, for messages.
pub(super) fn yaml_inline(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|t| t.trim().replace('\n', " "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep flow nesting is refused before the parser sees it, at its line and column;
    /// brackets inside quotes, comments and plain scalars, and ordinary nesting, are not.
    #[test]
    fn deep_flow_nesting_is_found_and_ordinary_text_is_not() {
        let deep = format!("name: x\nmodels: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(too_deep_flow(&deep), Some((2, 73)));
        let fine = format!("name: x\nmodels: {}{}\n", "[".repeat(64), "]".repeat(64));
        assert_eq!(too_deep_flow(&fine), None);
        let noise = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: x{}\nd: [{{k: [1, 2]}}, [3]]\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[".repeat(100)
        );
        assert_eq!(too_deep_flow(&noise), None);
        // Bracket on bracket across lines counts.
        let lines = "[\n".repeat(65);
        assert_eq!(too_deep_flow(&lines), Some((65, 1)));
        // An anchor or a tag before the brackets does not hide them; a comment after a value
        // does.
        for prefix in ["&a ", "!!seq "] {
            let hidden = format!("models: {prefix}{}{}\n", "[".repeat(65), "]".repeat(65));
            assert!(too_deep_flow(&hidden).is_some(), "{prefix}");
        }
        let comment = format!("x: 1 # s: {}\n", "[".repeat(100));
        assert_eq!(too_deep_flow(&comment), None);
    }
}
