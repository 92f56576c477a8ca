// One order, followed live with WatchOrder: its steps from placed to
// delivered with the time of each, its lines and totals, where it goes,
// the buyer's delivery code, and, when cancelled, why in plain words.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { classify, ensureFreshSession, orders, productById, renewSession } from "../api.js";
import { h, problemText, replace, sleep, type Problem, type View } from "../dom.js";
import type { Product } from "../gen/harvest/catalog/v1/catalog_pb.js";
import { CancelReason, OrderState } from "../gen/harvest/common/v1/common_pb.js";
import type { Order } from "../gen/harvest/orders/v1/orders_pb.js";
import { formatFen, formatTime, provinceLabel, reasonLabel, stateLabel, t, unitLabel } from "../i18n.js";

const STEPS = [
  OrderState.PLACED,
  OrderState.RESERVED,
  OrderState.CONFIRMED,
  OrderState.DISPATCHING,
  OrderState.IN_TRANSIT,
  OrderState.DELIVERED,
];

export const isFinal = (state: OrderState): boolean => state === OrderState.DELIVERED || state === OrderState.CANCELLED;

/** Reasons for which the page says stock ran out and what is available now. */
const STOCK_REASONS = new Set([CancelReason.OUT_OF_STOCK, CancelReason.PER_BUYER_LIMIT]);

/** When the order reached `state`, from its history. */
function reachedAt(order: Order, state: OrderState): Date | undefined {
  const step = order.history.find((tr) => tr.to === state && tr.from !== tr.to);
  if (step?.at) return timestampDate(step.at);
  if (state === OrderState.PLACED && order.createdAt) return timestampDate(order.createdAt);
  return undefined;
}

/** The last of the usual steps the order reached (for a cancelled order, before it was cancelled). */
function lastStepIndex(order: Order): number {
  if (order.state !== OrderState.CANCELLED) return STEPS.indexOf(order.state);
  let last = 0;
  for (const tr of order.history) last = Math.max(last, STEPS.indexOf(tr.to));
  return last;
}

type Connection = "connecting" | "live" | "reconnecting" | "ended";

export function orderView(root: HTMLElement, orderId: string): View {
  const controller = new AbortController();
  const products = new Map<string, Product>();
  const requested = new Set<string>();
  /** GetProduct answers asked for after the order was cancelled: what is available now. */
  const availableNow = new Map<string, Product>();
  let order: Order | undefined;
  let connection: Connection = "connecting";
  let failure: Problem | undefined;

  function learnProducts(current: Order): void {
    for (const line of current.lines) {
      if (requested.has(line.productId)) continue;
      requested.add(line.productId);
      productById(line.productId).then(
        (product) => {
          products.set(line.productId, product);
          paint();
        },
        () => undefined,
      );
    }
    if (current.state === OrderState.CANCELLED && STOCK_REASONS.has(current.cancelReason) && availableNow.size === 0) {
      for (const line of current.lines) {
        productById(line.productId, true).then(
          (product) => {
            availableNow.set(line.productId, product);
            paint();
          },
          () => undefined,
        );
      }
    }
  }

  function show(next: Order): void {
    order = next;
    learnProducts(next);
    paint();
  }

  /** Follows the order until it ends, watching again whenever the stream breaks. */
  async function follow(): Promise<void> {
    const { signal } = controller;
    let backoff = 1000;
    while (!signal.aborted) {
      try {
        await ensureFreshSession();
        for await (const update of orders().watchOrder({ orderId }, { signal })) {
          if (update.order) show(update.order);
          if (connection !== "live") {
            connection = "live";
            paint();
          }
          backoff = 1000;
        }
      } catch (error) {
        if (signal.aborted) return;
        const code = ConnectError.from(error).code;
        if (code === Code.Unauthenticated) {
          try {
            await renewSession();
            continue;
          } catch (e) {
            failure = { key: "load_failed", message: classify(e).message };
            paint();
            return;
          }
        }
        if (code === Code.NotFound || code === Code.PermissionDenied || code === Code.InvalidArgument) {
          failure = code === Code.NotFound ? { key: "order_missing" } : { key: "load_failed", message: classify(error).message };
          paint();
          return;
        }
      }
      if (order && isFinal(order.state)) {
        connection = "ended";
        paint();
        return;
      }
      connection = "reconnecting";
      paint();
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 15_000);
    }
  }

  function productName(productId: string): string {
    return products.get(productId)?.name ?? productId;
  }

  function steps(current: Order): HTMLElement {
    const last = lastStepIndex(current);
    const cancelled = current.state === OrderState.CANCELLED;
    const item = (state: OrderState, index: number) => {
      const at = reachedAt(current, state);
      const status = cancelled || index < last ? "done" : index === last ? "current" : "todo";
      return h(
        "li",
        {
          class: `step ${status}`,
          testid: `step-${OrderState[state]}`,
          "data-status": status,
          "aria-current": status === "current" ? "step" : null,
        },
        h("span", { class: "dot", "aria-hidden": "true" }),
        h("span", { class: "step-label" }, stateLabel(state)),
        at && h("time", { class: "step-time", testid: "step-time", datetime: at.toISOString() }, formatTime(at)),
      );
    };
    const cancelledAt = cancelled ? reachedAt(current, OrderState.CANCELLED) ?? (current.updatedAt && timestampDate(current.updatedAt)) : undefined;
    return h(
      "ol",
      { class: cancelled ? "steps cancelled" : "steps", testid: "order-steps" },
      STEPS.map((state, index) => (cancelled && index > last ? null : item(state, index))),
      cancelled &&
        h(
          "li",
          { class: "step current cancelled", testid: "step-CANCELLED", "data-status": "current", "aria-current": "step" },
          h("span", { class: "dot", "aria-hidden": "true" }),
          h("span", { class: "step-label" }, stateLabel(OrderState.CANCELLED)),
          cancelledAt && h("time", { class: "step-time", testid: "step-time", datetime: cancelledAt.toISOString() }, formatTime(cancelledAt)),
        ),
    );
  }

  function cancelledPanel(current: Order): HTMLElement {
    const stock = STOCK_REASONS.has(current.cancelReason);
    const limit = current.cancelReason === CancelReason.PER_BUYER_LIMIT;
    return h(
      "section",
      { class: "panel cancelled-panel", role: "status", testid: "order-cancelled", "data-reason": CancelReason[current.cancelReason] ?? "" },
      h("h2", null, t("cancelled_title")),
      h("p", { class: "reason", testid: "cancel-reason" }, reasonLabel(current.cancelReason)),
      stock && h("p", { testid: "stock-ran-out" }, limit ? t("limit_reached") : t("stock_ran_out")),
      stock &&
        h(
          "ul",
          { class: "stock-lines" },
          current.lines.map((line) => {
            const product = availableNow.get(line.productId);
            const available = product?.availability?.available;
            return h(
              "li",
              { testid: "stock-line", "data-product-id": line.productId },
              h("strong", null, product?.name ?? productName(line.productId)),
              ": ",
              available === undefined ? t("loading") : t("available_now", { n: available }),
              limit && product && product.perBuyerLimit > 0n && ` (${t("limit_n", { n: product.perBuyerLimit })})`,
            );
          }),
        ),
      h("p", { class: "nothing-charged", testid: "nothing-charged" }, t("nothing_charged")),
      current.cancelDetail && h("p", { class: "muted small", testid: "cancel-detail" }, t("detail", { detail: current.cancelDetail })),
    );
  }

  function paint(): void {
    if (!order) {
      replace(
        root,
        h("h1", { class: "page-title" }, t("order_title")),
        h("p", { class: "order-id" }, orderId),
        failure ? h("p", { class: "error", role: "alert", testid: "order-error" }, problemText(failure)) : h("p", { class: "muted loading" }, t("loading")),
      );
      return;
    }
    const current = order;
    const cancelled = current.state === OrderState.CANCELLED;
    const delivered = current.state === OrderState.DELIVERED;
    const ship = current.shipTo;
    replace(
      root,
      h("p", { class: "back" }, h("a", { href: "#/orders", testid: "back-to-orders" }, "← ", t("back_to_orders"))),
      h("h1", { class: "page-title order-title" }, t("order_title")),
      h("p", { class: "order-id", testid: "order-id", "data-order-id": current.orderId }, current.orderId),
      h(
        "p",
        { class: "order-status" },
        h("span", { class: `state-badge state-${(OrderState[current.state] ?? "").toLowerCase()}`, testid: "order-state", "data-state": OrderState[current.state] ?? "" }, stateLabel(current.state)),
        h(
          "span",
          { class: `connection ${connection}`, testid: "order-connection", "data-connection": connection },
          connection === "live" ? `● ${t("order_live")}` : connection === "reconnecting" ? t("order_reconnecting") : connection === "ended" ? t("order_ended") : t("loading"),
        ),
      ),
      failure && h("p", { class: "error", role: "alert", testid: "order-error" }, problemText(failure)),
      cancelled && cancelledPanel(current),
      !cancelled &&
        current.deliveryCode &&
        h(
          "section",
          { class: delivered ? "panel code used" : "panel code" },
          h("h2", null, t("delivery_code")),
          h("p", { class: "code-digits", testid: "delivery-code" }, current.deliveryCode),
          h("p", { class: "muted" }, t("delivery_code_hint")),
        ),
      h("section", { class: "panel" }, steps(current)),
      current.failedShipments.length > 0 &&
        h(
          "section",
          { class: "panel note" },
          current.failedShipments.map((failed) => h("p", { testid: "failed-shipment" }, t("failed_shipment", { point: failed.pickupPointName || failed.pickupPointId, reason: reasonLabel(failed.reason) }))),
        ),
      h(
        "section",
        { class: "panel" },
        h("h2", null, t("lines")),
        h(
          "ul",
          { class: "lines compact" },
          current.lines.map((line) => {
            const product = products.get(line.productId);
            return h(
              "li",
              { class: "line", testid: "order-line", "data-product-id": line.productId },
              h(
                "span",
                null,
                h("span", { testid: "order-line-name" }, productName(line.productId)),
                ` × ${line.quantity}`,
                product && h("span", { class: "muted" }, ` ${unitLabel(product.unit)}`),
              ),
              line.lineTotalFen > 0n && h("span", null, formatFen(line.lineTotalFen)),
            );
          }),
        ),
        !cancelled &&
          h(
            "p",
            { class: "grand-total" },
            h("span", null, t("total")),
            current.totalFen > 0n ? h("strong", { testid: "order-total" }, formatFen(current.totalFen)) : h("span", { class: "muted small" }, t("total_pending")),
          ),
        delivered && h("p", { class: "grand-total" }, h("span", null, t("charged")), h("strong", { testid: "order-charged" }, formatFen(current.chargedFen))),
      ),
      ship &&
        h(
          "section",
          { class: "panel" },
          h("h2", null, t("ship_to")),
          h(
            "address",
            { testid: "order-ship-to" },
            `${ship.recipient} · ${ship.phone}`,
            h("br"),
            [provinceLabel(ship.province), ship.county, ship.street].filter(Boolean).join(" "),
          ),
        ),
    );
  }

  paint();
  void follow();
  return { paint, dispose: () => controller.abort() };
}
