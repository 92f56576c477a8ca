// Harvest's Prometheus rules and Grafana dashboard against the code.
//
//   node contracts/observability.mjs           rewrites deploy/prometheus/prometheus-rule.yaml
//   node contracts/observability.mjs --check   fails if it is stale, or if the rules or the
//                                              dashboard use a metric nobody exports
//
// deploy/prometheus/harvest.rules.yaml is the source of truth (promtool checks
// and tests it); prometheus-rule.yaml is the same groups as a
// prometheus-operator PrometheusRule. Every metric the rules and the dashboard
// use must be one the services define (a `pub const … = "harvest_…"` under
// crates/ or services/), one of the Kafka exporter's listed below, or a
// recording rule of the rules file.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { dump, load } from 'js-yaml';

import { repoRoot } from './proto-schemas.mjs';

const RULES = 'deploy/prometheus/harvest.rules.yaml';
const PROMETHEUS_RULE = 'deploy/prometheus/prometheus-rule.yaml';
const DASHBOARD = 'deploy/grafana/harvest.json';
// What danielqsj/kafka_exporter exports that the rules and dashboard use.
const KAFKA_EXPORTER = [
  'kafka_consumergroup_lag',
  'kafka_topic_partition_current_offset',
  'kafka_topic_partition_oldest_offset',
];

const read = (path) => readFileSync(join(repoRoot, path), 'utf8');
const rules = load(read(RULES));

function prometheusRule() {
  const header =
    `# Generated from ${RULES} by contracts/observability.mjs (make contracts-schemas): edit\n` +
    '# that file, not this one. The same groups as a prometheus-operator PrometheusRule.\n';
  const resource = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'harvest',
      labels: { 'app.kubernetes.io/name': 'harvest', 'app.kubernetes.io/component': 'monitoring' },
    },
    spec: { groups: rules.groups },
  };
  return header + dump(resource, { lineWidth: -1, noRefs: true });
}

function sourceFiles(dir) {
  return readdirSync(join(repoRoot, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.rs'))
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name));
}

function exportedMetrics() {
  const names = new Set();
  for (const dir of ['crates', 'services']) {
    for (const file of sourceFiles(dir)) {
      for (const m of readFileSync(file, 'utf8').matchAll(/pub const \w+: &str = "(harvest_[a-z0-9_]+)"/g)) names.add(m[1]);
    }
  }
  return names;
}

function check() {
  const problems = [];
  if (read(PROMETHEUS_RULE) !== prometheusRule()) {
    problems.push(`${PROMETHEUS_RULE} is not generated from ${RULES}: run \`make contracts-schemas\` and commit it`);
  }
  const exported = exportedMetrics();
  const recorded = new Set(rules.groups.flatMap((g) => g.rules.filter((r) => r.record).map((r) => r.record)));
  const known = (name) =>
    recorded.has(name) ||
    KAFKA_EXPORTER.includes(name) ||
    exported.has(name) ||
    exported.has(name.replace(/_(bucket|count|sum)$/, ''));
  const dashboard = JSON.parse(read(DASHBOARD));
  const expressions = [
    ...rules.groups.flatMap((g) => g.rules.map((r) => [RULES, r.record ?? r.alert, r.expr])),
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => [DASHBOARD, p.title, t.expr])),
    ...(dashboard.templating?.list ?? []).filter((v) => v.query?.query).map((v) => [DASHBOARD, `$${v.name}`, v.query.query]),
  ];
  let used = 0;
  for (const [file, what, expr] of expressions) {
    for (const [name] of expr.matchAll(/\b(?:harvest|kafka)[a-z0-9_:]*\b/g)) {
      if (!/^(harvest_|harvest:|kafka_)/.test(name)) continue;
      used += 1;
      if (!known(name)) problems.push(`${file} ${what}: ${name} is exported by no Harvest service nor the Kafka exporter`);
    }
  }
  for (const p of problems) console.log(`  FAIL ${p}`);
  console.log(`observability: ${expressions.length} expressions, ${used} metric uses, ${problems.length} problems`);
  process.exit(problems.length ? 1 : 0);
}

if (process.argv.includes('--check')) check();
else {
  writeFileSync(join(repoRoot, PROMETHEUS_RULE), prometheusRule());
  console.log(`wrote ${PROMETHEUS_RULE}`);
}
