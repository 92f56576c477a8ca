// Every piece of text the storefront shows, in English and Chinese, and the
// formatting of money, dates and times for the chosen language. Product,
// seller, village and county names come from the catalog as they are.

import { Category, Unit } from "./gen/harvest/catalog/v1/catalog_pb.js";
import { CancelReason, OrderState, SellerKind } from "./gen/harvest/common/v1/common_pb.js";
import type { Date as ProtoDate, Origin } from "./gen/harvest/common/v1/common_pb.js";
import { load, save } from "./store.js";

export type Lang = "en" | "zh";

const en = {
  title: "Harvest — produce from the villages",
  brand: "Harvest",
  nav_shop: "Shop",
  nav_cart: "Cart",
  nav_orders: "My orders",
  buyer: "Buyer {id}",
  sign_out: "Sign out",
  loading: "Loading…",
  retry: "Try again",
  config_failed: "The storefront could not load its settings. Reload the page to try again.",
  load_failed: "Could not load this page: {message}",
  not_found: "There is nothing here.",

  signin_title: "Welcome to Harvest",
  signin_lead:
    "Fresh produce straight from farmers and village cooperatives. This is a demo shop: sign in as a demo buyer to browse, order and follow your order to your door.",
  signin_button: "Sign in as a demo buyer",
  signin_busy: "Signing in…",
  signin_failed: "Could not sign in: {message}",
  session_expired: "Your sign-in has expired.",
  sign_in_again: "Sign in again",

  browse_title: "Produce",
  filter_province: "Origin",
  filter_province_all: "All provinces",
  provinces_with_produce: "Selling now",
  provinces_other: "Other provinces",
  filter_category: "Category",
  filter_category_all: "All categories",
  no_products: "No products match. Try another province or category.",
  load_more: "More",
  sold_out: "Sold out",
  available_n: "{n} available",
  best_before: "Best before {date}",
  per_unit: "/ {unit}",
  cold_chain: "Cold chain",
  quantity: "Quantity",
  qty_less: "One less",
  qty_more: "One more",
  add_to_cart: "Add to cart",
  added_to_cart: "Added ✓",
  kind_farmer: "Farmer",
  kind_cooperative: "Cooperative",

  cart_title: "Your cart",
  cart_empty: "Your cart is empty.",
  go_shopping: "Browse produce",
  ships_separately: "Each village ships separately: you get one delivery per village, all under one order.",
  remove: "Remove",
  from_village: "From {origin}",
  subtotal: "Subtotal",
  grand_total: "Total",
  prices_note: "Prices as listed now; your order's total is fixed once the goods are reserved.",
  to_checkout: "Check out",

  checkout_title: "Checkout",
  ship_to: "Ship to",
  recipient: "Recipient",
  phone: "Phone",
  province: "Province",
  choose_province: "Choose a province",
  county: "County / district",
  street: "Street address",
  payment: "Payment",
  test_card: "Test card (sandbox)",
  test_card_note: "A demo payment: it is always approved and no real money moves.",
  order_summary: "Your order",
  place_order: "Place order",
  placing: "Placing your order…",
  fill_all_fields: "Please fill in every field of the address.",
  pending_note: "An earlier attempt to place this order was not confirmed. Placing it again is safe: it will not be placed twice.",
  err_network: "We could not confirm your order. Try again — it will not be placed twice.",
  err_invalid: "Please check your order: {message}",
  err_exists: "This checkout was already used for a different order. Review your cart and place the order again.",
  err_unauthenticated: "Your sign-in has expired. Sign in again, then place the order.",
  err_exhausted: "The order is too large. Remove some items and try again. ({message})",
  err_generic: "Something went wrong: {message}",

  order_title: "Order",
  order_live: "Live",
  order_reconnecting: "Reconnecting…",
  order_ended: "Final",
  delivery_code: "Delivery code",
  delivery_code_hint: "Give this to the courier at the door.",
  lines: "Items",
  total: "Total",
  total_pending: "Known once your goods are reserved",
  charged: "Charged",
  cancelled_title: "Order cancelled",
  stock_ran_out: "Stock ran out while you were checking out.",
  limit_reached: "This order would take you above a product's per-buyer limit.",
  available_now: "{n} available now",
  limit_n: "limit {n} per buyer",
  nothing_charged: "Nothing was charged.",
  detail: "Details: {detail}",
  failed_shipment: "A delivery from {point} did not arrive: {reason} Its items are not charged.",
  back_to_orders: "All my orders",
  order_missing: "This order could not be found.",

  orders_title: "My orders",
  orders_empty: "You have no orders yet.",
  n_items: "{n} items",
  placed_at: "Placed {time}",

  state_UNSPECIFIED: "Unknown",
  state_PLACED: "Placed",
  state_RESERVED: "Reserved",
  state_CONFIRMED: "Confirmed",
  state_DISPATCHING: "Courier assigned",
  state_IN_TRANSIT: "In transit",
  state_DELIVERED: "Delivered",
  state_CANCELLED: "Cancelled",

  reason_UNSPECIFIED: "The order was cancelled.",
  reason_OUT_OF_STOCK: "Sold out.",
  reason_UNKNOWN_PRODUCT: "A product of this order is no longer sold.",
  reason_PAYMENT_DECLINED: "The payment was declined.",
  reason_BUYER_CANCELLED: "You cancelled this order.",
  reason_PAYMENT_DEADLINE: "The payment was not confirmed in time.",
  reason_NO_COURIER: "No courier was available to collect the goods.",
  reason_PICKUP_WINDOW_MISSED: "The goods were not collected in time.",
  reason_DELIVERY_FAILED: "The delivery failed.",
  reason_PLACEMENT_DEADLINE: "Your goods could not be reserved in time.",
  reason_TOTAL_TOO_LARGE: "The order costs more than one order may.",
  reason_PER_BUYER_LIMIT: "Per-buyer limit reached.",

  cat_UNSPECIFIED: "Other",
  cat_FRUIT: "Fruit",
  cat_VEGETABLE: "Vegetables",
  cat_NUTS: "Nuts",
  cat_HONEY: "Honey",
  cat_GRAIN: "Grain",
  cat_TEA: "Tea",
  cat_SPICE: "Spices",
  cat_MUSHROOM: "Mushrooms",
  cat_MEAT: "Meat",
  cat_EGGS: "Eggs",
  cat_OTHER: "Other",

  unit_UNSPECIFIED: "unit",
  unit_KILOGRAM: "kg",
  unit_JIN: "jin",
  unit_BOX: "box",
  unit_JAR: "jar",
  unit_BAG: "bag",
  unit_PIECE: "piece",
  unit_BOTTLE: "bottle",
};

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  title: "丰收 — 来自乡村的农产品",
  brand: "丰收",
  nav_shop: "选购",
  nav_cart: "购物车",
  nav_orders: "我的订单",
  buyer: "买家 {id}",
  sign_out: "退出",
  loading: "加载中…",
  retry: "重试",
  config_failed: "商店无法加载设置，请刷新页面重试。",
  load_failed: "页面加载失败：{message}",
  not_found: "这里什么也没有。",

  signin_title: "欢迎来到丰收",
  signin_lead: "农户和村合作社直供的新鲜农产品。这是演示商店：以演示买家身份登录，即可选购、下单并跟踪订单直到送达。",
  signin_button: "以演示买家身份登录",
  signin_busy: "正在登录…",
  signin_failed: "登录失败：{message}",
  session_expired: "登录已过期。",
  sign_in_again: "重新登录",

  browse_title: "农产品",
  filter_province: "产地",
  filter_province_all: "全部省份",
  provinces_with_produce: "在售产地",
  provinces_other: "其他省份",
  filter_category: "品类",
  filter_category_all: "全部品类",
  no_products: "没有符合条件的商品，换个省份或品类试试。",
  load_more: "加载更多",
  sold_out: "已售罄",
  available_n: "尚余 {n}",
  best_before: "最佳食用日期 {date}",
  per_unit: "/ {unit}",
  cold_chain: "冷链",
  quantity: "数量",
  qty_less: "减一",
  qty_more: "加一",
  add_to_cart: "加入购物车",
  added_to_cart: "已加入 ✓",
  kind_farmer: "农户",
  kind_cooperative: "合作社",

  cart_title: "购物车",
  cart_empty: "购物车是空的。",
  go_shopping: "去选购",
  ships_separately: "每个村分别发货：同一订单内，每个村各送一次。",
  remove: "删除",
  from_village: "产自 {origin}",
  subtotal: "小计",
  grand_total: "合计",
  prices_note: "价格为当前标价；货品预留后订单金额即确定。",
  to_checkout: "去结算",

  checkout_title: "结算",
  ship_to: "收货地址",
  recipient: "收货人",
  phone: "电话",
  province: "省份",
  choose_province: "请选择省份",
  county: "区县",
  street: "详细地址",
  payment: "支付方式",
  test_card: "测试卡（沙箱）",
  test_card_note: "演示支付：总是通过，不会产生真实扣款。",
  order_summary: "订单内容",
  place_order: "提交订单",
  placing: "正在提交订单…",
  fill_all_fields: "请填写完整的收货地址。",
  pending_note: "上次提交的订单未能确认。再次提交是安全的：订单不会重复。",
  err_network: "未能确认您的订单。请重试——订单不会重复提交。",
  err_invalid: "请检查订单：{message}",
  err_exists: "此次结算已用于另一个订单。请检查购物车后重新提交。",
  err_unauthenticated: "登录已过期。请重新登录后再提交订单。",
  err_exhausted: "订单过大，请删减一些商品后重试。（{message}）",
  err_generic: "出错了：{message}",

  order_title: "订单",
  order_live: "实时",
  order_reconnecting: "正在重新连接…",
  order_ended: "已结束",
  delivery_code: "收货码",
  delivery_code_hint: "快递员上门时请出示此码。",
  lines: "商品",
  total: "合计",
  total_pending: "货品预留后确定",
  charged: "实付",
  cancelled_title: "订单已取消",
  stock_ran_out: "您结算时库存已售罄。",
  limit_reached: "此订单超出了某件商品的每人限购数量。",
  available_now: "现有 {n}",
  limit_n: "每人限购 {n}",
  nothing_charged: "未扣任何款项。",
  detail: "详情：{detail}",
  failed_shipment: "来自 {point} 的一批货未能送达：{reason}这批商品不收费。",
  back_to_orders: "全部订单",
  order_missing: "找不到此订单。",

  orders_title: "我的订单",
  orders_empty: "您还没有订单。",
  n_items: "{n} 件",
  placed_at: "下单于 {time}",

  state_UNSPECIFIED: "未知",
  state_PLACED: "已下单",
  state_RESERVED: "已备货",
  state_CONFIRMED: "已确认",
  state_DISPATCHING: "已派快递员",
  state_IN_TRANSIT: "配送中",
  state_DELIVERED: "已送达",
  state_CANCELLED: "已取消",

  reason_UNSPECIFIED: "订单已取消。",
  reason_OUT_OF_STOCK: "商品已售罄。",
  reason_UNKNOWN_PRODUCT: "订单中的某件商品已下架。",
  reason_PAYMENT_DECLINED: "支付被拒绝。",
  reason_BUYER_CANCELLED: "您取消了此订单。",
  reason_PAYMENT_DEADLINE: "支付未能及时确认。",
  reason_NO_COURIER: "没有快递员可以揽收。",
  reason_PICKUP_WINDOW_MISSED: "货品未能按时揽收。",
  reason_DELIVERY_FAILED: "配送失败。",
  reason_PLACEMENT_DEADLINE: "未能及时为您预留货品。",
  reason_TOTAL_TOO_LARGE: "订单金额超过单笔订单上限。",
  reason_PER_BUYER_LIMIT: "已达每人限购数量。",

  cat_UNSPECIFIED: "其他",
  cat_FRUIT: "水果",
  cat_VEGETABLE: "蔬菜",
  cat_NUTS: "坚果",
  cat_HONEY: "蜂蜜",
  cat_GRAIN: "粮油",
  cat_TEA: "茶叶",
  cat_SPICE: "调味",
  cat_MUSHROOM: "菌菇",
  cat_MEAT: "肉类",
  cat_EGGS: "禽蛋",
  cat_OTHER: "其他",

  unit_UNSPECIFIED: "件",
  unit_KILOGRAM: "公斤",
  unit_JIN: "斤",
  unit_BOX: "箱",
  unit_JAR: "罐",
  unit_BAG: "袋",
  unit_PIECE: "件",
  unit_BOTTLE: "瓶",
};

const dictionaries: Record<Lang, Record<Key, string>> = { en, zh };

/** Each language's name in itself, as the language toggle shows it. */
export const LANG_NAMES: Record<Lang, string> = { zh: "中文", en: "English" };

const LANG_KEY = "lang";

function initialLang(): Lang {
  const kept = load<string>(LANG_KEY);
  if (kept === "en" || kept === "zh") return kept;
  const preferred = navigator.languages?.[0] ?? navigator.language ?? "en";
  return preferred.toLowerCase().startsWith("zh") ? "zh" : "en";
}

let lang: Lang = initialLang();
const listeners = new Set<() => void>();

export function getLang(): Lang {
  return lang;
}

export function setLang(next: Lang): void {
  if (next === lang) return;
  lang = next;
  save(LANG_KEY, next);
  applyDocumentLang();
  for (const listener of listeners) listener();
}

export function onLangChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function applyDocumentLang(): void {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
}

/** The text of `key` in the current language, with `{name}` placeholders filled in. */
export function t(key: Key, vars?: Record<string, string | number | bigint>): string {
  const text = dictionaries[lang][key];
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => {
    const value = vars[name];
    return value === undefined ? whole : String(value);
  });
}

function enumKey(prefix: string, names: Record<number, string>, value: number): Key {
  const key = `${prefix}${names[value] ?? "UNSPECIFIED"}`;
  return (key in en ? key : `${prefix}UNSPECIFIED`) as Key;
}

export const categoryLabel = (c: Category): string => t(enumKey("cat_", Category, c));
export const unitLabel = (u: Unit): string => t(enumKey("unit_", Unit, u));
export const stateLabel = (s: OrderState): string => t(enumKey("state_", OrderState, s));
export const reasonLabel = (r: CancelReason): string => t(enumKey("reason_", CancelReason, r));
export const sellerKindLabel = (k: SellerKind): string =>
  k === SellerKind.FARMER ? t("kind_farmer") : k === SellerKind.COOPERATIVE ? t("kind_cooperative") : "";

// Every provincial-level division of China, as the catalog spells its
// English name, with its Chinese name.
const PROVINCES: ReadonlyArray<readonly [string, string]> = [
  ["Anhui", "安徽"], ["Beijing", "北京"], ["Chongqing", "重庆"], ["Fujian", "福建"],
  ["Gansu", "甘肃"], ["Guangdong", "广东"], ["Guangxi", "广西"], ["Guizhou", "贵州"],
  ["Hainan", "海南"], ["Hebei", "河北"], ["Heilongjiang", "黑龙江"], ["Henan", "河南"],
  ["Hong Kong", "香港"], ["Hubei", "湖北"], ["Hunan", "湖南"], ["Inner Mongolia", "内蒙古"],
  ["Jiangsu", "江苏"], ["Jiangxi", "江西"], ["Jilin", "吉林"], ["Liaoning", "辽宁"],
  ["Macau", "澳门"], ["Ningxia", "宁夏"], ["Qinghai", "青海"], ["Shaanxi", "陕西"],
  ["Shandong", "山东"], ["Shanghai", "上海"], ["Shanxi", "山西"], ["Sichuan", "四川"],
  ["Taiwan", "台湾"], ["Tianjin", "天津"], ["Tibet", "西藏"], ["Xinjiang", "新疆"],
  ["Yunnan", "云南"], ["Zhejiang", "浙江"],
];
const provinceZh = new Map<string, string>(PROVINCES);

export const ALL_PROVINCES: readonly string[] = PROVINCES.map(([name]) => name);

/** Adds Chinese names of provinces the deployment's settings name. */
export function learnProvinceNames(names: ReadonlyArray<{ name: string; name_zh?: string }>): void {
  for (const { name, name_zh } of names) if (name_zh && !provinceZh.has(name)) provinceZh.set(name, name_zh);
}

export function provinceLabel(name: string): string {
  return lang === "zh" ? provinceZh.get(name) ?? name : name;
}

/** Sorts province names by how they read in the current language. */
export function sortProvinces(names: Iterable<string>): string[] {
  const locale = lang === "zh" ? "zh-CN" : "en";
  return [...names].sort((a, b) => provinceLabel(a).localeCompare(provinceLabel(b), locale));
}

/** "Village, County, Province" in English; largest first in Chinese. */
export function originLabel(origin: Pick<Origin, "village" | "county" | "province"> | undefined): string {
  if (!origin) return "";
  const parts = [origin.village, origin.county, origin.province ? provinceLabel(origin.province) : ""].filter(Boolean);
  return lang === "zh" ? parts.reverse().join(" ") : parts.join(", ");
}

/** An amount of fen as yuan: 1250n → "¥12.50". */
export function formatFen(fen: bigint): string {
  const negative = fen < 0n;
  const abs = negative ? -fen : fen;
  const yuan = (abs / 100n).toLocaleString("en-US");
  const cents = (abs % 100n).toString().padStart(2, "0");
  return `${negative ? "-" : ""}¥${yuan}.${cents}`;
}

function locale(): string {
  return lang === "zh" ? "zh-CN" : "en-GB";
}

/** A calendar date without a time zone. */
export function formatDate(date: ProtoDate): string {
  const at = new Date(Date.UTC(date.year, date.month - 1, date.day));
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC", year: "numeric", month: "short", day: "numeric" }).format(at);
}

/** A moment in local time: the time of day, with the date when not today. */
export function formatTime(at: Date): string {
  const today = new Date();
  const sameDay = at.toDateString() === today.toDateString();
  const options: Intl.DateTimeFormatOptions = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (!sameDay) Object.assign(options, { month: "short", day: "numeric" });
  return new Intl.DateTimeFormat(locale(), options).format(at);
}
