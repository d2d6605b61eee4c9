//! The operator's file as a tree: JSON or YAML (one or several documents),
//! read into an ordered [`Node`] that refuses duplicate member names, with
//! syntax errors carrying line and column.
//!
//! Order matters: provider order in the plugin configuration is kept when a
//! YAML `pluginConfig` is turned back into the JSON the filter reads.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

/// A JSON-shaped value whose objects keep their member order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The string member `key` of an object.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }

    /// The node as compact JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising an in-memory tree with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::String(v) => s.serialize_str(v),
            Node::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Builds a [`Node`]; a member name seen twice in one object is an error
/// (JSON parsers disagree on which one wins, YAML forbids it).
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("infinite or NaN numbers have no JSON form"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate member name {key:?}")));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

/// A syntax error with its position (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "line {} column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

/// Both libraries put " at line L column C" into messages: the position is
/// kept in its own fields instead.
fn without_position(msg: &str) -> String {
    let Some(i) = msg.find(" at line ") else {
        return msg.to_owned();
    };
    let (head, tail) = msg.split_at(i);
    // Skip " at line L column C" and keep what follows (", while parsing ...").
    let rest = tail
        .get(" at line ".len()..)
        .unwrap_or_default()
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix(" column ")
        .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or_default();
    format!("{head}{rest}")
}

/// Parses one JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Node, SyntaxError> {
    serde_json::from_slice(bytes).map_err(|e| SyntaxError {
        line: e.line(),
        column: e.column(),
        message: without_position(&e.to_string()),
    })
}

/// Parses every document of a YAML stream.
pub fn parse_yaml(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let node = Node::deserialize(doc).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            SyntaxError {
                line,
                column,
                message: without_position(&e.to_string()),
            }
        })?;
        docs.push(node);
    }
    Ok(docs)
}

/// Whether the file is read as JSON: a `.json` name, or (any other name)
/// text that starts with `{`. Everything else is YAML.
pub fn looks_like_json(name: &str, text: &[u8]) -> bool {
    if name.ends_with(".json") {
        return true;
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return false;
    }
    text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn yaml_members_keep_their_order_in_the_json_form() {
        let docs = parse_yaml("b: 1\na: [x, 2.5]\n").unwrap();
        assert_eq!(docs[0].to_json(), br#"{"b":1,"a":["x",2.5]}"#.to_vec());
    }

    #[test]
    fn a_duplicate_member_is_refused_in_json_and_yaml_with_its_position() {
        let e = parse_json(b"{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert!(e.message.contains("duplicate member name \"a\""), "{e}");
        assert_eq!(e.line, 2);
        let e = parse_yaml("x: 1\ny:\n  a: 1\n  a: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate member name \"a\""), "{e}");
        assert!(e.line >= 3, "{e}");
    }

    #[test]
    fn several_yaml_documents_are_all_read() {
        assert_eq!(parse_yaml("a: 1\n---\nb: 2\n").unwrap().len(), 2);
    }
}
