//! Reports a controller reads: the matrix provider x controller x attribute
//! of a configuration (who receives which attribute, for which purpose,
//! under which condition), its views by attribute and by controller, the
//! difference between two configurations, and the renderings `text`,
//! `json`, `csv` (RFC 4180) and `markdown`.
//!
//! Pure: compiled [`Config`]s in, text out. Every row is built from the
//! compiled contract and its agreements, the same objects the filter
//! enforces, so a report cannot say more or less than the filter does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::claims::{self, Attribute};
use crate::config::{Config, Provider};
use crate::contract::Contract;
use crate::names;
use crate::shadow;

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal (the default).
    Text,
    /// One JSON array of objects keyed by the column names.
    Json,
    /// RFC 4180: CRLF line ends, fields quoted where needed.
    Csv,
    /// A GitHub-flavoured markdown table, cells escaped.
    Markdown,
}

impl Format {
    /// The format named on the command line.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "markdown" => Some(Format::Markdown),
            _ => None,
        }
    }
}

/// Whose users a row speaks of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// One education provider (OPH OID), by its agreement or the
    /// contract's organisation list.
    Oid(String),
    /// Every organisation (`organisations: ["*"]`, no agreements).
    Every,
    /// Permitted organisations without an agreement of their own, under
    /// `default_agreement: contract`.
    Default,
}

impl Controller {
    /// The label in a report.
    pub fn label(&self) -> &str {
        match self {
            Controller::Oid(oid) => oid,
            Controller::Every => "*",
            Controller::Default => "default",
        }
    }
}

/// One line of the matrix: a provider receives an attribute of a
/// controller's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub provider: String,
    pub controller: Controller,
    pub attribute: &'static Attribute,
    pub header: String,
    /// The controller's purpose, else the contract's.
    pub purpose: Option<String>,
    /// Role codes the attribute is released to; empty: any role.
    pub only_roles: Vec<u8>,
    pub required: bool,
    /// Whether test learner numbers are accepted for this controller.
    pub test_learner_ids: bool,
}

impl Row {
    /// `any role` or `only roles 2,3`.
    pub fn condition(&self) -> String {
        if self.only_roles.is_empty() {
            "any role".to_owned()
        } else {
            let codes: Vec<String> = self.only_roles.iter().map(u8::to_string).collect();
            format!("only roles {}", codes.join(","))
        }
    }

    fn key(&self) -> (String, Controller, &'static str) {
        (
            self.provider.clone(),
            self.controller.clone(),
            self.attribute.name,
        )
    }
}

/// The matrix of one configuration, by provider, controller, catalogue order.
pub fn matrix(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    for p in &config.providers {
        rows.extend(provider_rows(p, &p.contract));
    }
    rows
}

/// The rows of one provider under a contract.
pub fn provider_rows(p: &Provider, c: &Contract) -> Vec<Row> {
    let mut rows = Vec::new();
    let rules: Vec<_> = c.rules().collect();
    let row = |controller: Controller,
               attr: &'static Attribute,
               purpose: Option<&str>,
               roles: Vec<u8>,
               test: bool| {
        let rule = rules.iter().find(|r| r.attribute.index == attr.index);
        Row {
            provider: p.id.clone(),
            controller,
            attribute: attr,
            header: rule.map(|r| r.header.to_owned()).unwrap_or_default(),
            purpose: purpose
                .or_else(|| rule.and_then(|r| r.purpose))
                .map(str::to_owned),
            only_roles: roles,
            required: rule.is_some_and(|r| r.required),
            test_learner_ids: test,
        }
    };
    let whole = |controller: &Controller, rows: &mut Vec<Row>| {
        for r in &rules {
            rows.push(row(
                controller.clone(),
                r.attribute,
                None,
                r.only_roles.clone(),
                c.allows_test_learner_id(),
            ));
        }
    };
    match c.agreements() {
        None => match c.organisations() {
            None => whole(&Controller::Every, &mut rows),
            Some(list) => {
                for oid in list {
                    whole(&Controller::Oid(oid.to_owned()), &mut rows);
                }
            }
        },
        Some(agreements) => {
            for (oid, a) in agreements.iter() {
                for (index, roles, purpose) in a.entries() {
                    if let Some(attr) = claims::CATALOGUE.get(index) {
                        rows.push(row(
                            Controller::Oid(oid.to_owned()),
                            attr,
                            purpose,
                            roles,
                            a.allows_test_learner_id(),
                        ));
                    }
                }
            }
            if agreements.default() == crate::agreement::DefaultAgreement::Contract {
                whole(&Controller::Default, &mut rows);
            }
        }
    }
    rows
}

/// Whether a row speaks of this controller's users: its own agreement or
/// listing, or a row for every (or every other permitted) organisation
/// that reaches it.
fn applies_to(row: &Row, config: &Config, oid: &str) -> bool {
    let Some(p) = config.providers.iter().find(|p| p.id == row.provider) else {
        return false;
    };
    let permitted = p
        .contract
        .organisations()
        .is_none_or(|list| list.contains(&oid));
    match &row.controller {
        Controller::Oid(o) => o == oid,
        Controller::Every => true,
        Controller::Default => {
            permitted
                && p.contract
                    .agreements()
                    .is_some_and(|a| a.iter().all(|(o, _)| o != oid))
        }
    }
}

/// Which view of the matrix.
#[derive(Debug, Clone, Copy, Default)]
pub struct View<'a> {
    /// Only rows of this attribute (alias, canonical or legacy name).
    pub attribute: Option<&'a str>,
    /// Only rows that reach this controller's users.
    pub controller: Option<&'a str>,
    /// Only this provider.
    pub provider: Option<&'a str>,
}

/// The matrix, narrowed to a view. An unknown attribute name is an error.
pub fn view(config: &Config, v: View<'_>) -> Result<Vec<Row>, String> {
    let attr = match v.attribute {
        Some(name) => Some(
            claims::lookup(name)
                .map(|(a, _)| a)
                .ok_or_else(|| format!("--attribute {name}: not an attribute of the catalogue"))?,
        ),
        None => None,
    };
    Ok(matrix(config)
        .into_iter()
        .filter(|r| attr.is_none_or(|a| a.index == r.attribute.index))
        .filter(|r| v.provider.is_none_or(|p| r.provider == p))
        .filter(|r| v.controller.is_none_or(|c| applies_to(r, config, c)))
        .collect())
}

/// The matrix's columns.
pub const MATRIX_COLUMNS: [&str; 11] = [
    "provider",
    "controller",
    "attribute",
    "claim",
    "name_fi",
    "name_en",
    "header",
    "purpose",
    "condition",
    "required",
    "test_learner_ids",
];

/// A row's cells, in [`MATRIX_COLUMNS`] order.
pub fn cells(r: &Row) -> Vec<String> {
    let plain = names::of(r.attribute);
    vec![
        r.provider.clone(),
        r.controller.label().to_owned(),
        r.attribute.alias.to_owned(),
        r.attribute.name.to_owned(),
        plain.map(|p| p.fi).unwrap_or("-").to_owned(),
        plain.map(|p| p.en).unwrap_or("-").to_owned(),
        r.header.clone(),
        r.purpose.clone().unwrap_or_else(|| "-".to_owned()),
        r.condition(),
        yes_no(r.required).to_owned(),
        if r.test_learner_ids {
            "accepted"
        } else {
            "refused"
        }
        .to_owned(),
    ]
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Renders a table in a format. `text` is the aligned table of
/// [`crate::explain::table`].
pub fn render(head: &[&str], rows: &[Vec<String>], format: Format) -> String {
    match format {
        Format::Text => {
            if rows.is_empty() {
                "  (none)\n".to_owned()
            } else {
                crate::explain::table(head, rows)
            }
        }
        Format::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(|row| {
                    let obj: Map<String, Value> = head
                        .iter()
                        .zip(row)
                        .map(|(h, c)| ((*h).to_owned(), Value::from(c.as_str())))
                        .collect();
                    Value::Object(obj)
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".to_owned());
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut out = String::new();
            let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
                let fields: Vec<String> = cells.map(csv_field).collect();
                out.push_str(&fields.join(","));
                out.push_str("\r\n");
            };
            line(&mut out, &mut head.iter().copied());
            for row in rows {
                line(&mut out, &mut row.iter().map(String::as_str));
            }
            out
        }
        Format::Markdown => {
            let mut out = String::new();
            let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
                let fields: Vec<String> = cells.map(markdown_cell).collect();
                let _ = writeln!(out, "| {} |", fields.join(" | "));
            };
            line(&mut out, &mut head.iter().copied());
            let rule: Vec<&str> = head.iter().map(|_| "---").collect();
            let _ = writeln!(out, "| {} |", rule.join(" | "));
            for row in rows {
                line(&mut out, &mut row.iter().map(String::as_str));
            }
            out
        }
    }
}

/// One RFC 4180 field: quoted when it holds a comma, a quote, CR or LF
/// (quotes doubled), else as is. A field starting with `=`, `+`, `-` or
/// `@` is left alone: it is data, and quoting does not change how a
/// spreadsheet reads it (the report holds names and OIDs, not formulas).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One markdown table cell: `|` and `\` escaped, markdown's inline marks
/// escaped so a value renders as written, line breaks as `<br>`, `<` and
/// `&` as entities (no HTML gets through).
pub fn markdown_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => {}
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

/// The columns of a configuration diff.
pub const DIFF_COLUMNS: [&str; 6] = [
    "provider",
    "controller",
    "attribute",
    "change",
    "old",
    "new",
];

/// What changes between two configurations, per provider x controller x
/// attribute: released in one and not the other, or released in both with
/// another purpose, condition, header, requirement or test-learner policy.
/// A provider only in one of them is one row.
pub fn diff(old: &Config, new: &Config) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for p in &old.providers {
        if !new.providers.iter().any(|n| n.id == p.id) {
            out.push(vec![
                p.id.clone(),
                "-".into(),
                "-".into(),
                "provider removed".into(),
                p.contract.version().to_owned(),
                "-".into(),
            ]);
        }
    }
    for p in &new.providers {
        if !old.providers.iter().any(|o| o.id == p.id) {
            out.push(vec![
                p.id.clone(),
                "-".into(),
                "-".into(),
                "provider added".into(),
                "-".into(),
                p.contract.version().to_owned(),
            ]);
        }
    }
    let index = |rows: Vec<Row>| -> BTreeMap<(String, Controller, &'static str), Row> {
        rows.into_iter().map(|r| (r.key(), r)).collect()
    };
    let (a, b) = (index(matrix(old)), index(matrix(new)));
    let both_have = |provider: &str| {
        old.providers.iter().any(|p| p.id == provider)
            && new.providers.iter().any(|p| p.id == provider)
    };
    let mut keys: Vec<&(String, Controller, &'static str)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if !both_have(&key.0) {
            continue;
        }
        let label = |r: &Row| {
            vec![
                r.provider.clone(),
                r.controller.label().to_owned(),
                r.attribute.alias.to_owned(),
            ]
        };
        match (a.get(key), b.get(key)) {
            (Some(o), None) => {
                let mut row = label(o);
                row.extend(["no longer released".into(), summary(o), "-".into()]);
                out.push(row);
            }
            (None, Some(n)) => {
                let mut row = label(n);
                row.extend(["newly released".into(), "-".into(), summary(n)]);
                out.push(row);
            }
            (Some(o), Some(n)) => {
                let pairs = [
                    ("purpose", o.purpose.clone(), n.purpose.clone()),
                    ("condition", Some(o.condition()), Some(n.condition())),
                    ("header", Some(o.header.clone()), Some(n.header.clone())),
                    (
                        "required",
                        Some(yes_no(o.required).to_owned()),
                        Some(yes_no(n.required).to_owned()),
                    ),
                    (
                        "test learner ids",
                        Some(yes_no(o.test_learner_ids).to_owned()),
                        Some(yes_no(n.test_learner_ids).to_owned()),
                    ),
                ];
                for (what, x, y) in pairs {
                    if x != y {
                        let mut row = label(o);
                        row.extend([
                            format!("{what} changed"),
                            x.unwrap_or_else(|| "-".into()),
                            y.unwrap_or_else(|| "-".into()),
                        ]);
                        out.push(row);
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// A released row in one cell: purpose and condition.
fn summary(r: &Row) -> String {
    match &r.purpose {
        Some(p) => format!("{} ({p})", r.condition()),
        None => r.condition(),
    }
}

/// The columns of a per-user diff.
pub const USER_DIFF_COLUMNS: [&str; 7] = [
    "user",
    "provider",
    "old decision",
    "new decision",
    "added",
    "removed",
    "changed",
];

/// Per user (a claims set, named by `user`) and provider present in both:
/// what the new configuration would release or refuse differently. Names
/// and reasons only, never a value. Providers whose audiences do not take
/// the user's `aud` are left out (both would refuse it before the
/// contract); rows where nothing changes are left out.
pub fn user_diff(
    old: &Config,
    new: &Config,
    user: &str,
    claims: &Map<String, Value>,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for n in &new.providers {
        let Some(o) = old.providers.iter().find(|o| o.id == n.id) else {
            continue;
        };
        if crate::verify::audience_in(claims, &n.audiences).is_err() {
            continue;
        }
        let before = o.contract.apply(claims);
        let d = shadow::compare(&before, &n.contract.apply(claims), n.contract.version());
        if d.is_same() {
            continue;
        }
        let decision = |r: Result<(), &'static str>| match r {
            Ok(()) => "allow".to_owned(),
            Err(reason) => format!("deny ({reason})"),
        };
        let list = |v: &[&'static str]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.iter()
                    .map(|a| claims::lookup(a).map_or(*a, |(x, _)| x.alias))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        out.push(vec![
            user.to_owned(),
            n.id.clone(),
            decision(before.as_ref().map(|_| ()).map_err(|e| e.reason)),
            decision(if d.allowed { Ok(()) } else { Err(d.reason) }),
            list(&d.added),
            list(&d.removed),
            list(&d.changed),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_rfc_4180_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(
            render(&["a", "b"], &[vec!["x,y".into(), "z".into()]], Format::Csv),
            "a,b\r\n\"x,y\",z\r\n"
        );
    }

    #[test]
    fn markdown_cells_escape_pipes_marks_and_html() {
        assert_eq!(markdown_cell("a|b"), "a\\|b");
        assert_eq!(markdown_cell("<script>"), "&lt;script&gt;");
        assert_eq!(markdown_cell("x_y*z"), "x\\_y\\*z");
        assert_eq!(markdown_cell("1\n2"), "1<br>2");
        let t = render(&["h"], &[vec!["a|b".into()]], Format::Markdown);
        assert_eq!(t, "| h |\n| --- |\n| a\\|b |\n");
    }

    #[test]
    fn json_rows_are_objects_keyed_by_column() {
        let t = render(&["a", "b"], &[vec!["1".into(), "ä".into()]], Format::Json);
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        assert_eq!(v, serde_json::json!([{"a": "1", "b": "ä"}]));
    }

    #[test]
    fn every_format_is_named() {
        for (n, f) in [
            ("text", Format::Text),
            ("json", Format::Json),
            ("csv", Format::Csv),
            ("markdown", Format::Markdown),
        ] {
            assert_eq!(Format::from_name(n), Some(f));
        }
        assert_eq!(Format::from_name("xml"), None);
    }
}
