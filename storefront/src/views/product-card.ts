// One product as the shop shows it: name, seller and village, price per
// unit, what is left and until when it keeps, a quantity stepper and "add
// to cart".

import { addToCart } from "../cart.js";
import { h } from "../dom.js";
import type { Product } from "../gen/harvest/catalog/v1/catalog_pb.js";
import { categoryLabel, formatDate, formatFen, originLabel, sellerKindLabel, t, unitLabel } from "../i18n.js";

/** Units a buyer can order now; undefined when the catalog did not say. */
export function availableUnits(product: Product): number | undefined {
  const available = product.availability?.available;
  return available === undefined ? undefined : Number(available);
}

export function productCard(product: Product, quantities: Map<string, number>): HTMLElement {
  const available = availableUnits(product);
  const soldOut = available !== undefined && available <= 0;
  const max = Math.max(1, Math.min(available ?? 999, 999));
  const clamp = (n: number) => Math.min(max, Math.max(1, Math.floor(Number.isFinite(n) ? n : 1)));
  let quantity = clamp(quantities.get(product.productId) ?? 1);

  const input = h("input", {
    type: "number",
    inputmode: "numeric",
    min: 1,
    max,
    value: String(quantity),
    class: "qty-input",
    "aria-label": t("quantity"),
    testid: "qty-input",
    disabled: soldOut,
    onchange: () => set(Number(input.value)),
  });
  const less = h("button", { type: "button", class: "qty-step", "aria-label": t("qty_less"), testid: "qty-less", disabled: soldOut, onclick: () => set(quantity - 1) }, "−");
  const more = h("button", { type: "button", class: "qty-step", "aria-label": t("qty_more"), testid: "qty-more", disabled: soldOut, onclick: () => set(quantity + 1) }, "+");
  function set(n: number): void {
    quantity = clamp(n);
    quantities.set(product.productId, quantity);
    input.value = String(quantity);
    less.disabled = soldOut || quantity <= 1;
    more.disabled = soldOut || quantity >= max;
  }
  set(quantity);

  const add = h(
    "button",
    {
      type: "button",
      class: "primary add",
      testid: "add-to-cart",
      disabled: soldOut,
      onclick: () => {
        addToCart(product, quantity);
        add.textContent = t("added_to_cart");
        add.classList.add("added");
        setTimeout(() => {
          add.textContent = t("add_to_cart");
          add.classList.remove("added");
        }, 1500);
      },
    },
    t("add_to_cart"),
  );

  const seller = product.seller;
  const bestBefore = product.availability?.bestBefore;
  return h(
    "li",
    { class: soldOut ? "card sold-out" : "card", testid: "product-card", "data-product-id": product.productId },
    h(
      "div",
      { class: "card-head" },
      h("span", { class: "chip", testid: "product-category" }, categoryLabel(product.category)),
      product.coldChain && h("span", { class: "chip cold" }, t("cold_chain")),
    ),
    h("h2", { class: "card-title" }, h("a", { href: `#/products/${encodeURIComponent(product.productId)}`, testid: "product-name" }, product.name)),
    h(
      "p",
      { class: "seller", testid: "product-seller" },
      seller?.name ?? "",
      seller && sellerKindLabel(seller.kind) && h("span", { class: "muted" }, ` · ${sellerKindLabel(seller.kind)}`),
    ),
    h("p", { class: "origin", testid: "product-origin" }, originLabel(seller?.origin)),
    h(
      "p",
      { class: "price-row" },
      h("span", { class: "price", testid: "product-price" }, formatFen(product.priceFen)),
      " ",
      h("span", { class: "muted" }, t("per_unit", { unit: unitLabel(product.unit) })),
    ),
    h(
      "p",
      { class: "stock" },
      available !== undefined &&
        h("span", { class: soldOut ? "stock-out" : "stock-left", testid: "product-available" }, soldOut ? t("sold_out") : t("available_n", { n: available })),
      bestBefore && h("span", { class: "best-before", testid: "product-best-before" }, t("best_before", { date: formatDate(bestBefore) })),
    ),
    h("div", { class: "buy" }, h("div", { class: "stepper" }, less, input, more), add),
  );
}
