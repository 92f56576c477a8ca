//! `harvest dlq …`: a consumer's dead letters, read from and replayed through
//! Kafka directly (no service API involved).

use std::path::PathBuf;

use harvest_bus::dead_letters::{self, DeadLetter, Letters};
use harvest_bus::{BusConfig, Topology};
use harvest_domain::{Region, Regions, Secret};
use serde_json::{Value, json};

use crate::connect::Context;
use crate::error::CliError;
use crate::output::{Align, Block, Ids, Table, section};

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List a consumer's dead letters, oldest first: when, why, which event,
    /// and whether a redrive already dealt with it.
    List(Where),
    /// Show one dead letter in full: every header and the decoded event.
    Show(ShowArgs),
    /// Replay dead letters to the streams they were read from.
    ///
    /// Every consumer of that stream sees a replayed event again; handlers
    /// are idempotent, so one that already acted on it changes nothing. With
    /// --all, every letter not yet dealt with is replayed (those that could
    /// only be dead-lettered again, undecodable or off their owner's stream,
    /// are skipped and said so) and the redrive mark moves past them.
    Redrive(RedriveArgs),
}

/// Whose dead letters, and where the broker is.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// The service whose consumer dead-lettered them.
    #[arg(long, value_parser = harvest_bus::topology::CONSUMING_SERVICES)]
    service: String,
    /// The region that consumer serves.
    #[arg(long, value_parser = parse_region)]
    region: Region,
    /// Kafka's bootstrap servers (`make run` prints them).
    #[arg(
        long,
        value_name = "HOST:PORT,…",
        env = "HARVEST_BUS__BROKERS",
        default_value = "127.0.0.1:9092",
        help_heading = "Event bus"
    )]
    brokers: String,
    /// The deployment's topic prefix, if it has one.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "HARVEST_BUS__TOPIC_PREFIX",
        default_value = "",
        help_heading = "Event bus"
    )]
    topic_prefix: String,
    /// How to reach the brokers: plaintext, ssl (TLS), sasl_ssl (TLS and a
    /// SCRAM user) or sasl_plaintext.
    #[arg(
        long,
        value_name = "PROTOCOL",
        env = "HARVEST_BUS__SECURITY_PROTOCOL",
        default_value = "plaintext",
        value_parser = ["plaintext", "ssl", "sasl_ssl", "sasl_plaintext"],
        help_heading = "Event bus"
    )]
    kafka_security_protocol: String,
    /// With sasl_*: SCRAM-SHA-512 or SCRAM-SHA-256.
    #[arg(
        long,
        value_name = "MECHANISM",
        env = "HARVEST_BUS__SASL_MECHANISM",
        default_value = "SCRAM-SHA-512",
        help_heading = "Event bus"
    )]
    kafka_sasl_mechanism: String,
    /// With sasl_*: the Kafka user (in a deployment, `harvest-operator`); its
    /// password only from HARVEST_BUS__SASL_PASSWORD, never a flag.
    #[arg(
        long,
        value_name = "USER",
        env = "HARVEST_BUS__SASL_USERNAME",
        default_value = "",
        help_heading = "Event bus"
    )]
    kafka_user: String,
    /// With ssl and sasl_ssl: CA certificates (PEM) to trust instead of the
    /// system's.
    #[arg(
        long,
        value_name = "FILE",
        env = "HARVEST_BUS__SSL_CA_FILE",
        help_heading = "Event bus"
    )]
    kafka_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with --kafka-key-file, for brokers that
    /// ask for one.
    #[arg(
        long,
        value_name = "FILE",
        env = "HARVEST_BUS__SSL_CERT_FILE",
        help_heading = "Event bus"
    )]
    kafka_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --kafka-cert-file.
    #[arg(
        long,
        value_name = "FILE",
        env = "HARVEST_BUS__SSL_KEY_FILE",
        help_heading = "Event bus"
    )]
    kafka_key_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The letter's offset in its dead-letter topic (as `dlq list` prints).
    offset: i64,
    #[command(flatten)]
    at: Where,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["offset", "all"]))]
pub struct RedriveArgs {
    /// Replay the letter at this offset (repeatable), whether or not a
    /// redrive dealt with it before; the mark does not move.
    #[arg(long = "offset", value_name = "OFFSET")]
    offset: Vec<i64>,
    /// Replay every letter not yet dealt with, and move the mark past them.
    #[arg(long)]
    all: bool,
    /// Say what would be replayed, and replay nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    at: Where,
}

fn parse_region(value: &str) -> Result<Region, String> {
    Region::parse(value).map_err(|error| error.to_string())
}

impl Where {
    fn bus(&self) -> Result<(BusConfig, Topology), CliError> {
        let config = BusConfig {
            brokers: self.brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            security_protocol: self.kafka_security_protocol.clone(),
            sasl_mechanism: self.kafka_sasl_mechanism.clone(),
            sasl_username: self.kafka_user.clone(),
            sasl_password: Secret::new(
                std::env::var("HARVEST_BUS__SASL_PASSWORD").unwrap_or_default(),
            ),
            ssl_ca_file: self.kafka_ca_file.clone(),
            ssl_cert_file: self.kafka_cert_file.clone(),
            ssl_key_file: self.kafka_key_file.clone(),
            ..BusConfig::default()
        };
        config.validate().map_err(|problem| {
            CliError::Usage(format!(
                "{problem} (bus.<setting> is the flag --kafka-… or the variable \
                 HARVEST_BUS__<SETTING>; the password is only the variable \
                 HARVEST_BUS__SASL_PASSWORD)"
            ))
        })?;
        let regions = Regions::new(vec![self.region.clone()]).unwrap_or_default();
        let topology = Topology::new(&config, regions);
        Ok((config, topology))
    }

    async fn read(&self) -> Result<Letters, CliError> {
        let (config, topology) = self.bus()?;
        Ok(dead_letters::read(&config, &topology, &self.service, &self.region).await?)
    }
}

pub async fn run(context: &Context, command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::List(at) => {
            let letters = at.read().await?;
            context.printer.show(&letters, list_human, list_json)?;
        }
        DlqCommand::Show(ShowArgs { offset, at }) => {
            let letters = at.read().await?;
            let letter = find(&letters, offset)?;
            context.printer.show(letter, show_human, letter_json)?;
        }
        DlqCommand::Redrive(request) => redrive(context, request).await?,
    }
    Ok(())
}

fn find(letters: &Letters, offset: i64) -> Result<&DeadLetter, CliError> {
    letters
        .letters
        .iter()
        .find(|letter| letter.offset == offset)
        .ok_or_else(|| {
            dead_letters::DeadLetterError::NoLetter {
                topic: letters.topic.clone(),
                offset,
            }
            .into()
        })
}

async fn redrive(context: &Context, request: RedriveArgs) -> Result<(), CliError> {
    let letters = request.at.read().await?;
    let (chosen, skipped, mark_to): (Vec<&DeadLetter>, Vec<&DeadLetter>, Option<i64>) = if request
        .all
    {
        let waiting: Vec<&DeadLetter> = letters.letters.iter().filter(|l| !l.redriven).collect();
        let (replay, skip) = waiting.into_iter().partition(|l| l.replayable());
        let end = letters.letters.last().map(|last| last.offset + 1);
        (replay, skip, end)
    } else {
        let mut chosen = Vec::new();
        for offset in &request.offset {
            let letter = find(&letters, *offset)?;
            if !letter.replayable() {
                return Err(CliError::Refused(format!(
                    "the letter at offset {offset} could only be dead-lettered again ({}): not replayed",
                    letter.reason()
                )));
            }
            chosen.push(letter);
        }
        (chosen, Vec::new(), None)
    };
    let owned: Vec<DeadLetter> = chosen.iter().map(|letter| (*letter).clone()).collect();
    if !request.dry_run {
        let (config, topology) = request.at.bus()?;
        dead_letters::redrive(
            &config,
            &topology,
            &request.at.service,
            &request.at.region,
            &owned,
            mark_to,
        )
        .await?;
    }
    let outcome = Redriven {
        replayed: owned,
        skipped: skipped.into_iter().cloned().collect(),
        dry_run: request.dry_run,
        mark: if request.dry_run {
            letters.mark
        } else {
            mark_to.map_or(letters.mark, |to| to.max(letters.mark))
        },
    };
    context
        .printer
        .show(&outcome, redriven_human, redriven_json)?;
    Ok(())
}

struct Redriven {
    replayed: Vec<DeadLetter>,
    skipped: Vec<DeadLetter>,
    dry_run: bool,
    mark: i64,
}

impl Ids for Letters {
    fn ids(&self) -> Vec<String> {
        self.letters.iter().map(|l| l.offset.to_string()).collect()
    }
}

impl Ids for DeadLetter {
    fn ids(&self) -> Vec<String> {
        vec![self.offset.to_string()]
    }
}

impl Ids for Redriven {
    fn ids(&self) -> Vec<String> {
        self.replayed.iter().map(|l| l.offset.to_string()).collect()
    }
}

fn at(letter: &DeadLetter) -> String {
    letter
        .timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

fn state(letter: &DeadLetter) -> &'static str {
    if letter.redriven {
        "redriven"
    } else {
        "waiting"
    }
}

/// Where it was read from: `topic[partition]@offset`.
fn origin(letter: &DeadLetter) -> String {
    format!(
        "{}[{}]@{}",
        letter.original_topic(),
        letter
            .header("dead-letter-original-partition")
            .unwrap_or("?"),
        letter.header("dead-letter-original-offset").unwrap_or("?"),
    )
}

fn event_type(letter: &DeadLetter) -> String {
    letter
        .header("event-type")
        .map(|name| name.rsplit('.').next().unwrap_or(name).to_owned())
        .unwrap_or_else(|| "-".to_owned())
}

fn order(letter: &DeadLetter) -> String {
    letter
        .key
        .as_deref()
        .and_then(|key| std::str::from_utf8(key).ok())
        .unwrap_or("-")
        .to_owned()
}

fn list_human(letters: &Letters) -> String {
    if letters.letters.is_empty() {
        return format!("no dead letters in {}", letters.topic);
    }
    let mut table = Table::new(&[
        ("OFFSET", Align::Right),
        ("AT", Align::Left),
        ("STATE", Align::Left),
        ("EVENT", Align::Left),
        ("ORDER", Align::Left),
        ("REASON", Align::Left),
    ]);
    for letter in &letters.letters {
        table.row(vec![
            letter.offset.to_string(),
            at(letter),
            state(letter).to_owned(),
            event_type(letter),
            order(letter),
            letter.reason().to_owned(),
        ]);
    }
    let waiting = letters.letters.iter().filter(|l| !l.redriven).count();
    format!(
        "{}\n{} dead letters in {}, {waiting} waiting",
        table.render().trim_end(),
        letters.letters.len(),
        letters.topic
    )
}

fn letter_json(letter: &DeadLetter) -> Value {
    let envelope = letter.envelope();
    json!({
        "offset": letter.offset,
        "at_ms": letter.timestamp_ms,
        "state": state(letter),
        "reason": letter.reason(),
        "replayable": letter.replayable(),
        "service": letter.header("dead-letter-service"),
        "original_topic": letter.original_topic(),
        "original_partition": letter.header("dead-letter-original-partition").and_then(|p| p.parse::<i32>().ok()),
        "original_offset": letter.header("dead-letter-original-offset").and_then(|o| o.parse::<i64>().ok()),
        "key": letter.key.as_deref().map(String::from_utf8_lossy),
        "event_type": letter.header("event-type"),
        "event_id": envelope.as_ref().map(|e| e.event_id.clone()),
        "order_id": envelope.as_ref().map(|e| e.order_id.clone()),
        "headers": letter.headers.iter().map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into_owned()))).collect::<serde_json::Map<_, _>>(),
        "payload_bytes": letter.payload.len(),
    })
}

fn list_json(letters: &Letters) -> Value {
    json!({
        "topic": letters.topic,
        "mark": letters.mark,
        "letters": letters.letters.iter().map(letter_json).collect::<Vec<_>>(),
    })
}

fn show_human(letter: &DeadLetter) -> String {
    let envelope = letter.envelope();
    let summary = Block::new()
        .field("Offset", letter.offset.to_string())
        .field("At", at(letter))
        .field("State", state(letter))
        .field("Reason", letter.reason())
        .field(
            "Replayable",
            if letter.replayable() {
                "yes"
            } else {
                "no: it could only be dead-lettered again"
            },
        )
        .field("From", origin(letter))
        .field("Order", order(letter))
        .field("Event", event_type(letter))
        .maybe("Event id", envelope.as_ref().map(|e| e.event_id.clone()))
        .render();
    let mut headers = Table::new(&[("HEADER", Align::Left), ("VALUE", Align::Left)]);
    for (key, value) in &letter.headers {
        headers.row(vec![
            key.clone(),
            String::from_utf8_lossy(value).into_owned(),
        ]);
    }
    let payload = match &envelope {
        Some(envelope) => format!("{:#?}", envelope.payload),
        None => format!(
            "{} bytes that are not an event envelope",
            letter.payload.len()
        ),
    };
    format!(
        "{summary}\n{}\n{}",
        section("Headers", &headers.render()),
        section("Payload", &payload)
    )
}

fn redriven_human(outcome: &Redriven) -> String {
    let verb = if outcome.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    let mut lines = Vec::new();
    for letter in &outcome.replayed {
        lines.push(format!(
            "{verb} {} → {} ({} of order {})",
            letter.offset,
            letter.original_topic(),
            event_type(letter),
            order(letter)
        ));
    }
    for letter in &outcome.skipped {
        lines.push(format!(
            "skipped {}: it could only be dead-lettered again ({})",
            letter.offset,
            letter.reason()
        ));
    }
    lines.push(format!(
        "{verb} {} dead letters, skipped {}; redrive mark at {}",
        outcome.replayed.len(),
        outcome.skipped.len(),
        outcome.mark
    ));
    lines.join("\n")
}

fn redriven_json(outcome: &Redriven) -> Value {
    json!({
        "dry_run": outcome.dry_run,
        "replayed": outcome.replayed.iter().map(|l| l.offset).collect::<Vec<_>>(),
        "skipped": outcome.skipped.iter().map(|l| json!({"offset": l.offset, "reason": l.reason()})).collect::<Vec<_>>(),
        "mark": outcome.mark,
    })
}
