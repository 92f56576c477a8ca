//! Everything `harvest` prints: for people, aligned blocks and tables; with
//! `--json`, one JSON object per result (per line for streams).
//!
//! Each message type has a pure function per form, so the wording and the
//! JSON shape are unit-tested without a server. JSON objects use the
//! protobuf field names, enum values by their short names (`IN_TRANSIT`),
//! money in fen (`*_fen`) and times in RFC 3339.

pub mod audit;
pub mod catalog;
pub mod delivery;
pub mod orders;
pub mod payments;

use std::io::Write;

use chrono::{DateTime, SecondsFormat};
use harvest_domain::Fen;
use harvest_proto::Timestamp;
use harvest_proto::common::v1::{Address, Date, GeoPoint};
use serde_json::{Value, json};

/// Where and how results go: to stdout, for people, as JSON, or as bare ids
/// for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
}

/// What a result is known by, for `--quiet`: ids, one per line (a watched
/// order's state).
pub trait Ids {
    fn ids(&self) -> Vec<String>;
}

impl<T: Ids> Ids for [T] {
    fn ids(&self) -> Vec<String> {
        self.iter().flat_map(Ids::ids).collect()
    }
}

impl<T: Ids, K> Ids for (T, K) {
    fn ids(&self) -> Vec<String> {
        self.0.ids()
    }
}

impl Printer {
    /// Prints one result in the chosen form.
    pub fn show<T: Ids + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
        json: impl FnOnce(&T) -> Value,
    ) -> std::io::Result<()> {
        let text = if self.quiet {
            value.ids().join("\n")
        } else if self.json {
            json(value).to_string()
        } else {
            human(value)
        };
        if self.quiet && text.is_empty() {
            return Ok(());
        }
        self.write(&text)
    }

    /// Prints `text` as it is, ending it with one newline.
    pub fn write(&self, text: &str) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", text.trim_end_matches('\n'))?;
        // Streams print as things happen: a reader behind a pipe should see
        // each line now, not when a buffer fills.
        stdout.flush()
    }
}

/// Money for people: `¥12.34`.
pub fn money(fen: i64) -> String {
    match Fen::parse(fen) {
        Ok(fen) => fen.to_string(),
        // Not an amount a service should send; show it rather than hide it.
        Err(_) => format!("{fen} fen"),
    }
}

/// Money for people, or `-` while it is not known yet (zero).
pub fn money_if_known(fen: i64) -> String {
    if fen == 0 { "-".to_owned() } else { money(fen) }
}

fn datetime(timestamp: &Timestamp) -> Option<DateTime<chrono::Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

/// A time for people: RFC 3339 in UTC, to the second, or `-`.
pub fn time(timestamp: Option<&Timestamp>) -> String {
    timestamp
        .and_then(datetime)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

/// A time in JSON: RFC 3339 in UTC with as many fraction digits as it has,
/// or null.
pub fn json_time(timestamp: Option<&Timestamp>) -> Value {
    timestamp
        .and_then(datetime)
        .map(|at| Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
        .unwrap_or(Value::Null)
}

/// A calendar date, `2025-06-01`, or `-`.
pub fn date(date: Option<&Date>) -> String {
    date.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_else(|| "-".to_owned())
}

pub fn json_date(date: Option<&Date>) -> Value {
    date.map(|d| Value::String(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)))
        .unwrap_or(Value::Null)
}

pub fn json_point(point: Option<&GeoPoint>) -> Value {
    point
        .map(|p| json!({ "latitude": p.latitude, "longitude": p.longitude }))
        .unwrap_or(Value::Null)
}

pub fn point(point: Option<&GeoPoint>) -> Option<String> {
    point.map(|p| format!("{:.4}, {:.4}", p.latitude, p.longitude))
}

pub fn json_address(address: Option<&Address>) -> Value {
    address
        .map(|a| {
            json!({
                "recipient": a.recipient,
                "phone": a.phone,
                "province": a.province,
                "county": a.county,
                "street": a.street,
                "location": json_point(a.location.as_ref()),
            })
        })
        .unwrap_or(Value::Null)
}

/// An address on two lines: who, then where.
pub fn address(address: Option<&Address>) -> Option<String> {
    let a = address?;
    let place = join_present(&[&a.street, &a.county, &a.province]);
    Some(format!("{}, {}\n{place}", a.recipient, a.phone))
}

/// The non-empty parts, comma-separated.
pub fn join_present(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// `Some(text)` unless it is empty: for optional fields of a [`Block`].
pub fn present(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Columns a terminal gives `text`, by Unicode's East Asian Width: two for
/// the wide characters of Chinese, Japanese and Korean (names of villages
/// and sellers) and for emoji, none for combining marks, one for the rest.
pub fn display_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

fn pad(text: &str, width: usize, align: Align) -> String {
    let fill = " ".repeat(width.saturating_sub(display_width(text)));
    match align {
        Align::Left => format!("{text}{fill}"),
        Align::Right => format!("{fill}{text}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Labelled fields, one per line, values aligned; a value of several lines
/// continues under itself.
#[derive(Debug, Default)]
pub struct Block {
    fields: Vec<(&'static str, String)>,
}

impl Block {
    pub fn new() -> Self {
        Block::default()
    }

    pub fn field(mut self, label: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((label, value.into()));
        self
    }

    /// A field shown only when there is something to show.
    pub fn maybe(self, label: &'static str, value: Option<String>) -> Self {
        match value {
            Some(value) => self.field(label, value),
            None => self,
        }
    }

    pub fn render(&self) -> String {
        let width = self
            .fields
            .iter()
            .map(|(label, _)| display_width(label))
            .max()
            .unwrap_or(0);
        let mut text = String::new();
        for (label, value) in &self.fields {
            let mut lines = value.lines();
            let first = lines.next().unwrap_or("");
            text.push_str(label);
            if !first.is_empty() {
                text.push_str(&" ".repeat(width - display_width(label) + 2));
                text.push_str(first);
            }
            text.push('\n');
            for more in lines {
                text.push_str(&" ".repeat(width + 2));
                text.push_str(more);
                text.push('\n');
            }
        }
        text
    }
}

/// Rows under a header, columns two spaces apart, numbers right-aligned.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, (header, _))| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(index))
                    .map(|cell| display_width(cell))
                    .chain([display_width(header)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let mut text = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let cells: Vec<String> = self
                .columns
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(index, ((_, align), width))| {
                    pad(row.get(index).map_or("", String::as_str), *width, *align)
                })
                .collect();
            text.push_str(cells.join("  ").trim_end());
            text.push('\n');
        }
        text
    }
}

/// A titled section: a blank line, the title in capitals, then its body.
pub fn section(title: &str, body: &str) -> String {
    format!("\n{title}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_money_in_yuan() {
        assert_eq!(money(123_456), "¥1234.56");
        assert_eq!(money(5), "¥0.05");
        assert_eq!(money(0), "¥0.00");
        assert_eq!(money(-1), "-1 fen");
        assert_eq!(money_if_known(0), "-");
        assert_eq!(money_if_known(6_800), "¥68.00");
    }

    #[test]
    fn formats_times_and_dates() {
        let at = Timestamp {
            seconds: 1_748_764_800,
            nanos: 250_000_000,
        };
        assert_eq!(time(Some(&at)), "2025-06-01T08:00:00Z");
        assert_eq!(json_time(Some(&at)), json!("2025-06-01T08:00:00.250Z"));
        assert_eq!(time(None), "-");
        assert_eq!(json_time(None), Value::Null);
        let day = Date {
            year: 2025,
            month: 7,
            day: 4,
        };
        assert_eq!(date(Some(&day)), "2025-07-04");
        assert_eq!(json_date(Some(&day)), json!("2025-07-04"));
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(display_width("Luochuan"), 8);
        assert_eq!(display_width("洛川苹果合作社"), 14);
        assert_eq!(display_width("¥68.00"), 6);
        assert_eq!(display_width("🍎 x2"), 5, "an emoji takes two columns");
        assert_eq!(
            display_width("cafe\u{301}"),
            4,
            "a combining accent takes none"
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&[("NAME", Align::Left), ("QTY", Align::Right)]);
        table.row(vec!["apples".to_owned(), "3".to_owned()]);
        table.row(vec!["苹果".to_owned(), "120".to_owned()]);
        assert_eq!(
            table.render(),
            "NAME    QTY\n\
             apples    3\n\
             苹果    120\n"
        );
    }

    #[test]
    fn blocks_align_values_and_skip_missing_ones() {
        let block = Block::new()
            .field("Order", "ord_1")
            .maybe("Cancelled", None)
            .field("Ship to", "Zhang Wei\nXihu, Zhejiang")
            .field("Empty", "");
        assert_eq!(
            block.render(),
            "Order    ord_1\n\
             Ship to  Zhang Wei\n         Xihu, Zhejiang\n\
             Empty\n"
        );
    }
}

mod ids {
    use harvest_proto::catalog::v1::{Product, Stock};
    use harvest_proto::common::v1::AuditRecord;
    use harvest_proto::delivery::v1::{Assignment, Courier, Shipment};
    use harvest_proto::orders::v1::{Order, OrderUpdate};
    use harvest_proto::payments::v1::{Payment, Payout};

    use super::Ids;

    impl Ids for Product {
        fn ids(&self) -> Vec<String> {
            vec![self.product_id.clone()]
        }
    }

    impl Ids for Stock {
        fn ids(&self) -> Vec<String> {
            vec![self.product_id.clone()]
        }
    }

    impl Ids for Order {
        fn ids(&self) -> Vec<String> {
            vec![self.order_id.clone()]
        }
    }

    /// A watched order is known by where it got to.
    impl Ids for OrderUpdate {
        fn ids(&self) -> Vec<String> {
            self.order
                .as_ref()
                .map(|order| {
                    crate::enums::short_name::<harvest_proto::common::v1::OrderState>(order.state)
                })
                .into_iter()
                .collect()
        }
    }

    impl Ids for Courier {
        fn ids(&self) -> Vec<String> {
            vec![self.courier_id.clone()]
        }
    }

    impl Ids for Shipment {
        fn ids(&self) -> Vec<String> {
            vec![self.shipment_id.clone()]
        }
    }

    impl Ids for Assignment {
        fn ids(&self) -> Vec<String> {
            self.shipment
                .as_ref()
                .map(|shipment| shipment.shipment_id.clone())
                .into_iter()
                .collect()
        }
    }

    impl Ids for Payment {
        fn ids(&self) -> Vec<String> {
            vec![self.order_id.clone()]
        }
    }

    impl Ids for Payout {
        fn ids(&self) -> Vec<String> {
            vec![self.order_id.clone()]
        }
    }

    impl Ids for AuditRecord {
        fn ids(&self) -> Vec<String> {
            vec![self.record_id.clone()]
        }
    }
}
