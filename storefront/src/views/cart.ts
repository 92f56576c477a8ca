// The cart: lines grouped by the village they ship from, quantities to
// change or remove, line totals and the grand total.

import { cartGroups, cartLines, cartTotalFen, lineTotalFen, onCartChange, removeLine, setQuantity, type CartGroup } from "../cart.js";
import { h, replace, type View } from "../dom.js";
import { formatFen, originLabel, t, unitLabel } from "../i18n.js";

/** A village's heading: "From Fengqi, Luochuan, Shaanxi" and the seller. */
export function groupHeading(group: CartGroup): HTMLElement {
  const origin = originLabel(group);
  return h(
    "header",
    { class: "group-head" },
    h("h2", { testid: "cart-group-village" }, t("from_village", { origin })),
    h("p", { class: "muted" }, group.sellerName),
  );
}

export function cartView(root: HTMLElement): View {
  function paint(): void {
    const lines = cartLines();
    if (lines.length === 0) {
      replace(
        root,
        h("h1", { class: "page-title" }, t("cart_title")),
        h("section", { class: "panel empty", testid: "cart-empty" }, h("p", null, t("cart_empty")), h("a", { href: "#/", class: "button primary" }, t("go_shopping"))),
      );
      return;
    }
    const groups = cartGroups(lines);
    replace(
      root,
      h("h1", { class: "page-title" }, t("cart_title")),
      h("p", { class: "note", testid: "ships-separately" }, t("ships_separately")),
      groups.map((group) =>
        h(
          "section",
          { class: "panel group", testid: "cart-group", "data-key": group.key },
          groupHeading(group),
          h(
            "ul",
            { class: "lines" },
            group.lines.map((line) => {
              const input = h("input", {
                type: "number",
                inputmode: "numeric",
                min: 1,
                value: String(line.quantity),
                class: "qty-input",
                "aria-label": t("quantity"),
                testid: "cart-qty",
                onchange: () => setQuantity(line.productId, Math.max(1, Number(input.value) || 1)),
              });
              return h(
                "li",
                { class: "line", testid: "cart-line", "data-product-id": line.productId },
                h(
                  "div",
                  { class: "line-main" },
                  h("p", { class: "line-name", testid: "cart-line-name" }, line.name),
                  h("p", { class: "muted" }, formatFen(BigInt(line.priceFen)), " ", t("per_unit", { unit: unitLabel(line.unit) })),
                ),
                h(
                  "div",
                  { class: "line-controls" },
                  h(
                    "div",
                    { class: "stepper" },
                    h("button", { type: "button", class: "qty-step", "aria-label": t("qty_less"), testid: "cart-qty-less", disabled: line.quantity <= 1, onclick: () => setQuantity(line.productId, line.quantity - 1) }, "−"),
                    input,
                    h("button", { type: "button", class: "qty-step", "aria-label": t("qty_more"), testid: "cart-qty-more", onclick: () => setQuantity(line.productId, line.quantity + 1) }, "+"),
                  ),
                  h("span", { class: "line-total", testid: "cart-line-total" }, formatFen(lineTotalFen(line))),
                  h("button", { type: "button", class: "link-button remove", testid: "cart-remove", onclick: () => removeLine(line.productId) }, t("remove")),
                ),
              );
            }),
          ),
          h("p", { class: "subtotal" }, h("span", null, t("subtotal")), h("span", { testid: "cart-group-subtotal" }, formatFen(group.subtotalFen))),
        ),
      ),
      h(
        "section",
        { class: "panel totals" },
        h("p", { class: "grand-total" }, h("span", null, t("grand_total")), h("strong", { testid: "cart-total" }, formatFen(cartTotalFen(lines)))),
        h("p", { class: "muted small" }, t("prices_note")),
        h("a", { href: "#/checkout", class: "button primary big", testid: "to-checkout" }, t("to_checkout")),
      ),
    );
  }

  const unsubscribe = onCartChange(paint);
  paint();
  return { paint, dispose: unsubscribe };
}
