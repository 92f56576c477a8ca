// The header on every page: the shop's name, the signed-in buyer, the
// links to the shop, the cart (with its count) and the buyer's orders, and
// the language toggle.

import { currentSession, signOut } from "../api.js";
import { cartCount } from "../cart.js";
import { h, replace } from "../dom.js";
import { getLang, LANG_NAMES, setLang, t, type Lang } from "../i18n.js";

export function paintHeader(header: HTMLElement, path: string): void {
  const session = currentSession();
  const count = cartCount();
  const lang = getLang();
  const section = path.split("/")[1] ?? "";
  const link = (href: string, active: boolean, testid: string, ...label: (string | Node)[]) =>
    h("a", { href, class: active ? "nav-link active" : "nav-link", "aria-current": active ? "page" : null, testid }, ...label);
  const langButton = (value: Lang) =>
    h(
      "button",
      {
        type: "button",
        class: "lang-option",
        lang: value === "zh" ? "zh-CN" : "en",
        "aria-pressed": String(lang === value),
        testid: `lang-${value}`,
        onclick: () => setLang(value),
      },
      LANG_NAMES[value],
    );

  replace(
    header,
    h(
      "div",
      { class: "header-top" },
      h("a", { href: "#/", class: "brand", testid: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), t("brand")),
      h("div", { class: "lang-toggle", role: "group", "aria-label": "Language / 语言", testid: "lang-toggle" }, langButton("zh"), langButton("en")),
    ),
    session &&
      h(
        "div",
        { class: "header-session" },
        h("span", { class: "buyer", testid: "buyer-id" }, t("buyer", { id: session.buyer })),
        h("button", { type: "button", class: "link-button", testid: "sign-out", onclick: () => signOut() }, t("sign_out")),
      ),
    session &&
      h(
        "nav",
        { class: "nav" },
        link("#/", section === "" || section === "products", "nav-shop", t("nav_shop")),
        link(
          "#/cart",
          section === "cart" || section === "checkout",
          "nav-cart",
          t("nav_cart"),
          " ",
          h("span", { class: count ? "badge" : "badge empty", testid: "cart-count" }, count),
        ),
        link("#/orders", section === "orders", "nav-orders", t("nav_orders")),
      ),
  );
}
