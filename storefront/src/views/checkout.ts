// Checkout: where the order goes, how it is paid (the sandbox's test card),
// and placing it exactly once (see ../checkout.ts).

import { classify, currentSession, getConfig, renewSession, type ErrorKind } from "../api.js";
import { cartGroups, cartLines, cartTotalFen, lineTotalFen, onCartChange } from "../cart.js";
import { abandonKey, beginCheckout, hadUnconfirmedAttempt, placeOrder, savedShipTo, saveShipToDraft, type ShipTo } from "../checkout.js";
import { h, replace, type View } from "../dom.js";
import { formatFen, getLang, t, type Key } from "../i18n.js";
import { groupHeading } from "./cart.js";

const ERROR_TEXT: Record<ErrorKind, Key> = {
  network: "err_network",
  invalid: "err_invalid",
  exists: "err_exists",
  unauthenticated: "err_unauthenticated",
  exhausted: "err_exhausted",
  not_found: "err_generic",
  other: "err_generic",
};

export function checkoutView(root: HTMLElement): View {
  beginCheckout();
  const shipTo: ShipTo = savedShipTo();
  let busy = false;
  let disposed = false;
  let error: { kind: ErrorKind | "form"; message: string } | undefined;

  async function place(): Promise<void> {
    const session = currentSession();
    if (!session || busy) return;
    if (!shipTo.recipient.trim() || !shipTo.phone.trim() || !shipTo.province || !shipTo.county.trim() || !shipTo.street.trim()) {
      error = { kind: "form", message: "" };
      paint();
      return;
    }
    busy = true;
    error = undefined;
    paint();
    try {
      const order = await placeOrder(session.buyer, cartLines(), shipTo);
      if (!disposed) location.hash = `#/orders/${encodeURIComponent(order.orderId)}`;
      return;
    } catch (e) {
      error = classify(e);
      if (error.kind === "exists") abandonKey();
    }
    busy = false;
    if (!disposed) paint();
  }

  function errorText(): string {
    if (!error) return "";
    if (error.kind === "form") return t("fill_all_fields");
    return t(ERROR_TEXT[error.kind], { message: error.message });
  }

  function field(name: keyof ShipTo, label: Key, attrs: Record<string, string>): HTMLElement {
    const input = h("input", {
      name,
      value: shipTo[name],
      required: true,
      testid: `ship-${name}`,
      oninput: () => {
        shipTo[name] = input.value;
        saveShipToDraft(shipTo);
      },
      ...attrs,
    });
    return h("label", { class: "field" }, h("span", null, t(label)), input);
  }

  function provinceField(): HTMLElement {
    const zh = getLang() === "zh";
    const select = h(
      "select",
      {
        name: "province",
        required: true,
        testid: "ship-province",
        autocomplete: "address-level1",
        onchange: () => {
          shipTo.province = select.value;
          saveShipToDraft(shipTo);
        },
      },
      h("option", { value: "", selected: !shipTo.province }, t("choose_province")),
      getConfig().provinces.map((p) =>
        h("option", { value: p.name, selected: p.name === shipTo.province }, zh && p.name_zh ? p.name_zh : p.name),
      ),
    );
    return h("label", { class: "field" }, h("span", null, t("province")), select);
  }

  function paint(): void {
    const lines = cartLines();
    if (lines.length === 0) {
      replace(
        root,
        h("h1", { class: "page-title" }, t("checkout_title")),
        h("section", { class: "panel empty", testid: "cart-empty" }, h("p", null, t("cart_empty")), h("a", { href: "#/", class: "button primary" }, t("go_shopping"))),
      );
      return;
    }
    const pendingNote = !busy && !error && hadUnconfirmedAttempt();
    replace(
      root,
      h("h1", { class: "page-title" }, t("checkout_title")),
      h(
        "form",
        {
          class: "checkout",
          testid: "checkout-form",
          novalidate: true,
          onsubmit: (e: Event) => {
            e.preventDefault();
            void place();
          },
        },
        h(
          "fieldset",
          { class: "panel", disabled: busy },
          h("legend", null, t("ship_to")),
          field("recipient", "recipient", { autocomplete: "name" }),
          field("phone", "phone", { type: "tel", autocomplete: "tel", inputmode: "tel" }),
          provinceField(),
          field("county", "county", { autocomplete: "address-level2" }),
          field("street", "street", { autocomplete: "street-address" }),
        ),
        h(
          "fieldset",
          { class: "panel", disabled: busy },
          h("legend", null, t("payment")),
          h(
            "label",
            { class: "choice" },
            h("input", { type: "radio", name: "payment", value: "approve", checked: true, testid: "payment-test-card" }),
            h("span", null, h("strong", null, t("test_card")), h("br"), h("span", { class: "muted small" }, t("test_card_note"))),
          ),
        ),
        h(
          "section",
          { class: "panel summary", testid: "checkout-summary" },
          h("h2", null, t("order_summary")),
          cartGroups(lines).map((group) =>
            h(
              "div",
              { class: "group" },
              groupHeading(group),
              h(
                "ul",
                { class: "lines compact" },
                group.lines.map((line) =>
                  h("li", { class: "line" }, h("span", null, `${line.name} × ${line.quantity}`), h("span", null, formatFen(lineTotalFen(line)))),
                ),
              ),
            ),
          ),
          h("p", { class: "grand-total" }, h("span", null, t("grand_total")), h("strong", { testid: "checkout-total" }, formatFen(cartTotalFen(lines)))),
        ),
        pendingNote && h("p", { class: "note", role: "status", testid: "checkout-pending" }, t("pending_note")),
        error &&
          h(
            "div",
            { class: "error", role: "alert", testid: "checkout-error", "data-kind": error.kind },
            h("p", null, errorText()),
            error.kind === "unauthenticated" &&
              h(
                "button",
                {
                  type: "button",
                  class: "secondary",
                  testid: "sign-in-again",
                  onclick: () =>
                    void renewSession().then(
                      () => {
                        error = undefined;
                        paint();
                      },
                      (e) => {
                        error = classify(e);
                        paint();
                      },
                    ),
                },
                t("sign_in_again"),
              ),
          ),
        h("button", { type: "submit", class: "primary big", testid: "place-order", disabled: busy }, busy ? t("placing") : t("place_order")),
      ),
    );
  }

  const unsubscribe = onCartChange(() => !busy && paint());
  paint();
  return {
    paint,
    dispose: () => {
      disposed = true;
      unsubscribe();
    },
  };
}
