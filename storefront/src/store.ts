// The storefront's state kept in the browser (localStorage), as JSON under
// keys prefixed "harvest.". A browser that refuses storage (private mode,
// quota) leaves the storefront working for the page's lifetime.

const PREFIX = "harvest.";
const memory = new Map<string, string>();

export function load<T>(key: string): T | undefined {
  let raw: string | null | undefined;
  try {
    raw = localStorage.getItem(PREFIX + key);
  } catch {
    raw = memory.get(key);
  }
  if (raw == null) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}

export function save(key: string, value: unknown): void {
  const raw = JSON.stringify(value);
  memory.set(key, raw);
  try {
    localStorage.setItem(PREFIX + key, raw);
  } catch {
    // Kept in memory only.
  }
}

export function remove(key: string): void {
  memory.delete(key);
  try {
    localStorage.removeItem(PREFIX + key);
  } catch {
    // Nothing kept.
  }
}

/** Calls `listener` when another tab changes `key`. */
export function onStoredChange(key: string, listener: () => void): void {
  window.addEventListener("storage", (event) => {
    if (event.key === PREFIX + key) listener();
  });
}
