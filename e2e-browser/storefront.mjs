// Drives Harvest's storefront in Debian's Chromium on a phone-sized screen,
// as a buyer would, against a running local stack whose couriers deliver.
//
//   node storefront.mjs --url <storefront URL> --scenario order [--screenshot <png>]
//   node storefront.mjs --url <storefront URL> --scenario sold-out --product <product id>
//
// order: signs in as a demo buyer, switches to Chinese and back, browses
// Shaanxi's fruit and then all of Shaanxi, puts apples and honey from two
// villages in the cart, checks out to Zhejiang with the first PlaceOrder's
// answer lost on its way back (the server receives the call), reloads and
// places again, then checks that exactly one order exists and follows it on
// its page until it is delivered.
//
// sold-out: the product has 3 units available. Buyer A fills in checkout
// for 2; buyer B orders 2 and its order is reserved; then A places its
// order, which must end cancelled, saying stock ran out, that 1 is
// available now and that nothing was charged.
//
// Prints one line per step; exits 0 when every check passed, 1 with what
// was expected and what the page showed otherwise, 2 on bad usage.

import { launchChromium } from './chromium.mjs';

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 1) {
    const name = argv[i];
    if (!name.startsWith('--')) return null;
    const value = argv[i + 1];
    if (value === undefined || value.startsWith('--')) return null;
    args[name.slice(2)] = value;
    i += 1;
  }
  return args;
}

const usage =
  'usage: node storefront.mjs --url <storefront URL> --scenario order [--screenshot <png>]\n' +
  '       node storefront.mjs --url <storefront URL> --scenario sold-out --product <product id> [--screenshot <png>]';
const args = parseArgs(process.argv.slice(2));
if (!args || !args.url || !['order', 'sold-out'].includes(args.scenario) || (args.scenario === 'sold-out' && !args.product)) {
  console.error(usage);
  process.exit(2);
}
const baseUrl = new URL(args.url);
if (!['127.0.0.1', 'localhost', '[::1]'].includes(baseUrl.hostname)) {
  console.error(`only a storefront on this machine may be opened, not ${baseUrl.hostname}`);
  process.exit(2);
}

const STEPS = ['PLACED', 'RESERVED', 'CONFIRMED', 'DISPATCHING', 'IN_TRANSIT', 'DELIVERED'];
const LATER_THAN_PLACED = STEPS.slice(1);
const PRICE = /^¥\d{1,3}(,\d{3})*\.\d{2}$/;

let stepNumber = 0;
function step(text) {
  stepNumber += 1;
  console.log(`[${String(stepNumber).padStart(2, ' ')}] ${text}`);
}

/** A failed check: what was expected, and what the page showed. */
class CheckFailed extends Error {
  constructor(expected, shown) {
    super(`expected ${expected}; the page showed: ${shown}`);
  }
}

/** What a buyer sees of the page's main area, on one line, shortened. */
async function shown(page) {
  try {
    const text = await page.locator('#main').innerText({ timeout: 2_000 });
    const line = text.replace(/\s+/g, ' ').trim();
    return JSON.stringify(line.length > 600 ? `${line.slice(0, 600)}…` : line) + ` (at ${page.url()})`;
  } catch {
    return `(nothing readable at ${page.url()})`;
  }
}

/**
 * Polls `probe` until it returns a truthy value, within `timeoutMs`; fails
 * with `expected` and the page's text otherwise.
 */
async function until(page, expected, probe, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value;
    try {
      value = await probe();
    } catch {
      value = undefined;
    }
    if (value) return value;
    if (Date.now() > deadline) throw new CheckFailed(expected, await shown(page));
    await page.waitForTimeout(250);
  }
}

const byTestId = (scope, id) => scope.locator(`[data-testid="${id}"]`);
const textOf = async (locator) => ((await locator.count()) ? (await locator.first().innerText()).trim() : '');

function yuanToFen(text) {
  const match = /¥([\d,]+)\.(\d{2})/.exec(text);
  if (!match) return NaN;
  return Number(match[1].replaceAll(',', '')) * 100 + Number(match[2]);
}

async function newBuyer(browser, label) {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: 'en-US',
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (error) => console.log(`     (${label}: page error: ${error.message})`));
  await page.goto(baseUrl.href, { waitUntil: 'load', timeout: 30_000 });
  await byTestId(page, 'sign-in').click({ timeout: 15_000 });
  const buyer = await until(page, `${label} signed in, the header naming a buyer-web-… demo buyer`, async () => {
    const text = await textOf(byTestId(page, 'buyer-id'));
    return /buyer-web-\S+/.exec(text)?.[0];
  });
  step(`${label} signed in as ${buyer}`);
  return { context, page, buyer };
}

/** Waits until the product list has loaded for the filters in the URL. */
async function productsLoaded(page, what) {
  await until(page, `the product list ${what} to load`, async () => {
    if (await byTestId(page, 'loading').count()) return false;
    if (await byTestId(page, 'browse-error').count()) throw new CheckFailed(`the product list ${what}`, await shown(page));
    return (await byTestId(page, 'product-card').count()) > 0 || (await byTestId(page, 'no-products').count()) > 0;
  });
}

async function filter(page, { province, category }, what) {
  if (province !== undefined) {
    await byTestId(page, 'filter-province').selectOption(province);
    await until(page, `the URL to carry province ${province || '(any)'}`, async () =>
      province ? page.url().includes(`province=${encodeURIComponent(province)}`) : !page.url().includes('province='),
    );
  }
  if (category !== undefined) {
    await byTestId(page, 'filter-category').selectOption(category);
    await until(page, `the URL to carry category ${category || '(any)'}`, async () =>
      category ? page.url().includes(`category=${category}`) : !page.url().includes('category='),
    );
  }
  await productsLoaded(page, what);
}

const cardNamed = (page, name) => byTestId(page, 'product-card').filter({ has: page.locator(`[data-testid="product-name"]`, { hasText: name }) });

async function fillShipTo(page, { recipient, phone, province, county, street }) {
  await byTestId(page, 'ship-recipient').fill(recipient);
  await byTestId(page, 'ship-phone').fill(phone);
  await byTestId(page, 'ship-province').selectOption(province);
  await byTestId(page, 'ship-county').fill(county);
  await byTestId(page, 'ship-street').fill(street);
}

async function orderState(page) {
  return (await byTestId(page, 'order-state').first().getAttribute('data-state', { timeout: 1_000 }).catch(() => null)) ?? '';
}

async function openedOrder(page, label) {
  return until(
    page,
    `${label}'s order page to open (#/orders/<id>)`,
    async () => {
      const match = /#\/orders\/([^/?]+)$/.exec(page.url());
      return match && (await byTestId(page, 'order-state').count()) > 0 ? decodeURIComponent(match[1]) : undefined;
    },
    30_000,
  );
}

/** The time shown for one step of the order page, when that step is reached. */
async function stepTime(page, state) {
  const item = byTestId(page, `step-${state}`);
  if (!(await item.count())) return '';
  const status = await item.getAttribute('data-status');
  if (status !== 'done' && status !== 'current') return '';
  return textOf(byTestId(item, 'step-time'));
}

async function orderScenario(browser) {
  const config = await (await fetch(new URL('/config.json', baseUrl))).json();
  const ordersOrigin = new URL(config.orders).origin;
  const { page } = await newBuyer(browser, 'buyer');

  // Language toggle.
  await byTestId(page, 'lang-zh').click();
  await until(page, 'Chinese text after choosing 中文 (浏览页标题 "农产品", 导航 "购物车")', async () => {
    const header = await page.locator('#header').innerText();
    const main = await page.locator('#main').innerText();
    return header.includes('购物车') && main.includes('农产品') && (await page.locator('html').getAttribute('lang')) === 'zh-CN';
  });
  step('中文 shows Chinese text (农产品, 购物车)');
  await byTestId(page, 'lang-en').click();
  await until(page, 'English text after choosing English ("Produce", "Cart")', async () => {
    const header = await page.locator('#header').innerText();
    const main = await page.locator('#main').innerText();
    return header.includes('Cart') && main.includes('Produce') && !main.includes('农产品');
  });
  step('English is back');

  // Browse: Shaanxi's fruit, then all of Shaanxi.
  await productsLoaded(page, 'unfiltered');
  await filter(page, { province: 'Shaanxi', category: 'fruit' }, 'of Shaanxi fruit');
  const apples = cardNamed(page, 'Fuji apples');
  if ((await apples.count()) !== 1) throw new CheckFailed('one "Fuji apples" card among Shaanxi fruit', await shown(page));
  const applePrice = await textOf(byTestId(apples, 'product-price'));
  const appleBestBefore = await textOf(byTestId(apples, 'product-best-before'));
  if (!PRICE.test(applePrice)) throw new CheckFailed('a ¥ price like ¥68.00 on the apples card', JSON.stringify(applePrice));
  if (!/^Best before \S+/.test(appleBestBefore)) throw new CheckFailed('a best-before date on the apples card', JSON.stringify(appleBestBefore));
  if (await cardNamed(page, 'honey').count()) throw new CheckFailed('no honey among Shaanxi fruit', await shown(page));
  step(`Shaanxi + fruit: Fuji apples at ${applePrice}, "${appleBestBefore}", no honey`);

  await filter(page, { category: '' }, 'of all Shaanxi produce');
  const honey = cardNamed(page, 'Wild jujube honey, 500 g jar');
  await until(page, 'the "Wild jujube honey, 500 g jar" card with all categories of Shaanxi', async () => (await honey.count()) === 1);
  const honeyOrigin = await textOf(byTestId(honey, 'product-origin'));
  if (!honeyOrigin.includes('Xiaoyu')) throw new CheckFailed('the honey card naming its village Xiaoyu', JSON.stringify(honeyOrigin));
  if ((await cardNamed(page, 'Fuji apples').count()) !== 1) throw new CheckFailed('the apples card still listed', await shown(page));
  const honeyPrice = await textOf(byTestId(honey, 'product-price'));
  step(`all of Shaanxi: honey from ${honeyOrigin.replace(/^📍\s*/, '')} at ${honeyPrice} shows too`);

  // Cart: apples ×1, honey ×2.
  await byTestId(cardNamed(page, 'Fuji apples'), 'add-to-cart').click();
  await byTestId(honey, 'qty-more').click();
  const honeyQty = await byTestId(honey, 'qty-input').inputValue();
  if (honeyQty !== '2') throw new CheckFailed('the honey stepper at 2 after one "+"', JSON.stringify(honeyQty));
  await byTestId(honey, 'add-to-cart').click();
  await until(page, 'the cart count at 3 in the header', async () => (await textOf(byTestId(page, 'cart-count'))) === '3');
  step('added apples ×1 and honey ×2; the header counts 3');

  await byTestId(page, 'nav-cart').click();
  await until(page, 'the cart page with its lines', async () => (await byTestId(page, 'cart-line').count()) === 2);
  const groups = byTestId(page, 'cart-group');
  if ((await groups.count()) !== 2) throw new CheckFailed('two village groups in the cart', await shown(page));
  const villages = [];
  for (let i = 0; i < 2; i += 1) villages.push(await textOf(byTestId(groups.nth(i), 'cart-group-village')));
  if (!villages.some((v) => v.includes('Xiaoyu'))) throw new CheckFailed('a cart group from Xiaoyu', JSON.stringify(villages));
  const expectedTotal = yuanToFen(applePrice) + 2 * yuanToFen(honeyPrice);
  const total = await textOf(byTestId(page, 'cart-total'));
  if (yuanToFen(total) !== expectedTotal) {
    throw new CheckFailed(`the cart total ${applePrice} + 2 × ${honeyPrice} = ¥${(expectedTotal / 100).toFixed(2)}`, JSON.stringify(total));
  }
  step(`cart: two village groups (${villages.join(' | ')}), total ${total}`);

  // Checkout, with the first PlaceOrder's answer lost on its way back.
  await byTestId(page, 'to-checkout').click();
  await byTestId(page, 'ship-recipient').waitFor({ timeout: 10_000 });
  await fillShipTo(page, { recipient: 'Zhang Wei', phone: '+86 138 0000 0000', province: 'Zhejiang', county: 'Xihu', street: '1 Wensan Road' });
  let placeCalls = 0;
  let firstCall = '';
  await page.route(
    (url) => url.origin === ordersOrigin && url.pathname.endsWith('/harvest.orders.v1.OrdersService/PlaceOrder'),
    async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      placeCalls += 1;
      if (placeCalls > 1) return route.continue();
      try {
        const response = await route.fetch();
        firstCall = `HTTP ${response.status()}, grpc-status ${response.headers()['grpc-status'] ?? '(in trailer)'}`;
      } catch (error) {
        firstCall = `not answered: ${error.message}`;
      }
      await route.abort('connectionreset');
    },
  );
  step('ship-to filled (Zhejiang); the first PlaceOrder answer will be lost');
  await byTestId(page, 'place-order').click();
  const error = await until(
    page,
    'the could-not-confirm message after the lost answer',
    async () => {
      const text = await textOf(byTestId(page, 'checkout-error'));
      return /could not confirm your order/i.test(text) && /not be placed twice/i.test(text) && text;
    },
    30_000,
  );
  step(`the page says: "${error}" (the server got the call: ${firstCall || 'no answer recorded'})`);

  await page.reload({ waitUntil: 'load' });
  await byTestId(page, 'place-order').waitFor({ timeout: 15_000 });
  const pendingNote = await textOf(byTestId(page, 'checkout-pending'));
  step(`reloaded checkout${pendingNote ? `: "${pendingNote}"` : ''}`);
  const province = await byTestId(page, 'ship-province').inputValue();
  if (province !== 'Zhejiang') throw new CheckFailed('the ship-to province still Zhejiang after the reload', JSON.stringify(province));
  await byTestId(page, 'place-order').click();
  const orderId = await openedOrder(page, 'the buyer');
  if (placeCalls !== 2) throw new CheckFailed('exactly two PlaceOrder calls (the lost one and the retry)', `${placeCalls} calls`);
  step(`placed again: order ${orderId} opened`);

  // The order page at once: a step and the delivery code.
  const firstState = await orderState(page);
  if (!STEPS.includes(firstState)) throw new CheckFailed('the order at PLACED or a later step', await shown(page));
  const code = await textOf(byTestId(page, 'delivery-code'));
  if (!/^\d{6}$/.test(code)) throw new CheckFailed('a six-digit delivery code', JSON.stringify(code));
  step(`order page: ${firstState}, delivery code ${code}`);

  // My orders: the retry returned the same order.
  await byTestId(page, 'nav-orders').click();
  await until(page, 'My orders listing the order', async () => (await byTestId(page, 'order-row').count()) > 0 || (await byTestId(page, 'orders-empty').count()) > 0);
  const rows = byTestId(page, 'order-row');
  const ids = await rows.evaluateAll((els) => els.map((el) => el.getAttribute('data-order-id')));
  if (ids.length !== 1 || ids[0] !== orderId) throw new CheckFailed(`exactly one order, ${orderId}, in My orders`, `${JSON.stringify(ids)}: ${await shown(page)}`);
  step(`My orders lists exactly one order (${orderId}): the retry returned the same order`);

  // Follow it to the door.
  await rows.first().locator('a').click();
  await openedOrder(page, 'the buyer');
  const transit = await until(page, 'the order to reach IN_TRANSIT, with its time', () => stepTime(page, 'IN_TRANSIT'), 120_000);
  step(`IN_TRANSIT at ${transit}`);
  await until(page, 'the order to be DELIVERED', async () => (await orderState(page)) === 'DELIVERED', 120_000);
  const times = [];
  for (const state of STEPS) {
    const at = await stepTime(page, state);
    if (!at) throw new CheckFailed(`a time shown for the ${state} step of a delivered order`, await shown(page));
    times.push(`${state} ${at}`);
  }
  const charged = await textOf(byTestId(page, 'order-charged'));
  if (!PRICE.test(charged)) throw new CheckFailed('the charged amount of the delivered order', JSON.stringify(charged));
  step(`DELIVERED, charged ${charged}; ${times.join(', ')}`);
  if (args.screenshot) {
    await page.screenshot({ path: args.screenshot, fullPage: true });
    step(`screenshot saved to ${args.screenshot}`);
  }
  return page;
}

/** Finds the product in Hainan's produce; returns its card and name. */
async function findProduct(page, productId, label) {
  await productsLoaded(page, 'unfiltered');
  await filter(page, { province: 'Hainan' }, 'of Hainan');
  const card = page.locator(`[data-testid="product-card"][data-product-id="${productId}"]`);
  await until(page, `${label} to find product ${productId} among Hainan's produce`, async () => (await card.count()) === 1);
  return { card, name: await textOf(byTestId(card, 'product-name')), available: await textOf(byTestId(card, 'product-available')) };
}

async function addTwoAndCheckOut(page, productId, label) {
  const { card, name, available } = await findProduct(page, productId, label);
  if (label === 'buyer A' && available !== '3 available') {
    throw new CheckFailed(`"${name}" with exactly 3 available (a fresh product is needed for each run)`, JSON.stringify(available));
  }
  await byTestId(card, 'qty-more').click();
  await byTestId(card, 'add-to-cart').click();
  await until(page, `${label}'s cart count at 2`, async () => (await textOf(byTestId(page, 'cart-count'))) === '2');
  await byTestId(page, 'nav-cart').click();
  await byTestId(page, 'to-checkout').click();
  await byTestId(page, 'ship-recipient').waitFor({ timeout: 10_000 });
  await fillShipTo(page, {
    recipient: label === 'buyer A' ? 'Li Na' : 'Wang Fang',
    phone: '+86 139 0000 0000',
    province: 'Zhejiang',
    county: 'Xihu',
    street: '2 Wensan Road',
  });
  return name;
}

async function soldOutScenario(browser) {
  const productId = args.product;
  const a = await newBuyer(browser, 'buyer A');
  const b = await newBuyer(browser, 'buyer B');

  const name = await addTwoAndCheckOut(a.page, productId, 'buyer A');
  step(`buyer A: "${name}" ×2 in the cart, checkout filled in, not placed yet`);

  await addTwoAndCheckOut(b.page, productId, 'buyer B');
  await byTestId(b.page, 'place-order').click();
  const bOrder = await openedOrder(b.page, 'buyer B');
  const bState = await until(
    b.page,
    "buyer B's order at RESERVED or later",
    async () => {
      const state = await orderState(b.page);
      if (state === 'CANCELLED') throw new CheckFailed("buyer B's order reserved", await shown(b.page));
      return LATER_THAN_PLACED.includes(state) && state;
    },
    60_000,
  );
  step(`buyer B placed ${bOrder} for 2 and it is ${bState}`);

  await byTestId(a.page, 'place-order').click();
  const aOrder = await openedOrder(a.page, 'buyer A');
  step(`buyer A placed ${aOrder}`);
  await until(
    a.page,
    "buyer A's order to end CANCELLED",
    async () => {
      const state = await orderState(a.page);
      if (state === 'DELIVERED' || state === 'IN_TRANSIT') throw new CheckFailed("buyer A's order cancelled for lack of stock", await shown(a.page));
      return state === 'CANCELLED';
    },
    60_000,
  );
  const panel = byTestId(a.page, 'order-cancelled');
  const reason = await panel.getAttribute('data-reason');
  const ranOut = await textOf(byTestId(panel, 'stock-ran-out'));
  if (reason !== 'OUT_OF_STOCK' || !/stock ran out/i.test(ranOut)) {
    throw new CheckFailed('the cancellation explained as stock running out while checking out', await shown(a.page));
  }
  const line = await until(a.page, `the product named with "1 available now"`, async () => {
    const text = await textOf(panel.locator(`[data-testid="stock-line"][data-product-id="${productId}"]`));
    return text.includes(name) && /\b1 available now\b/.test(text) && text;
  });
  const charged = await textOf(byTestId(panel, 'nothing-charged'));
  if (!/nothing was charged/i.test(charged)) throw new CheckFailed('"Nothing was charged"', await shown(a.page));
  step(`buyer A's order is CANCELLED: "${ranOut}" "${line}" "${charged}"`);
  if (args.screenshot) {
    await a.page.screenshot({ path: args.screenshot, fullPage: true });
    step(`screenshot saved to ${args.screenshot}`);
  }
  return a.page;
}

const browser = await launchChromium();
let passed = false;
try {
  if (args.scenario === 'order') await orderScenario(browser);
  else await soldOutScenario(browser);
  passed = true;
  console.log(`PASS: scenario ${args.scenario}`);
} catch (error) {
  console.error(`FAIL: scenario ${args.scenario}: ${error instanceof CheckFailed ? error.message : error.stack ?? error}`);
  if (args.screenshot) {
    const pages = browser.contexts().flatMap((context) => context.pages());
    for (const [index, page] of pages.entries()) {
      const failed = args.screenshot.replace(/(\.png)?$/, `-failed-${index + 1}.png`);
      await page.screenshot({ path: failed, fullPage: true }).catch(() => {});
      console.error(`a page at the failure: ${failed}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(passed ? 0 : 1);
