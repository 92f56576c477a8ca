// Harvest's storefront: loads the deployment's settings, then routes on the
// URL's hash:
//
//   #/                  browse the catalog (?province=…&category=…)
//   #/products/<id>     one product
//   #/cart              the cart
//   #/checkout          ship-to, payment, place the order
//   #/orders            the buyer's orders
//   #/orders/<id>       one order, followed live
//
// Every page needs a signed-in demo buyer; until there is one, the sign-in
// page stands in for the page asked for.

import { currentSession, loadConfig, onSessionChange } from "./api.js";
import { onCartChange } from "./cart.js";
import { h, replace, type View } from "./dom.js";
import { applyDocumentLang, onLangChange, t } from "./i18n.js";
import { browseView, productView } from "./views/browse.js";
import { cartView } from "./views/cart.js";
import { checkoutView } from "./views/checkout.js";
import { paintHeader } from "./views/header.js";
import { orderView } from "./views/order.js";
import { ordersView } from "./views/orders.js";
import { signInView } from "./views/signin.js";

const header = document.getElementById("header") as HTMLElement;
const main = document.getElementById("main") as HTMLElement;
let current: View | undefined;
let ready = false;
let configFailed = false;
/** The buyer the current page was drawn for. */
let shownBuyer: string | undefined;

function parseHash(): { path: string; query: URLSearchParams } {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = raw.split("?", 2);
  return { path: path.startsWith("/") ? path : `/${path}`, query: new URLSearchParams(query) };
}

function mount(path: string, query: URLSearchParams): View {
  if (!currentSession()) return signInView(main);
  const parts = path.split("/").filter(Boolean).map(decodePart);
  const [section, id] = parts;
  switch (section) {
    case undefined:
      return browseView(main, query);
    case "products":
      if (id) return productView(main, id);
      break;
    case "cart":
      return cartView(main);
    case "checkout":
      return checkoutView(main);
    case "orders":
      return id ? orderView(main, id) : ordersView(main);
  }
  return notFoundView();
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function notFoundView(): View {
  const paint = () => replace(main, h("p", { class: "panel empty" }, t("not_found"), " ", h("a", { href: "#/" }, t("nav_shop"))));
  paint();
  return { paint, dispose() {} };
}

function route(): void {
  if (!ready) return;
  const { path, query } = parseHash();
  current?.dispose();
  shownBuyer = currentSession()?.buyer;
  paintHeader(header, path);
  current = mount(path, query);
  window.scrollTo(0, 0);
}

async function start(): Promise<void> {
  applyDocumentLang();
  paintHeader(header, "/");
  replace(main, h("p", { class: "muted loading" }, t("loading")));
  onLangChange(() => {
    applyDocumentLang();
    paintHeader(header, parseHash().path);
    if (ready) current?.paint();
    else if (configFailed) showConfigFailed();
    else replace(main, h("p", { class: "muted loading" }, t("loading")));
  });
  try {
    await loadConfig();
  } catch (error) {
    console.error(error);
    configFailed = true;
    showConfigFailed();
    return;
  }
  ready = true;
  window.addEventListener("hashchange", route);
  onCartChange(() => paintHeader(header, parseHash().path));
  // Signing in or out, or as another buyer, changes every page; a renewed
  // token for the same buyer changes none.
  onSessionChange(() => {
    if (currentSession()?.buyer !== shownBuyer) route();
    else paintHeader(header, parseHash().path);
  });
  route();
}

function showConfigFailed(): void {
  replace(main, h("p", { class: "panel error", role: "alert", testid: "config-error" }, t("config_failed")));
}

void start();
