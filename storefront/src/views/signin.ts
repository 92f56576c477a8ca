// Sign-in: the storefront's buyers are demo buyers made by the local stack.

import { classify, signIn } from "../api.js";
import { h, problemText, replace, type Problem, type View } from "../dom.js";
import { t } from "../i18n.js";

export function signInView(root: HTMLElement): View {
  let busy = false;
  let error: Problem | undefined;

  async function go(): Promise<void> {
    busy = true;
    error = undefined;
    paint();
    try {
      // The session listener takes the buyer on to the page they asked for.
      await signIn();
    } catch (e) {
      error = { key: "signin_failed", message: classify(e).message };
      busy = false;
      paint();
    }
  }

  function paint(): void {
    replace(
      root,
      h(
        "section",
        { class: "panel signin" },
        h("h1", null, t("signin_title")),
        h("p", { class: "lead" }, t("signin_lead")),
        h(
          "button",
          { type: "button", class: "primary big", testid: "sign-in", disabled: busy, onclick: () => void go() },
          busy ? t("signin_busy") : t("signin_button"),
        ),
        error && h("p", { class: "error", role: "alert", testid: "sign-in-error" }, problemText(error)),
      ),
    );
  }

  paint();
  return { paint, dispose() {} };
}
