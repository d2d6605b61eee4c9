//! The attribute tables in the README and `docs/contracts.md` say what the
//! catalogue in `src/claims.rs` says: every attribute, its alias, its 2019
//! names, its default header, whether it is multi-valued and whether it needs
//! a purpose. A row missing from or extra in a document fails.

// An integration test is a test crate: a failed expectation should panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use mpass_guard::claims::CATALOGUE;

/// One row as the documents show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    name: String,
    alias: String,
    legacy: Vec<String>,
    header: String,
    multi: bool,
    needs_purpose: bool,
}

const HEADER: &str =
    "| canonical claim name | alias | 2019 name | default header | multi | sensitive |";

fn read(doc: &str) -> String {
    let path = format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_owned()
}

/// Every attribute table of a document, each as its rows.
fn tables(text: &str) -> Vec<Vec<Row>> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != HEADER {
            continue;
        }
        let mut rows = Vec::new();
        for row in lines.by_ref().skip(1) {
            let Some(inner) = row
                .trim()
                .strip_prefix('|')
                .and_then(|r| r.strip_suffix('|'))
            else {
                break;
            };
            let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 6, "a row of six cells: {row}");
            rows.push(Row {
                name: unquote(cells[0]),
                alias: unquote(cells[1]),
                legacy: cells[2]
                    .split(',')
                    .map(unquote)
                    .filter(|l| !l.is_empty())
                    .collect(),
                header: unquote(cells[3]),
                multi: match cells[4] {
                    "yes" => true,
                    c if c.starts_with("no") => false,
                    other => panic!("multi is yes or no: {other:?} in {row}"),
                },
                needs_purpose: match cells[5] {
                    "" => false,
                    c if c.starts_with("yes") => true,
                    other => panic!("sensitive is empty or yes: {other:?} in {row}"),
                },
            });
        }
        out.push(rows);
    }
    out
}

fn catalogue() -> BTreeSet<Row> {
    CATALOGUE
        .iter()
        .map(|a| Row {
            name: a.name.to_owned(),
            alias: a.alias.to_owned(),
            legacy: a.legacy.iter().map(|l| (*l).to_owned()).collect(),
            header: format!("x-mpass-{}", a.header_suffix),
            multi: a.multi,
            needs_purpose: a.sensitive,
        })
        .collect()
}

fn assert_agrees(doc: &str, rows: &[Row]) {
    let shown: BTreeSet<Row> = rows.iter().cloned().collect();
    assert_eq!(shown.len(), rows.len(), "{doc}: a row stands twice");
    let expected = catalogue();
    let missing: Vec<_> = expected.difference(&shown).collect();
    let extra: Vec<_> = shown.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{doc} disagrees with the catalogue:\nmissing or different: {missing:#?}\nextra or different: {extra:#?}"
    );
}

#[test]
fn the_contracts_document_shows_the_catalogue_exactly() {
    let found = tables(&read("docs/contracts.md"));
    assert_eq!(found.len(), 1, "docs/contracts.md has one attribute table");
    assert_agrees("docs/contracts.md", &found[0]);
}

#[test]
fn every_attribute_table_in_the_readme_shows_the_catalogue_exactly() {
    // The README points to docs/contracts.md for the catalogue; a table it
    // grows must agree as well.
    for rows in tables(&read("README.md")) {
        assert_agrees("README.md", &rows);
    }
}

#[test]
fn the_table_reader_sees_a_missing_an_extra_and_a_changed_row() {
    let doc = read("docs/contracts.md");
    let rows = tables(&doc).remove(0);
    let expected = catalogue();
    assert_eq!(rows.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let email = "| `email` | `email` | | `x-mpass-email` | no | yes: the channel for direct marketing to minors |";
    assert!(doc.contains(email), "the email row as the test expects it");
    let without = doc.replace(&format!("{email}\n"), "");
    let not_sensitive = doc.replace(email, "| `email` | `email` | | `x-mpass-email` | no | |");
    let extra = doc.replace(
        email,
        &format!("{email}\n| `nick` | `nick` | | `x-mpass-nick` | no | |"),
    );
    for changed in [without, not_sensitive, extra] {
        let rows = tables(&changed).remove(0);
        assert_ne!(rows.into_iter().collect::<BTreeSet<_>>(), expected);
    }
}
