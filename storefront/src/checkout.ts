// Placing an order exactly once.
//
// A checkout gets its idempotency key when it begins. The key is kept in
// localStorage ("harvest.checkout") together with the exact PlaceOrder
// request it was sent with, so a retry after a failed or unanswered call, or
// after a reload, sends the same key with the same request and the orders
// service answers with the same order instead of placing a second one. When
// the cart or the address changes, the request is a different one, and it
// gets a new key. The pending checkout is cleared once an order is placed.

import { create, fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { authed, classify, getConfig, orders } from "./api.js";
import { clearCart, type CartLine } from "./cart.js";
import { AddressSchema, type Address } from "./gen/harvest/common/v1/common_pb.js";
import { PlaceOrderRequestSchema, type Order, type PlaceOrderRequest } from "./gen/harvest/orders/v1/orders_pb.js";
import { load, remove, save } from "./store.js";

/** The sandbox payment method: a test card that is always approved. */
export const TEST_CARD = "approve";

export interface ShipTo {
  recipient: string;
  phone: string;
  province: string;
  county: string;
  street: string;
}

interface Pending {
  key: string;
  /** The request sent (or about to be) with `key`, as protobuf JSON; empty before the first attempt. */
  request: string;
  /** Whether a PlaceOrder call with this key may have placed an order the page never heard of. */
  attempted: boolean;
}

const PENDING_KEY = "checkout";
const ADDRESS_KEY = "address";

function pending(): Pending | undefined {
  const kept = load<Pending>(PENDING_KEY);
  return kept && typeof kept.key === "string" && kept.key ? kept : undefined;
}

/** Starts a checkout, or resumes the one under way. */
export function beginCheckout(): void {
  if (!pending()) save(PENDING_KEY, { key: crypto.randomUUID(), request: "", attempted: false } satisfies Pending);
}

/** Whether an earlier attempt of this checkout may have reached the orders service unanswered. */
export function hadUnconfirmedAttempt(): boolean {
  return pending()?.attempted ?? false;
}

/** The ship-to of the pending attempt, else the one last typed in. */
export function savedShipTo(): ShipTo {
  const kept = pending();
  if (kept?.request) {
    try {
      const request = fromJsonString(PlaceOrderRequestSchema, kept.request);
      if (request.shipTo) return fromAddress(request.shipTo);
    } catch {
      // An unreadable request: fall back to the draft.
    }
  }
  const draft = load<Partial<ShipTo>>(ADDRESS_KEY) ?? {};
  return {
    recipient: draft.recipient ?? "",
    phone: draft.phone ?? "",
    province: draft.province ?? "",
    county: draft.county ?? "",
    street: draft.street ?? "",
  };
}

export function saveShipToDraft(shipTo: ShipTo): void {
  save(ADDRESS_KEY, shipTo);
}

function fromAddress(address: Address): ShipTo {
  const { recipient, phone, province, county, street } = address;
  return { recipient, phone, province, county, street };
}

/** The region a ship-to province's orders flow through, per the deployment's settings. */
export function regionOf(province: string): string | undefined {
  return getConfig().provinces.find((p) => p.name === province)?.region;
}

function buildRequest(buyer: string, lines: CartLine[], shipTo: ShipTo): PlaceOrderRequest {
  return create(PlaceOrderRequestSchema, {
    buyerId: buyer,
    region: regionOf(shipTo.province) ?? "",
    shipTo: create(AddressSchema, {
      recipient: shipTo.recipient.trim(),
      phone: shipTo.phone.trim(),
      province: shipTo.province,
      county: shipTo.county.trim(),
      street: shipTo.street.trim(),
    }),
    lines: lines.map((line) => ({ productId: line.productId, quantity: BigInt(line.quantity) })),
    paymentMethod: TEST_CARD,
  });
}

/** The request as JSON without its key: equal for the same cart, address and buyer. */
function fingerprint(request: PlaceOrderRequest): string {
  const key = request.idempotencyKey;
  request.idempotencyKey = "";
  const json = toJsonString(PlaceOrderRequestSchema, request);
  request.idempotencyKey = key;
  return json;
}

/**
 * The request to send for this cart and address, with the checkout's key:
 * the kept one when the request is the one already tried (or none was yet),
 * a new one when the cart or the address changed since.
 */
function prepare(buyer: string, lines: CartLine[], shipTo: ShipTo): PlaceOrderRequest {
  const request = buildRequest(buyer, lines, shipTo);
  const kept = pending();
  let key = kept?.key ?? crypto.randomUUID();
  if (kept?.request) {
    const previous = fromJsonString(PlaceOrderRequestSchema, kept.request);
    if (fingerprint(previous) !== fingerprint(request)) key = crypto.randomUUID();
  }
  request.idempotencyKey = key;
  save(PENDING_KEY, {
    key,
    request: toJsonString(PlaceOrderRequestSchema, request),
    attempted: true,
  } satisfies Pending);
  return request;
}

/**
 * Places the order of this cart. On success the cart and the pending
 * checkout are cleared; on failure they stay, so that trying again sends the
 * same key.
 */
export async function placeOrder(buyer: string, lines: CartLine[], shipTo: ShipTo): Promise<Order> {
  saveShipToDraft(shipTo);
  const request = prepare(buyer, lines, shipTo);
  let order: Order;
  try {
    order = await authed(() => orders().placeOrder(request, { timeoutMs: 20_000 }));
  } catch (error) {
    // A refusal was an answer: no order was placed with the key.
    const kept = pending();
    if (kept && classify(error).kind !== "network") save(PENDING_KEY, { ...kept, attempted: false } satisfies Pending);
    throw error;
  }
  remove(PENDING_KEY);
  clearCart();
  return order;
}

/**
 * Forgets the key after the orders service said it belongs to a different
 * request (ALREADY_EXISTS): the next attempt is a new checkout.
 */
export function abandonKey(): void {
  remove(PENDING_KEY);
  beginCheckout();
}
