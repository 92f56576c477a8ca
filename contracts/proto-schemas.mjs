// JSON Schemas of Harvest's events, derived from proto/ (through `buf build`),
// for the payloads of the AsyncAPI document.
//
//   node contracts/proto-schemas.mjs          rewrites contracts/schemas/events.json
//   import { eventSchemas } from './proto-schemas.mjs'   (check.mjs compares)
//
// A schema describes an event in the canonical ProtoJSON mapping with the
// .proto field names (what `protoc --decode`, `buf convert` or a protobuf
// library's JSON printer show); on Kafka the bytes are the binary protobuf
// encoding. Every property names its field number and .proto type
// (`x-proto-number`, `x-proto-type`), so the schema says everything the wire
// format depends on. `Envelope.<member>` is the envelope as it is sent with
// one payload of its `payload` oneof.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..');
export const schemasPath = join(here, 'schemas', 'events.json');
const buf = join(here, 'node_modules', '.bin', 'buf');

export const ENVELOPE = 'harvest.events.v1.Envelope';
const EVENTS_FOLDER = 'harvest/events/v1/';

/** The FileDescriptorSet of the event schemas and what they import, with comments. */
export function eventDescriptors() {
  const json = execFileSync(buf, ['build', 'proto', '--path', `proto/${EVENTS_FOLDER}`, '-o', '-#format=json'], {
    cwd: repoRoot,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(json);
}

function comment(file, path) {
  const location = (file.sourceCodeInfo?.location ?? []).find(
    (l) => l.path && l.path.length === path.length && l.path.every((v, i) => v === path[i]),
  );
  const text = location?.leadingComments;
  if (!text) return undefined;
  return text
    .split('\n')
    .map((line) => line.replace(/^ /, ''))
    .join('\n')
    .trim();
}

/** Every message and enum by full name (without the leading dot), with its file and comment. */
export function indexTypes(descriptors) {
  const messages = new Map();
  const enums = new Map();
  for (const file of descriptors.file) {
    const prefix = file.package ? `${file.package}.` : '';
    const walk = (list, path, scope) => {
      (list ?? []).forEach((message, index) => {
        const name = `${scope}${message.name}`;
        const messagePath = [...path, index];
        messages.set(name, { message, file, path: messagePath, description: comment(file, messagePath) });
        walk(message.nestedType, [...messagePath, 3], `${name}.`);
        (message.enumType ?? []).forEach((e, i) => {
          const enumPath = [...messagePath, 4, i];
          enums.set(`${name}.${e.name}`, { enum: e, file, description: comment(file, enumPath) });
        });
      });
    };
    walk(file.messageType, [4], prefix);
    (file.enumType ?? []).forEach((e, i) => {
      enums.set(`${prefix}${e.name}`, { enum: e, file, description: comment(file, [5, i]) });
    });
  }
  return { messages, enums };
}

const SCALARS = {
  TYPE_STRING: ['string', { type: 'string' }],
  TYPE_BOOL: ['bool', { type: 'boolean' }],
  TYPE_BYTES: ['bytes', { type: 'string', contentEncoding: 'base64' }],
  TYPE_DOUBLE: ['double', { type: 'number' }],
  TYPE_FLOAT: ['float', { type: 'number' }],
  TYPE_INT32: ['int32', { type: 'integer', format: 'int32' }],
  TYPE_SINT32: ['sint32', { type: 'integer', format: 'int32' }],
  TYPE_SFIXED32: ['sfixed32', { type: 'integer', format: 'int32' }],
  TYPE_UINT32: ['uint32', { type: 'integer', minimum: 0, format: 'uint32' }],
  TYPE_FIXED32: ['fixed32', { type: 'integer', minimum: 0, format: 'uint32' }],
  // ProtoJSON writes 64-bit integers as decimal strings and reads either.
  TYPE_INT64: ['int64', { type: ['string', 'integer'], format: 'int64' }],
  TYPE_SINT64: ['sint64', { type: ['string', 'integer'], format: 'int64' }],
  TYPE_SFIXED64: ['sfixed64', { type: ['string', 'integer'], format: 'int64' }],
  TYPE_UINT64: ['uint64', { type: ['string', 'integer'], format: 'uint64' }],
  TYPE_FIXED64: ['fixed64', { type: ['string', 'integer'], format: 'uint64' }],
};

const WELL_KNOWN = {
  'google.protobuf.Timestamp': {
    type: 'string',
    format: 'date-time',
    description: 'google.protobuf.Timestamp: an instant, RFC 3339 in UTC in ProtoJSON.',
  },
};

/** The JSON Schema definitions of the envelope, every payload and every type they use. */
export function eventSchemas(descriptors = eventDescriptors()) {
  const { messages, enums } = indexTypes(descriptors);
  const definitions = {};
  const pending = [];
  const ref = (name) => `#/definitions/${name}`;

  const fieldSchema = (field, info) => {
    let protoType;
    let schema;
    if (field.type === 'TYPE_MESSAGE' || field.type === 'TYPE_ENUM') {
      protoType = field.typeName.replace(/^\./, '');
      pending.push(protoType);
      schema = { $ref: ref(protoType) };
    } else {
      const scalar = SCALARS[field.type];
      if (!scalar) throw new Error(`${info}: field ${field.name} has unsupported type ${field.type}`);
      [protoType, schema] = [scalar[0], { ...scalar[1] }];
    }
    const repeated = field.label === 'LABEL_REPEATED';
    if (repeated) schema = { type: 'array', items: schema };
    return { schema, protoType: repeated ? `repeated ${protoType}` : protoType };
  };

  const objectSchema = (name, entry, only = () => true, protoMessage = name) => {
    const properties = {};
    entry.message.field.forEach((field, index) => {
      if (!only(field)) return;
      const { schema, protoType } = fieldSchema(field, name);
      const description = comment(entry.file, [...entry.path, 2, index]);
      // A $ref takes no siblings in JSON Schema draft 7: wrap it to describe it.
      const property = schema.$ref ? { allOf: [schema] } : schema;
      properties[field.name] = {
        ...(description ? { description } : {}),
        ...property,
        'x-proto-number': field.number,
        'x-proto-type': protoType,
      };
    });
    return {
      title: name,
      ...(entry.description ? { description: entry.description } : {}),
      type: 'object',
      properties,
      'x-proto-message': protoMessage,
    };
  };

  const define = (name) => {
    if (definitions[name]) return;
    if (WELL_KNOWN[name]) {
      definitions[name] = WELL_KNOWN[name];
      return;
    }
    const enumEntry = enums.get(name);
    if (enumEntry) {
      definitions[name] = {
        title: name,
        ...(enumEntry.description ? { description: enumEntry.description } : {}),
        type: 'string',
        enum: enumEntry.enum.value.map((v) => v.name),
        'x-proto-enum': name,
        'x-proto-numbers': Object.fromEntries(enumEntry.enum.value.map((v) => [v.name, v.number])),
      };
      return;
    }
    const entry = messages.get(name);
    if (!entry) throw new Error(`unknown type ${name}`);
    definitions[name] = {}; // reserve against cycles
    definitions[name] = objectSchema(name, entry);
  };

  const envelope = messages.get(ENVELOPE);
  if (!envelope) throw new Error(`${ENVELOPE} not found in proto/${EVENTS_FOLDER}`);
  const oneofIndex = envelope.message.oneofDecl.findIndex((o) => o.name === 'payload');
  const isPayload = (field) => field.oneofIndex === oneofIndex && field.oneofIndex !== undefined;
  const payloadComment = comment(envelope.file, [...envelope.path, 8, oneofIndex]);

  for (const member of envelope.message.field.filter(isPayload)) {
    const eventType = member.typeName.replace(/^\./, '');
    const name = `${ENVELOPE}.${member.name}`;
    const schema = objectSchema(name, envelope, (field) => !isPayload(field) || field === member, ENVELOPE);
    schema.title = `${ENVELOPE} with ${eventType}`;
    if (payloadComment) schema.description = `${schema.description ?? ''}\n\n${payloadComment}`.trim();
    schema.properties.event_type = { ...schema.properties.event_type, const: eventType };
    schema.required = ['event_id', 'event_type', 'order_id', 'region', member.name];
    schema.properties[member.name]['x-proto-oneof'] = 'payload';
    schema.properties[member.name].description = `The payload, a ${eventType} (member of the \`payload\` oneof).`;
    schema['x-proto-event-type'] = eventType;
    schema['x-proto-file'] = messages.get(eventType).file.name;
    definitions[name] = schema;
  }
  while (pending.length) define(pending.pop());

  const sorted = Object.fromEntries(Object.keys(definitions).sort().map((key) => [key, definitions[key]]));
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $comment:
      'Generated from proto/ by contracts/proto-schemas.mjs (make contracts-schemas); do not edit. ' +
      'ProtoJSON with the .proto field names; on Kafka each message is the binary protobuf encoding.',
    definitions: sorted,
  };
}

export function renderSchemas(schemas) {
  return `${JSON.stringify(schemas, null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  mkdirSync(dirname(schemasPath), { recursive: true });
  writeFileSync(schemasPath, renderSchemas(eventSchemas()));
  const count = Object.keys(JSON.parse(readFileSync(schemasPath, 'utf8')).definitions).length;
  console.log(`wrote ${schemasPath} (${count} definitions)`);
}
