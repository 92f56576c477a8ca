// A small helper to build DOM elements, and the shape every page has.

import { t, type Key } from "./i18n.js";

export type Child = Node | string | number | bigint | false | null | undefined | Child[];

export type Attrs = {
  [name: string]: string | number | boolean | null | undefined | ((event: Event) => void);
};

/**
 * Creates an element. Attributes: `on<event>` adds a listener, `testid` sets
 * `data-testid`, `value` and `checked` set the property, `true` sets an empty
 * attribute, `false`/`null`/`undefined` set none.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "testid") {
      element.dataset["testid"] = String(value);
    } else if (name === "value" || name === "checked") {
      (element as unknown as Record<string, unknown>)[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === false || child === null || child === undefined) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `parent`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** Something that went wrong, told in the language shown when it is drawn. */
export interface Problem {
  key: Key;
  message?: string;
}

export function problemText(problem: Problem): string {
  return t(problem.key, { message: problem.message ?? "" });
}

/** A page of the storefront, mounted into the main area. */
export interface View {
  /** Draws the page again from its state (after a language change). */
  paint(): void;
  /** Stops what the page has under way (streams, timers). */
  dispose(): void;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
