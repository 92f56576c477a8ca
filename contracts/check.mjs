// Checks that Harvest's event contract documents agree with each other and with
// the code: `make contracts-check` runs it after `buf lint` and `buf breaking`.
//
// 1. contracts/schemas/events.json is what proto/ generates now.
// 2. contracts/asyncapi.yaml is a valid AsyncAPI document (@asyncapi/parser;
//    errors and warnings fail).
// 3. It has every event type of the Envelope, each on the channel of the
//    stream whose .proto file defines it, and nothing else; the channels,
//    regions, services, partitions, retention and headers are those of the
//    code (crates/bus, crates/domain).
// 4. docs/courier-events.md has the delivery channel's topic, regions,
//    headers, envelope fields, every event with its oneof member and number,
//    every field with its type, the enum values and the shared types; and
//    names nothing the AsyncAPI document does not have.

import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

import { Parser, fromFile } from '@asyncapi/parser';
import { load as loadYaml } from 'js-yaml';

import { ENVELOPE, eventDescriptors, eventSchemas, renderSchemas, repoRoot, schemasPath } from './proto-schemas.mjs';

const asyncapiPath = join(repoRoot, 'contracts', 'asyncapi.yaml');
const courierDocPath = join(repoRoot, 'docs', 'courier-events.md');
const SCHEMAS_REF = 'schemas/events.json#/definitions/';

const problems = [];
let checks = 0;
const section = (name) => console.log(`== ${name}`);
function expect(ok, message) {
  checks += 1;
  if (!ok) {
    problems.push(message);
    console.log(`  FAIL ${message}`);
  }
  return ok;
}
const read = (path) => readFileSync(join(repoRoot, path), 'utf8');
const sameSet = (a, b) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
const show = (list) => [...list].sort().join(', ') || '(none)';
function compareSets(what, documented, actual, where, source) {
  const missing = [...actual].filter((x) => !documented.includes(x));
  const extra = [...documented].filter((x) => !actual.includes(x));
  expect(missing.length === 0, `${where}: ${what} missing: ${show(missing)} (${source} has them)`);
  expect(extra.length === 0, `${where}: ${what} not in ${source}: ${show(extra)}`);
}
/** The single capture of `pattern` in a file of the code, or a problem. */
function fromCode(path, pattern, what) {
  const match = read(path).match(pattern);
  expect(match, `${path}: could not find ${what} (has the code changed shape? update contracts/check.mjs)`);
  return match?.[1];
}
const quoted = (text) => [...(text ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]);

// 1. Generated schemas -------------------------------------------------------
section('schemas generated from proto/');
const descriptors = eventDescriptors();
const schemas = eventSchemas(descriptors);
expect(
  readFileSync(schemasPath, 'utf8') === renderSchemas(schemas),
  `${relative(repoRoot, schemasPath)} is not what proto/ generates: run \`make contracts-schemas\` and commit it`,
);
const definitions = schemas.definitions;
const envelopes = Object.values(definitions).filter((d) => d['x-proto-event-type']);
const streamOf = (envelope) => envelope['x-proto-file'].match(/^harvest\/events\/v1\/(\w+)\.proto$/)?.[1];
const memberOf = (envelope) =>
  Object.entries(envelope.properties).find(([, p]) => p['x-proto-oneof'] === 'payload');
const streams = [...new Set(envelopes.map(streamOf))];
console.log(`  ${envelopes.length} event types in ${streams.length} streams (${streams.join(', ')})`);

// 2. AsyncAPI validity ---------------------------------------------------------
section('AsyncAPI document is valid');
const { document, diagnostics } = await fromFile(new Parser(), asyncapiPath).parse();
for (const d of diagnostics) {
  const where = (d.path ?? []).join('.');
  // 0 error, 1 warning: both fail. 2 information, 3 hint: shown.
  if (d.severity <= 1) expect(false, `asyncapi.yaml ${where}: ${d.code}: ${d.message}`);
  else console.log(`  note ${where}: ${d.code}: ${d.message}`);
}
expect(document, 'asyncapi.yaml could not be parsed');
if (!document) finish();
const raw = loadYaml(readFileSync(asyncapiPath, 'utf8'));

// 3. AsyncAPI against proto/ and the code -------------------------------------
section('AsyncAPI document against proto/ and the code');
const regions = quoted(fromCode('crates/domain/src/region.rs', /pub const DEFAULT: \[&'static str; \d+\] = \[([^\]]*)\]/, 'Regions::DEFAULT'));
const services = quoted(fromCode('crates/bus/src/topology.rs', /pub const CONSUMING_SERVICES: \[&str; \d+\] = \[([^\]]*)\]/, 'CONSUMING_SERVICES'));
const partitions = Number(fromCode('crates/bus/src/config.rs', /\n\s+partitions: (\d+),/, 'the default of bus.partitions'));
const retentionHours = fromCode('crates/bus/src/config.rs', /\n\s+retention_hours: ([\d *]+),/, 'the default of bus.retention_hours');
const retentionMs = retentionHours ? retentionHours.split('*').reduce((a, b) => a * Number(b), 1) * 3_600_000 : NaN;
const publisherHeaders = [...read('crates/bus/src/publisher.rs').matchAll(/key: "([a-z-]+)"/g)].map((m) => m[1]);
// The W3C trace-context propagator writes `traceparent`, and `tracestate` when the trace has one.
const traceHeaders = read('crates/bus/src/trace.rs').includes('TraceContextPropagator') ? ['traceparent', 'tracestate'] : [];
expect(traceHeaders.length, 'crates/bus/src/trace.rs: no TraceContextPropagator (update contracts/check.mjs)');
const redriven = fromCode('crates/bus/src/dead_letters.rs', /pub const REDRIVEN_FROM: &str = "([a-z-]+)"/, 'REDRIVEN_FROM');
const deadLetterHeaders = [...read('crates/bus/src/consumer.rs').matchAll(/\("(dead-letter-[a-z-]+)",/g)].map((m) => m[1]);

const params = raw.components?.parameters ?? {};
compareSets('regions', params.region?.enum ?? [], regions, 'asyncapi.yaml components.parameters.region.enum', 'Regions::DEFAULT');
compareSets('services', params.service?.enum ?? [], services, 'asyncapi.yaml components.parameters.service.enum', 'CONSUMING_SERVICES');
const streamBinding = raw.components?.channelBindings?.stream?.kafka ?? {};
expect(streamBinding.partitions === partitions, `asyncapi.yaml stream binding: partitions ${streamBinding.partitions}, the default bus.partitions is ${partitions}`);
expect(
  streamBinding.topicConfiguration?.['retention.ms'] === retentionMs,
  `asyncapi.yaml stream binding: retention.ms ${streamBinding.topicConfiguration?.['retention.ms']}, the default bus.retention_hours is ${retentionMs} ms`,
);
const traitHeaders = Object.keys(raw.components?.messageTraits?.event?.headers?.properties ?? {});
compareSets('headers', traitHeaders, [...publisherHeaders, ...traceHeaders, redriven], 'asyncapi.yaml messageTraits.event.headers', 'the publisher (publisher.rs, trace.rs, dead_letters.rs)');
const letterHeaders = Object.keys(raw.components?.messages?.DeadLetter?.headers?.properties ?? {});
compareSets('headers', letterHeaders, deadLetterHeaders, 'asyncapi.yaml DeadLetter headers', 'consumer.rs');

const deadLetters = Object.entries(raw.channels).find(([, c]) => c.address === 'harvest.dead-letter.{service}.{region}');
expect(deadLetters, 'asyncapi.yaml: no channel with address harvest.dead-letter.{service}.{region}');
const componentMessages = raw.components?.messages ?? {};
const referenced = new Set();
for (const stream of streams) {
  const address = `harvest.${stream}.{region}`;
  const found = Object.entries(raw.channels).find(([, c]) => c.address === address);
  if (!expect(found, `asyncapi.yaml: no channel with address ${address}`)) continue;
  const [channelId, channel] = found;
  expect(
    Object.values(raw.operations).some((o) => o.action === 'send' && o.channel?.$ref === `#/channels/${channelId}`),
    `asyncapi.yaml: no send operation on channel ${channelId}`,
  );
  const documented = Object.values(channel.messages ?? {}).map((m) => {
    const id = m.$ref?.replace('#/components/messages/', '');
    referenced.add(id);
    return { id, message: componentMessages[id] };
  });
  const expected = envelopes.filter((e) => streamOf(e) === stream);
  compareSets(
    'event types',
    documented.map((d) => d.message?.name),
    expected.map((e) => e['x-proto-event-type']),
    `asyncapi.yaml channel ${channelId}`,
    `proto/harvest/events/v1/${stream}.proto`,
  );
  for (const { id, message } of documented) {
    const envelope = expected.find((e) => e['x-proto-event-type'] === message?.name);
    if (!envelope) continue;
    const [member] = memberOf(envelope);
    expect(
      message.payload?.$ref === `${SCHEMAS_REF}${ENVELOPE}.${member}`,
      `asyncapi.yaml message ${id}: payload should be ${SCHEMAS_REF}${ENVELOPE}.${member}`,
    );
    expect(
      (message.traits ?? []).some((t) => t.$ref === '#/components/messageTraits/event'),
      `asyncapi.yaml message ${id}: lacks the event trait (headers, key)`,
    );
  }
}
// A courier partner's topic: as topology.rs names it, with every delivery
// event that names a courier, and no other.
const partnerAddress = 'harvest.partner.{partner}';
expect(
  read('crates/bus/src/topology.rs').includes(`"{}${partnerAddress}"`),
  `crates/bus/src/topology.rs: partner topics are no longer named ${partnerAddress}`,
);
const partnerChannel = Object.entries(raw.channels).find(([, c]) => c.address === partnerAddress);
if (expect(partnerChannel, `asyncapi.yaml: no channel with address ${partnerAddress}`)) {
  const [channelId, channel] = partnerChannel;
  expect(
    Object.values(raw.operations).some((o) => o.action === 'send' && o.channel?.$ref === `#/channels/${channelId}`),
    `asyncapi.yaml: no send operation on channel ${channelId}`,
  );
  compareSets(
    'event types',
    Object.values(channel.messages ?? {}).map((m) => componentMessages[m.$ref?.replace('#/components/messages/', '')]?.name),
    envelopes
      .filter((e) => streamOf(e) === 'delivery')
      .filter((e) => 'courier_id' in (definitions[e['x-proto-event-type']]?.properties ?? {}))
      .map((e) => e['x-proto-event-type']),
    `asyncapi.yaml channel ${channelId}`,
    'the delivery events that name a courier',
  );
}
for (const id of Object.keys(componentMessages)) {
  if (id === 'DeadLetter') continue;
  expect(referenced.has(id), `asyncapi.yaml: message ${id} is on no stream channel`);
}
// The parsed document resolved every payload: each must be an envelope.
for (const message of document.allMessages()) {
  if (message.name() === 'dead-letter') continue;
  const properties = message.payload()?.properties() ?? {};
  expect('event_id' in properties && 'event_type' in properties, `asyncapi.yaml message ${message.name()}: payload is not an envelope`);
}

// 4. The courier doc against the AsyncAPI document ----------------------------
section('docs/courier-events.md against the AsyncAPI document');
const doc = readFileSync(courierDocPath, 'utf8');
const where = 'docs/courier-events.md';
const source = 'asyncapi.yaml';
const delivery = Object.entries(raw.channels).find(([, c]) => c.address === 'harvest.delivery.{region}');
const deliveryEvents = envelopes.filter((e) => streamOf(e) === 'delivery');
const short = (protoType) => protoType.replace(/^(repeated )?(?:[a-z0-9]+\.)*/, '$1');
const tableRows = (text) =>
  text
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[-| ]+\|$/.test(line))
    .slice(1)
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
const ticks = (cell) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
const between = (start, end) => {
  const from = doc.indexOf(start);
  if (!expect(from >= 0, `${where}: no "${start}"`)) return '';
  const to = end ? doc.indexOf(end, from + start.length) : -1;
  return doc.slice(from, to < 0 ? undefined : to);
};

const topics = tableRows(between('## Topics', '\n- '));
const topicRow = topics.find((r) => /delivery events/.test(r[0]));
expect(
  topicRow && ticks(topicRow[1])[0] === delivery?.[1].address.replace('{region}', '<region>'),
  `${where}: the topic should be \`${delivery?.[1].address.replace('{region}', '<region>')}\` as in ${source}`,
);
const partnerRow = topics.find((r) => /partner/.test(r[0]));
expect(
  partnerRow && ticks(partnerRow[1])[0] === partnerAddress.replace('{partner}', '<partner id>'),
  `${where}: the partner topic should be \`${partnerAddress.replace('{partner}', '<partner id>')}\` as in ${source}`,
);
const regionRow = topics.find((r) => /regions/.test(r[0]));
compareSets('regions', regionRow ? ticks(regionRow[1]) : [], params.region?.enum ?? [], `${where} Topics`, source);
const partitionsSaid = doc.match(/`bus\.partitions` per topic \((\d+) by default\)/)?.[1];
expect(Number(partitionsSaid) === streamBinding.partitions, `${where}: partitions by default ${partitionsSaid}, ${source} says ${streamBinding.partitions}`);
const retentionSaid = doc.match(/`bus\.retention_hours` \((\d+) days\s+by default\)/)?.[1];
expect(
  Number(retentionSaid) * 86_400_000 === streamBinding.topicConfiguration?.['retention.ms'],
  `${where}: retention ${retentionSaid} days, ${source} says ${streamBinding.topicConfiguration?.['retention.ms']} ms`,
);

const format = between('## Message format', '### Envelope');
compareSets('headers', tableRows(format).flatMap((r) => ticks(r[0])), traitHeaders, `${where} Message format`, source);

const envelopeRows = tableRows(between('### Envelope', '### Payloads'));
const anyEnvelope = deliveryEvents[0];
const envelopeFields = Object.entries(anyEnvelope?.properties ?? {}).filter(([, p]) => !p['x-proto-oneof']);
const documentedEnvelope = envelopeRows.flatMap((r) => ticks(r[0]).map((name) => [name, r[1]]));
compareSets('envelope fields', documentedEnvelope.map(([n]) => n), [...envelopeFields.map(([n]) => n), 'payload'], `${where} Envelope`, source);
for (const [name, type] of documentedEnvelope) {
  const field = envelopeFields.find(([n]) => n === name)?.[1];
  if (field) expect(type === short(field['x-proto-type']), `${where} Envelope: \`${name}\` is ${field['x-proto-type']}, the doc says ${type}`);
}
const numbers = deliveryEvents.map((e) => memberOf(e)[1]['x-proto-number']);
const range = envelopeRows.find((r) => ticks(r[0]).includes('payload'))?.[2].match(/field numbers (\d+)[–-](\d+)/);
expect(
  range && Number(range[1]) === Math.min(...numbers) && Number(range[2]) === Math.max(...numbers),
  `${where} Envelope: payload field numbers should be ${Math.min(...numbers)}–${Math.max(...numbers)}`,
);

const payloads = between('### Payloads', '### Shared types');
const headings = [...payloads.matchAll(/^\*\*`(\w+)`\*\* \(`(\w+) = (\d+)`\)/gm)];
compareSets(
  'event types',
  headings.map((h) => h[1]),
  Object.values(delivery?.[1].messages ?? {}).map((m) => short(componentMessages[m.$ref.split('/').pop()]?.name ?? '')),
  `${where} Payloads`,
  `${source} channel ${delivery?.[0]}`,
);
const usedTypes = new Set();
headings.forEach((heading, index) => {
  const [, event, member, number] = heading;
  const envelope = deliveryEvents.find((e) => short(e['x-proto-event-type']) === event);
  if (!envelope) return;
  const [actualMember, payloadField] = memberOf(envelope);
  expect(member === actualMember && Number(number) === payloadField['x-proto-number'],
    `${where} ${event}: is \`${actualMember} = ${payloadField['x-proto-number']}\`, the doc says \`${member} = ${number}\``);
  const body = payloads.slice(heading.index, headings[index + 1]?.index);
  const rows = tableRows(body.slice(body.indexOf('\n|')));
  const schema = definitions[envelope['x-proto-event-type']];
  const fields = Object.entries(schema.properties);
  compareSets('fields', rows.map((r) => ticks(r[0])[0]), fields.map(([n]) => n), `${where} ${event}`, `${source} (${schema['x-proto-message']})`);
  for (const row of rows) {
    const field = schema.properties[ticks(row[0])[0]];
    if (!field) continue;
    expect(row[1] === short(field['x-proto-type']), `${where} ${event}.${ticks(row[0])[0]}: type is ${short(field['x-proto-type'])}, the doc says ${row[1]}`);
  }
  for (const [, field] of fields) usedTypes.add(field['x-proto-type'].replace(/^repeated /, ''));
});

// Enum values: every value the doc names exists with that number, and every
// value of the delivery payloads' enums but the zero one is explained.
const enumDefinitions = Object.values(definitions).filter((d) => d['x-proto-enum']);
for (const [, name, number] of doc.matchAll(/`([A-Z][A-Z0-9_]+)` \((\d+)\)/g)) {
  const owner = enumDefinitions.find((d) => name in d['x-proto-numbers']);
  expect(owner && owner['x-proto-numbers'][name] === Number(number),
    `${where}: \`${name}\` (${number}) ${owner ? `is ${owner['x-proto-numbers'][name]}` : 'is no enum value'} in ${source}`);
}
for (const enumDef of enumDefinitions.filter((d) => usedTypes.has(d['x-proto-enum']))) {
  for (const [name, number] of Object.entries(enumDef['x-proto-numbers'])) {
    if (number === 0) continue;
    expect(doc.includes(`\`${name}\` (${number})`), `${where}: ${enumDef['x-proto-enum']} value \`${name}\` (${number}) is not explained`);
  }
}

// Shared types: the message types the payloads use, with their fields.
const shared = tableRows(between('### Shared types', '## Consuming'));
const sharedTypes = new Set();
const visit = (protoType) => {
  const def = definitions[protoType];
  if (!def || def.type !== 'object' || sharedTypes.has(protoType)) return;
  sharedTypes.add(protoType);
  for (const field of Object.values(def.properties)) visit(field['x-proto-type'].replace(/^repeated /, ''));
};
usedTypes.forEach(visit);
compareSets('shared types', shared.map((r) => r[0]), [...sharedTypes].map(short), `${where} Shared types`, source);
for (const [type, fieldsCell] of shared) {
  const protoType = [...sharedTypes].find((t) => short(t) === type);
  if (!protoType) continue;
  const documentedFields = fieldsCell.split(/,\s*(?=`)/).map((f) => ticks(f)[0]);
  compareSets('fields', documentedFields, Object.keys(definitions[protoType].properties), `${where} Shared types ${type}`, source);
}

finish();

function finish() {
  console.log(`contracts: ${checks - problems.length} passed, ${problems.length} failed`);
  process.exit(problems.length ? 1 : 0);
}
