// Opens one order's trace in the trace viewer (Zipkin's UI) with Debian's
// Chromium, checks what an operator would look for, and keeps a screenshot.
//
//   node trace.mjs <trace page URL> <screenshot.png> <service,…> <span name,…>
//
// Passes when the page shows a span of every named service and every named
// span (the Kafka publish and process hops); prints what it saw as JSON on
// the last line and exits non-zero otherwise.

import { launchChromium } from './chromium.mjs';

const [url, screenshot, servicesArg, spansArg] = process.argv.slice(2);
if (!url || !screenshot || !servicesArg || !spansArg) {
  console.error('usage: node trace.mjs <trace page URL> <screenshot.png> <service,…> <span name,…>');
  process.exit(2);
}
const host = new URL(url).hostname;
if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) {
  console.error(`only a trace viewer on this machine may be opened, not ${host}`);
  process.exit(2);
}
const services = servicesArg.split(',');
const spans = spansArg.split(',');

const browser = await launchChromium();
let seen = { services: [], spans: [] };
let passed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(url, { waitUntil: 'networkidle', timeout: 30_000 });
  // The span rows are drawn once the trace has loaded, and only those that
  // fit the window: make it tall enough for every row, then look.
  await page.getByText('Total Spans').first().waitFor({ timeout: 30_000 });
  const total = Number((await page.locator('body').innerText()).match(/Total Spans\s*(\d+)/)?.[1] ?? 60);
  await page.setViewportSize({ width: 1400, height: Math.max(1000, 360 + 30 * total) });
  await page.getByText(spans[spans.length - 1], { exact: false }).first().waitFor({ timeout: 10_000 }).catch(() => {});
  const text = (await page.locator('body').innerText()).toLowerCase();
  seen = {
    services: services.filter((service) => text.includes(service.toLowerCase())),
    spans: spans.filter((span) => text.includes(span.toLowerCase())),
  };
  passed = seen.services.length === services.length && seen.spans.length === spans.length;
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify({ passed, url, screenshot, seen }));
process.exit(passed ? 0 : 1);
