//! YAML text → a [`Node`] tree in which every node knows its line. The values come from
//! serde_yaml_ng (the YAML rules used everywhere else in the project); the lines come from
//! libyaml-safer's events over the same text (a safe port of the same libyaml parser), matched
//! node by node. Where the two trees ever disagree the lines are left out, never guessed.

use super::error::ConfigError;
use serde::Deserialize;
use serde::de::{self, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;

/// A YAML value with its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub line: Option<usize>,
}

/// A YAML value. Integers keep their exact digits: an unquoted 20-digit ICCID is larger than
/// any 64-bit integer, and a float would lose digits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What kind of value this is, for an error message (never the value itself).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "true/false",
            Value::Int(_) => "a whole number",
            Value::Float(_) => "a fractional or very large number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document. A syntax error is one problem with its line; the message never
/// quotes the document (a mangled file may put a secret anywhere).
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    let value: Value = serde_yaml_ng::from_str::<V>(text)
        .map(|v| v.0)
        .map_err(|e| {
            let line = e.location().map(|l| l.line());
            let msg = e.to_string();
            let msg = match msg.find(" at line ") {
                Some(i) => &msg[..i],
                None => &msg,
            };
            ConfigError::new("", tibiot_web::redact::hide_quoted_values(msg)).at(line)
        })?;
    let mut node = Node { value, line: None };
    match positions(text) {
        Some(pos) => attach(&mut node, &pos),
        // the document starts at its first line of content
        None => {
            node.line = text
                .lines()
                .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(|i| i + 1)
        }
    }
    Ok(node)
}

/// serde's view of a [`Value`].
struct V(Value);

fn node(value: Value) -> Node {
    Node { value, line: None }
}

impl<'de> Deserialize<'de> for V {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = V;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<V, E> {
        Ok(V(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<V, E> {
        Ok(V(Value::Int(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<V, E> {
        Ok(V(Value::Int(v.to_string())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<V, E> {
        Ok(V(Value::Int(v.to_string())))
    }
    fn visit_u128<E>(self, v: u128) -> Result<V, E> {
        Ok(V(Value::Int(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<V, E> {
        Ok(V(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<V, E> {
        Ok(V(Value::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<V, E> {
        Ok(V(Value::Str(v)))
    }
    fn visit_unit<E>(self) -> Result<V, E> {
        Ok(V(Value::Null))
    }
    fn visit_none<E>(self) -> Result<V, E> {
        Ok(V(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V, A::Error> {
        let mut out = Vec::new();
        while let Some(V(v)) = seq.next_element()? {
            out.push(node(v));
        }
        Ok(V(Value::Seq(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V, A::Error> {
        let mut out = Vec::new();
        while let Some((V(k), V(v))) = map.next_entry()? {
            out.push((node(k), node(v)));
        }
        Ok(V(Value::Map(out)))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<V, A::Error> {
        Err(de::Error::custom(
            "YAML tags such as `!name` are not used in this file",
        ))
    }
}

/// The document's shape as libyaml reports it, with 0-based lines.
#[derive(Debug, Clone)]
struct Pos {
    line: usize,
    /// A scalar's text (compared with map keys).
    text: Option<String>,
    kids: Kids,
}

#[derive(Debug, Clone)]
enum Kids {
    Leaf,
    Seq(Vec<Pos>),
    Map(Vec<(Pos, Pos)>),
}

/// The first document's positions; `None` when libyaml cannot read the text.
fn positions(text: &str) -> Option<Pos> {
    use libyaml_safer::{EventData, Parser};
    // The encoding is given, and a byte-order mark skipped here: libyaml-safer's detection
    // mistakes some leading characters (U+FFFC) for a broken mark.
    let mut input = text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes();
    let mut parser = Parser::new();
    parser.set_encoding(libyaml_safer::Encoding::Utf8);
    parser.set_input_string(&mut input);
    let mut events = parser.map(|e| e.ok());
    let mut anchors = HashMap::new();
    loop {
        let e = events.next()??;
        match e.data {
            EventData::StreamStart { .. } => {}
            EventData::DocumentStart { .. } => break,
            _ => return None,
        }
    }
    let first = events.next()??;
    read(first, &mut events, &mut anchors, 0)
}

fn read(
    e: libyaml_safer::Event,
    events: &mut impl Iterator<Item = Option<libyaml_safer::Event>>,
    anchors: &mut HashMap<String, Pos>,
    depth: usize,
) -> Option<Pos> {
    use libyaml_safer::EventData;
    // serde_yaml_ng refuses deeper documents; so do we, without recursing further.
    if depth > 200 {
        return None;
    }
    let line = e.start_mark.line as usize;
    let (anchor, pos) = match e.data {
        EventData::Alias { anchor } => {
            let mut p = anchors.get(&anchor)?.clone();
            p.line = line;
            return Some(p);
        }
        EventData::Scalar { anchor, value, .. } => (
            anchor,
            Pos {
                line,
                text: Some(value),
                kids: Kids::Leaf,
            },
        ),
        EventData::SequenceStart { anchor, .. } => {
            let mut items = Vec::new();
            loop {
                let e = events.next()??;
                if matches!(e.data, EventData::SequenceEnd) {
                    break;
                }
                items.push(read(e, events, anchors, depth + 1)?);
            }
            (
                anchor,
                Pos {
                    line,
                    text: None,
                    kids: Kids::Seq(items),
                },
            )
        }
        EventData::MappingStart { anchor, .. } => {
            let mut entries = Vec::new();
            loop {
                let e = events.next()??;
                if matches!(e.data, EventData::MappingEnd) {
                    break;
                }
                let k = read(e, events, anchors, depth + 1)?;
                let e = events.next()??;
                let v = read(e, events, anchors, depth + 1)?;
                entries.push((k, v));
            }
            (
                anchor,
                Pos {
                    line,
                    text: None,
                    kids: Kids::Map(entries),
                },
            )
        }
        _ => return None,
    };
    if let Some(a) = anchor {
        anchors.insert(a, pos.clone());
    }
    Some(pos)
}

/// Copies the lines of `pos` onto `node` where the two trees have the same shape.
fn attach(node: &mut Node, pos: &Pos) {
    node.line = Some(pos.line + 1);
    match (&mut node.value, &pos.kids) {
        (Value::Seq(items), Kids::Seq(ps)) if items.len() == ps.len() => {
            for (n, p) in items.iter_mut().zip(ps) {
                attach(n, p);
            }
        }
        (Value::Map(entries), Kids::Map(ps)) if entries.len() == ps.len() => {
            for ((k, v), (pk, pv)) in entries.iter_mut().zip(ps) {
                if let Value::Str(s) = &k.value
                    && pk.text.as_deref() != Some(s.as_str())
                {
                    continue;
                }
                attach(k, pk);
                attach(v, pv);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(n: &Node, path: &[&str]) -> Option<usize> {
        let mut n = n;
        for p in path {
            n = match &n.value {
                Value::Map(es) => {
                    &es.iter()
                        .find(|(k, _)| k.value == Value::Str((*p).into()))?
                        .1
                }
                Value::Seq(items) => &items[p.parse::<usize>().ok()?],
                _ => return None,
            };
        }
        n.line
    }

    #[test]
    fn every_node_has_its_line() {
        let t = "# c\naccounts:\n  - name: a\n    cards:\n      - 89860000000000000001\n      - \"x\"\n  - {name: b, pools: [P1,\n      P2]}\ncollect:\n  timeout: 10\n";
        let n = parse(t).unwrap();
        assert_eq!(line_of(&n, &["accounts", "0", "name"]), Some(3));
        assert_eq!(line_of(&n, &["accounts", "0", "cards", "1"]), Some(6));
        assert_eq!(line_of(&n, &["accounts", "1", "pools", "1"]), Some(8));
        assert_eq!(line_of(&n, &["collect", "timeout"]), Some(10));
        let Value::Map(es) = &n.value else { panic!() };
        let Value::Seq(accs) = &es[0].1.value else {
            panic!()
        };
        let Value::Map(acc) = &accs[0].value else {
            panic!()
        };
        let Value::Seq(cards) = &acc[1].1.value else {
            panic!()
        };
        assert_eq!(cards[0].value, Value::Int("89860000000000000001".into()));
    }

    #[test]
    fn aliases_and_syntax_errors() {
        let n = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(line_of(&n, &["c"]), Some(2));
        let e = parse("a: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        let n = parse("\u{feff}a: 1\n").unwrap();
        assert_eq!(line_of(&n, &["a"]), Some(1));
        let n = parse("\u{fffc}\n").unwrap();
        assert_eq!(n.line, Some(1));
        let e = parse("a: !secret-tag 1\n").unwrap_err();
        assert!(e.message.contains("tags"), "{e}");
    }
}
