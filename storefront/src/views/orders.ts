// The buyer's orders, newest first, each linking to its page.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { authed, classify, currentSession, orders } from "../api.js";
import { h, problemText, replace, type Problem, type View } from "../dom.js";
import { OrderState } from "../gen/harvest/common/v1/common_pb.js";
import type { Order } from "../gen/harvest/orders/v1/orders_pb.js";
import { formatFen, formatTime, stateLabel, t } from "../i18n.js";

const PAGE_SIZE = 20;

export function ordersView(root: HTMLElement): View {
  const controller = new AbortController();
  let list: Order[] = [];
  let nextPageToken = "";
  let loading = true;
  let error: Problem | undefined;

  async function fetchPage(pageToken: string): Promise<void> {
    const buyerId = currentSession()?.buyer ?? "";
    loading = true;
    error = undefined;
    paint();
    try {
      const page = await authed(() => orders().listOrders({ buyerId, pageSize: PAGE_SIZE, pageToken }, { signal: controller.signal }));
      if (controller.signal.aborted) return;
      list = [...list, ...page.orders];
      nextPageToken = page.nextPageToken;
    } catch (e) {
      if (controller.signal.aborted) return;
      error = { key: "load_failed", message: classify(e).message };
    }
    loading = false;
    paint();
  }

  function row(order: Order): HTMLElement {
    const units = order.lines.reduce((sum, line) => sum + line.quantity, 0n);
    const placed = order.createdAt && timestampDate(order.createdAt);
    const stateName = OrderState[order.state] ?? "";
    return h(
      "li",
      { testid: "order-row", "data-order-id": order.orderId, "data-state": stateName },
      h(
        "a",
        { href: `#/orders/${encodeURIComponent(order.orderId)}`, class: "order-row" },
        h(
          "span",
          { class: "order-row-main" },
          h("strong", null, placed ? t("placed_at", { time: formatTime(placed) }) : order.orderId, " · ", t("n_items", { n: units })),
          h("span", { class: "order-id" }, order.orderId),
        ),
        h(
          "span",
          { class: "order-row-side" },
          h("span", { class: `state-badge state-${stateName.toLowerCase()}`, testid: "order-row-state" }, stateLabel(order.state)),
          order.totalFen > 0n && h("span", { testid: "order-row-total" }, formatFen(order.totalFen)),
        ),
      ),
    );
  }

  function paint(): void {
    replace(
      root,
      h("h1", { class: "page-title" }, t("orders_title")),
      list.length > 0 && h("ul", { class: "panel order-list", testid: "order-list" }, list.map(row)),
      !loading && !error && list.length === 0 && h("section", { class: "panel empty", testid: "orders-empty" }, h("p", null, t("orders_empty")), h("a", { href: "#/", class: "button primary" }, t("go_shopping"))),
      loading && h("p", { class: "muted loading" }, t("loading")),
      error && h("p", { class: "error", role: "alert", testid: "orders-error" }, problemText(error)),
      !loading && nextPageToken && h("button", { type: "button", class: "secondary more", testid: "orders-more", onclick: () => void fetchPage(nextPageToken) }, t("load_more")),
    );
  }

  void fetchPage("");
  return { paint, dispose: () => controller.abort() };
}
