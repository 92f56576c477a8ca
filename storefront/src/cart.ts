// The cart, kept in localStorage: one line per product, with what the cart
// page shows of it (name, price, seller and village) as listed when added.

import type { Product } from "./gen/harvest/catalog/v1/catalog_pb.js";
import { load, onStoredChange, remove, save } from "./store.js";

export interface CartLine {
  productId: string;
  quantity: number;
  name: string;
  /** Price per unit in fen, as a decimal string (JSON has no 64-bit integers). */
  priceFen: string;
  unit: number;
  sellerId: string;
  sellerName: string;
  village: string;
  county: string;
  province: string;
  /** Where the goods are collected: each collection point ships separately. */
  pickupPointId: string;
}

/** Lines that ship together: those collected at one point of one seller. */
export interface CartGroup {
  key: string;
  sellerName: string;
  village: string;
  county: string;
  province: string;
  lines: CartLine[];
  subtotalFen: bigint;
}

const CART_KEY = "cart";
const listeners = new Set<() => void>();
onStoredChange(CART_KEY, () => listeners.forEach((listener) => listener()));

export function cartLines(): CartLine[] {
  const lines = load<CartLine[]>(CART_KEY);
  return Array.isArray(lines) ? lines.filter((line) => line && line.quantity > 0) : [];
}

function store(lines: CartLine[]): void {
  if (lines.length) save(CART_KEY, lines);
  else remove(CART_KEY);
  listeners.forEach((listener) => listener());
}

export function onCartChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function cartCount(): number {
  return cartLines().reduce((sum, line) => sum + line.quantity, 0);
}

/**
 * Adds `quantity` units of a product, up to what the catalog said is
 * available (when it said).
 */
export function addToCart(product: Product, quantity: number): void {
  const lines = cartLines();
  const existing = lines.find((line) => line.productId === product.productId);
  const seller = product.seller;
  const available = product.availability ? Number(product.availability.available) : Infinity;
  const snapshot: CartLine = {
    productId: product.productId,
    quantity: Math.max(1, Math.min((existing?.quantity ?? 0) + quantity, available)),
    name: product.name,
    priceFen: product.priceFen.toString(),
    unit: product.unit,
    sellerId: seller?.sellerId ?? "",
    sellerName: seller?.name ?? "",
    village: seller?.origin?.village ?? "",
    county: seller?.origin?.county ?? "",
    province: seller?.origin?.province ?? "",
    pickupPointId: product.collectionPoint?.pickupPointId || seller?.sellerId || product.productId,
  };
  if (existing) Object.assign(existing, snapshot);
  else lines.push(snapshot);
  store(lines);
}

export function setQuantity(productId: string, quantity: number): void {
  const lines = cartLines();
  const line = lines.find((l) => l.productId === productId);
  if (!line) return;
  line.quantity = Math.max(0, Math.floor(quantity));
  store(lines.filter((l) => l.quantity > 0));
}

export function removeLine(productId: string): void {
  store(cartLines().filter((line) => line.productId !== productId));
}

export function clearCart(): void {
  store([]);
}

export function lineTotalFen(line: CartLine): bigint {
  return BigInt(line.priceFen) * BigInt(line.quantity);
}

export function cartTotalFen(lines: CartLine[] = cartLines()): bigint {
  return lines.reduce((sum, line) => sum + lineTotalFen(line), 0n);
}

/** The cart's lines by collection point, in the order they were first added. */
export function cartGroups(lines: CartLine[] = cartLines()): CartGroup[] {
  const groups = new Map<string, CartGroup>();
  for (const line of lines) {
    let group = groups.get(line.pickupPointId);
    if (!group) {
      group = {
        key: line.pickupPointId,
        sellerName: line.sellerName,
        village: line.village,
        county: line.county,
        province: line.province,
        lines: [],
        subtotalFen: 0n,
      };
      groups.set(line.pickupPointId, group);
    }
    group.lines.push(line);
    group.subtotalFen += lineTotalFen(line);
  }
  return [...groups.values()];
}
