// Browsing the catalog: ListProducts filtered by the province the produce
// comes from and by category, a page at a time; and one product by its id.

import { authed, catalog, classify, getConfig, productById, rememberProducts } from "../api.js";
import { h, problemText, replace, type Problem, type View } from "../dom.js";
import { Category, type Product } from "../gen/harvest/catalog/v1/catalog_pb.js";
import { ALL_PROVINCES, categoryLabel, provinceLabel, sortProvinces, t } from "../i18n.js";
import { load, save } from "../store.js";
import { productCard } from "./product-card.js";

const PAGE_SIZE = 24;
const SEEN_PROVINCES_KEY = "provinces";

const CATEGORIES = (Object.values(Category).filter((v) => typeof v === "number") as Category[]).filter(
  (c) => c !== Category.UNSPECIFIED,
);

function categoryParam(c: Category): string {
  return (Category[c] ?? "").toLowerCase();
}

function parseCategory(param: string | null): Category {
  const value = Category[(param ?? "").toUpperCase() as keyof typeof Category];
  return typeof value === "number" ? value : Category.UNSPECIFIED;
}

/** Provinces the catalog's products came from, as seen on the unfiltered list. */
function seenProvinces(): Set<string> {
  const kept = load<string[]>(SEEN_PROVINCES_KEY);
  return new Set(Array.isArray(kept) ? kept : []);
}

function browseHash(province: string, category: Category): string {
  const query = new URLSearchParams();
  if (province) query.set("province", province);
  if (category !== Category.UNSPECIFIED) query.set("category", categoryParam(category));
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

export function browseView(root: HTMLElement, query: URLSearchParams): View {
  const province = query.get("province") ?? "";
  const category = parseCategory(query.get("category"));
  const quantities = new Map<string, number>();
  const controller = new AbortController();
  let products: Product[] = [];
  let nextPageToken = "";
  let loading = true;
  let error: Problem | undefined;

  async function fetchPage(pageToken: string): Promise<void> {
    loading = true;
    error = undefined;
    paint();
    try {
      const page = await authed(() =>
        catalog().listProducts(
          { originProvince: province, category, pageSize: PAGE_SIZE, pageToken },
          { signal: controller.signal },
        ),
      );
      if (controller.signal.aborted) return;
      rememberProducts(page.products);
      products = [...products, ...page.products];
      nextPageToken = page.nextPageToken;
      if (!province && category === Category.UNSPECIFIED) {
        const seen = seenProvinces();
        for (const p of page.products) if (p.seller?.origin?.province) seen.add(p.seller.origin.province);
        save(SEEN_PROVINCES_KEY, [...seen]);
      }
    } catch (e) {
      if (controller.signal.aborted) return;
      error = { key: "load_failed", message: classify(e).message };
    }
    loading = false;
    paint();
  }

  function provinceSelect(): HTMLSelectElement {
    const seen = seenProvinces();
    if (province) seen.add(province);
    const others = new Set([...ALL_PROVINCES, ...getConfig().provinces.map((p) => p.name)].filter((p) => !seen.has(p)));
    const option = (name: string) => h("option", { value: name, selected: name === province }, provinceLabel(name));
    const select = h(
      "select",
      { id: "filter-province", testid: "filter-province", onchange: () => (location.hash = browseHash(select.value, category)) },
      h("option", { value: "", selected: !province }, t("filter_province_all")),
      seen.size > 0 && h("optgroup", { label: t("provinces_with_produce") }, sortProvinces(seen).map(option)),
      h("optgroup", { label: t("provinces_other") }, sortProvinces(others).map(option)),
    );
    return select;
  }

  function categorySelect(): HTMLSelectElement {
    const select = h(
      "select",
      { id: "filter-category", testid: "filter-category", onchange: () => (location.hash = browseHash(province, parseCategory(select.value))) },
      h("option", { value: "", selected: category === Category.UNSPECIFIED }, t("filter_category_all")),
      CATEGORIES.map((c) => h("option", { value: categoryParam(c), selected: c === category }, categoryLabel(c))),
    );
    return select;
  }

  function paint(): void {
    replace(
      root,
      h("h1", { class: "page-title" }, t("browse_title")),
      h(
        "form",
        { class: "filters", onsubmit: (e: Event) => e.preventDefault() },
        h("label", { class: "field" }, h("span", null, t("filter_province")), provinceSelect()),
        h("label", { class: "field" }, h("span", null, t("filter_category")), categorySelect()),
      ),
      h("ul", { class: "grid", testid: "product-list" }, products.map((p) => productCard(p, quantities))),
      !loading && !error && products.length === 0 && h("p", { class: "empty", testid: "no-products" }, t("no_products")),
      loading && h("p", { class: "muted loading", testid: "loading" }, t("loading")),
      error &&
        h(
          "div",
          { class: "error", role: "alert", testid: "browse-error" },
          problemText(error),
          " ",
          h("button", { type: "button", class: "link-button", onclick: () => void fetchPage(nextPageToken) }, t("retry")),
        ),
      !loading &&
        nextPageToken &&
        h("button", { type: "button", class: "secondary more", testid: "load-more", onclick: () => void fetchPage(nextPageToken) }, t("load_more")),
    );
  }

  void fetchPage("");
  return { paint, dispose: () => controller.abort() };
}

export function productView(root: HTMLElement, productId: string): View {
  const quantities = new Map<string, number>();
  let product: Product | undefined;
  let error: Problem | undefined;
  let disposed = false;

  function paint(): void {
    replace(
      root,
      h("p", { class: "back" }, h("a", { href: "#/" }, "← ", t("nav_shop"))),
      product && h("ul", { class: "grid single", testid: "product-list" }, productCard(product, quantities)),
      !product && !error && h("p", { class: "muted loading" }, t("loading")),
      error && h("p", { class: "error", role: "alert" }, problemText(error)),
    );
  }

  productById(productId, true)
    .then((p) => (product = p))
    .catch((e) => {
      const problem = classify(e);
      error = problem.kind === "not_found" ? { key: "not_found" } : { key: "load_failed", message: problem.message };
    })
    .finally(() => !disposed && paint());
  paint();
  return { paint, dispose: () => (disposed = true) };
}
