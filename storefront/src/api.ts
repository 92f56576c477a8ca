// How the storefront talks to Harvest: its settings (/config.json), the demo
// buyer's sign-in (/demo/sign-in), both served by the storefront's own
// origin, and the generated gRPC-Web clients of the catalog and orders
// services, which carry the buyer's token.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { CatalogService, type Product } from "./gen/harvest/catalog/v1/catalog_pb.js";
import { OrdersService } from "./gen/harvest/orders/v1/orders_pb.js";
import { learnProvinceNames } from "./i18n.js";
import { load, onStoredChange, remove, save } from "./store.js";

/** A ship-to province this deployment serves, and the region its orders flow through. */
export interface ShipToProvince {
  name: string;
  name_zh: string;
  region: string;
}

/** The deployment's settings, from `/config.json`. */
export interface Config {
  /** Base URLs of the services' gRPC-Web endpoints. */
  catalog: string;
  orders: string;
  payments: string;
  /** Whether the services require a buyer's token. */
  auth: boolean;
  provinces: ShipToProvince[];
}

/** The signed-in demo buyer. */
export interface Session {
  buyer: string;
  /** Empty when the deployment runs without authentication. */
  token: string;
  expiresAtMs: number;
}

let config: Config | undefined;
let catalogClient: Client<typeof CatalogService> | undefined;
let ordersClient: Client<typeof OrdersService> | undefined;

function isString(value: unknown): value is string {
  return typeof value === "string";
}

export async function loadConfig(): Promise<Config> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`/config.json: HTTP ${response.status}`);
  const raw = (await response.json()) as Partial<Config>;
  if (!isString(raw.catalog) || !isString(raw.orders)) throw new Error("/config.json names no catalog or orders URL");
  const provinces = Array.isArray(raw.provinces)
    ? raw.provinces.filter((p): p is ShipToProvince => !!p && isString(p.name) && isString(p.region))
    : [];
  config = {
    catalog: raw.catalog,
    orders: raw.orders,
    payments: isString(raw.payments) ? raw.payments : "",
    auth: raw.auth !== false,
    provinces,
  };
  learnProvinceNames(provinces);
  const transport = (baseUrl: string) => createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  catalogClient = createClient(CatalogService, transport(config.catalog));
  ordersClient = createClient(OrdersService, transport(config.orders));
  return config;
}

export function getConfig(): Config {
  if (!config) throw new Error("settings not loaded");
  return config;
}

export function catalog(): Client<typeof CatalogService> {
  if (!catalogClient) throw new Error("settings not loaded");
  return catalogClient;
}

export function orders(): Client<typeof OrdersService> {
  if (!ordersClient) throw new Error("settings not loaded");
  return ordersClient;
}

// ---- The demo buyer's session -------------------------------------------

const SESSION_KEY = "session";
const sessionListeners = new Set<() => void>();
onStoredChange(SESSION_KEY, () => sessionListeners.forEach((listener) => listener()));

export function currentSession(): Session | undefined {
  const session = load<Session>(SESSION_KEY);
  return session && isString(session.buyer) && session.buyer ? session : undefined;
}

export function onSessionChange(listener: () => void): () => void {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

function setSession(session: Session | undefined): void {
  if (session) save(SESSION_KEY, session);
  else remove(SESSION_KEY);
  sessionListeners.forEach((listener) => listener());
}

/** An error of `/demo/sign-in`, with the message the server gave. */
export class SignInError extends Error {}

/**
 * Signs in as a new demo buyer, or as `buyer` again (a fresh token for the
 * same buyer).
 */
export async function signIn(buyer?: string): Promise<Session> {
  let response: Response;
  try {
    response = await fetch("/demo/sign-in", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(buyer ? { buyer } : {}),
    });
  } catch (error) {
    throw new SignInError(error instanceof Error ? error.message : String(error));
  }
  const body = (await response.json().catch(() => ({}))) as {
    buyer?: unknown;
    token?: unknown;
    expires_at_ms?: unknown;
    error?: unknown;
  };
  if (!response.ok || !isString(body.buyer)) {
    throw new SignInError(isString(body.error) ? body.error : `HTTP ${response.status}`);
  }
  const session: Session = {
    buyer: body.buyer,
    token: isString(body.token) ? body.token : "",
    expiresAtMs: typeof body.expires_at_ms === "number" ? body.expires_at_ms : 0,
  };
  setSession(session);
  return session;
}

export function signOut(): void {
  setSession(undefined);
}

let renewing: Promise<Session> | undefined;

/** A fresh token for the signed-in buyer; concurrent callers share one sign-in. */
export function renewSession(): Promise<Session> {
  const session = currentSession();
  if (!session) return Promise.reject(new SignInError("not signed in"));
  renewing ??= signIn(session.buyer).finally(() => {
    renewing = undefined;
  });
  return renewing;
}

/** Renews the token first when it has expired or is about to (within a minute). */
export async function ensureFreshSession(): Promise<void> {
  const session = currentSession();
  if (!session || !config?.auth) return;
  if (!session.token || session.expiresAtMs - 60_000 < Date.now()) await renewSession();
}

/** Adds the buyer's token to every call, when there is one. */
const bearer: Interceptor = (next) => async (request) => {
  const token = currentSession()?.token;
  if (token) request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

/**
 * Runs a call with a fresh token; when the services answer UNAUTHENTICATED
 * (a token that expired or was revoked), signs the same buyer in again and
 * runs it once more.
 */
export async function authed<T>(call: () => Promise<T>): Promise<T> {
  await ensureFreshSession();
  try {
    return await call();
  } catch (error) {
    if (ConnectError.from(error).code !== Code.Unauthenticated || !currentSession()) throw error;
    await renewSession();
    return await call();
  }
}

// ---- Errors --------------------------------------------------------------

export type ErrorKind =
  | "network"
  | "invalid"
  | "exists"
  | "unauthenticated"
  | "exhausted"
  | "not_found"
  | "other";

/** What went wrong with a call, in the terms the pages explain it in. */
export function classify(error: unknown): { kind: ErrorKind; message: string } {
  if (error instanceof SignInError) return { kind: "unauthenticated", message: error.message };
  const err = ConnectError.from(error);
  const message = err.rawMessage;
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Canceled:
      return { kind: "network", message };
    case Code.Unknown:
      // A fetch that failed (no answer, connection refused, CORS) is a
      // TypeError wrapped as UNKNOWN.
      return { kind: err.cause instanceof TypeError ? "network" : "other", message };
    case Code.InvalidArgument:
      return { kind: "invalid", message };
    case Code.AlreadyExists:
      return { kind: "exists", message };
    case Code.Unauthenticated:
      return { kind: "unauthenticated", message };
    case Code.ResourceExhausted:
      return { kind: "exhausted", message };
    case Code.NotFound:
      return { kind: "not_found", message };
    default:
      return { kind: "other", message };
  }
}

// ---- Products ------------------------------------------------------------

const products = new Map<string, Product>();
const asking = new Map<string, Promise<Product>>();

/** Keeps products just listed, so pages naming them need not ask again. */
export function rememberProducts(list: Iterable<Product>): void {
  for (const product of list) products.set(product.productId, product);
}

/**
 * A product, from what was already seen or, when not seen or `fresh`, from
 * GetProduct (one call at a time per product).
 */
export function productById(productId: string, fresh = false): Promise<Product> {
  const known = products.get(productId);
  if (known && !fresh) return Promise.resolve(known);
  let pending = asking.get(productId);
  if (!pending) {
    pending = authed(() => catalog().getProduct({ productId }))
      .then((product) => {
        products.set(productId, product);
        return product;
      })
      .finally(() => asking.delete(productId));
    asking.set(productId, pending);
  }
  return pending;
}
