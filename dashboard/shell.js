// What the measures page and the stewards' console share: signing in with an access token
// kept for this tab only (sessionStorage, one key, so one sign-in serves both pages), and
// the WAI-ARIA tabs pattern with automatic activation.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "poplar.token";

/** The sign-in form and the sign-out button call `signIn(token)` and `signOut()`. */
export function wireSignIn(signIn, signOut) {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value.trim());
  });
  $("sign-out").addEventListener("click", () => signOut());
}

/** A token kept from earlier in this tab signs in again (after a reload, or from the other page). */
export function resumeSignIn(signIn) {
  const kept = sessionStorage.getItem(TOKEN_KEY);
  if (kept) signIn(kept);
}

/** Shows (or, given "", hides) the sign-in form's error. */
export function signInError(text) {
  $("sign-in-error").textContent = text;
  $("sign-in-error").hidden = !text;
}

/** The server accepted `token`: keep it for the tab and show the app. */
export function signedIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
}

/** Forget the token and show the sign-in form, with `message` if there is one. */
export function signedOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("error").hidden = true;
  $("sign-in").hidden = false;
  signInError(message);
  $("token").focus();
}

/** Tabs `tab-<name>` over panels `panel-<name>`: click or arrow keys, Home and End select
 * one. `current()` names the selected one; `onSelect(name)` shows it. Returns
 * select(name, focus). */
export function tabList(names, current, onSelect) {
  const select = (name, focus) => {
    for (const n of names) {
      const tab = $(`tab-${n}`);
      tab.setAttribute("aria-selected", String(n === name));
      tab.tabIndex = n === name ? 0 : -1;
      $(`panel-${n}`).hidden = n !== name;
    }
    if (focus) $(`tab-${name}`).focus();
    onSelect(name);
  };
  for (const n of names) $(`tab-${n}`).addEventListener("click", () => select(n, true));
  $("tabs").addEventListener("keydown", (event) => {
    const i = names.indexOf(current());
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: names.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    select(names[(next + names.length) % names.length], true);
  });
  return select;
}
