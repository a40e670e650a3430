// shell.js — the device shell at the client service's / (docs/devices.md, "The shell").
// Sign-in, a home grid of the screens this user may use (grouped by category, searchable,
// ordered by priority), screens loaded lazily with import() and mounted with
//   mount(element, {mesh, user, permissions, t, navigate, params, locale, report}) -> unmount
// deep links as hash routes (#/<plugin>/<screen>?<params>), and a language switch.
import { Mesh } from "/mesh.js";
import { notificationCentre } from "/notifications.js";

const STRINGS = {
  en: {
    home: "Home", language: "Language", sign_in: "Sign in", sign_out: "Sign out",
    username: "username", password: "password", search: "Search screens",
    no_screens: "No screens for you here yet.", no_match: "No screen matches.",
    hint: "Sign in: on a new mesh up as admin, with the password kept in .mesh/admin-password.",
    signed_in_as: "signed in as {user}", signed_out: "signed out: {reason}",
    gone: "The screen {screen} is not available to you (any more).", other: "Other",
  },
  de: {
    home: "Start", language: "Sprache", sign_in: "Anmelden", sign_out: "Abmelden",
    username: "Benutzername", password: "Passwort", search: "Bildschirme suchen",
    no_screens: "Hier gibt es noch keine Bildschirme für dich.", no_match: "Kein Bildschirm passt.",
    hint: "Anmelden: nach einem neuen mesh up als admin, mit dem Passwort aus .mesh/admin-password.",
    signed_in_as: "angemeldet als {user}", signed_out: "abgemeldet: {reason}",
    gone: "Der Bildschirm {screen} ist für dich nicht (mehr) verfügbar.", other: "Sonstiges",
  },
};
const LANGUAGES = {en: "English", de: "Deutsch"};
const LOCALE_KEY = "mesh-locale";

const $ = (id) => document.getElementById(id);
const mesh = new Mesh();
// The shell and the screens opened once then open offline too (sw.js; localhost or HTTPS).
navigator.serviceWorker?.register("/sw.js").catch((error) => console.warn("no offline shell", error));
let locale = localStorage.getItem(LOCALE_KEY) || navigator.language || "en";
let screens = null;        // the catalog's screens, null until asked (again)
let mounted = null;        // {key, unmount}
let generation = 0;        // the latest render: an older one that wakes up late gives way

function format(text, vars) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

function translator(...catalogs) {
  return (key, vars = {}) => {
    for (const catalog of catalogs) if (key in catalog) return format(catalog[key], vars);
    return key;
  };
}

const shellStrings = () => translator(STRINGS[locale] ?? STRINGS[locale.split("-")[0]] ?? {}, STRINGS.en);

export function report(error) {
  if (error?.code === "topic_gone") { // a plugin went away: not the user's error
    notice(error.message);
    return;
  }
  $("error").textContent = error?.message ?? String(error);
}

function notice(text) { $("notice").textContent = text; }

/** The route in the address: {plugin, screen, params}; no plugin on the home grid. */
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const cut = hash.indexOf("?");
  const path = cut < 0 ? hash : hash.slice(0, cut);
  const [plugin, screen] = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1)));
  return {plugin, screen, params};
}

/** Go to a screen ("tutorial/string_ints", with params) or home ("/"): a deep link. */
export function navigate(target, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${target.replace(/^\/+/, "")}${query ? `?${query}` : ""}`;
}

function translateChrome() {
  const t = shellStrings();
  document.documentElement.lang = locale;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  const select = $("language");
  const options = {...LANGUAGES};
  if (!(locale in options)) options[locale] = locale;
  select.replaceChildren(...Object.entries(options).map(([tag, name]) => new Option(name, tag, false, tag === locale)));
  $("user").textContent = mesh.identity ? t("signed_in_as", {user: mesh.identity.user}) : "";
}

function showOnly(id) {
  for (const section of ["home", "screen"]) $(section).hidden = section !== id;
}

function unmount() {
  if (!mounted) return;
  const {unmount: stop} = mounted;
  mounted = null;
  $("screen").replaceChildren();
  try { stop(); } catch (error) { report(error); }
}

async function loadStrings(urls) {
  const catalogs = await Promise.all(urls.map(async (url) => {
    const answer = await fetch(url);
    if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
    return answer.json();
  }));
  return translator(...catalogs.reverse()); // the best match first, the default last
}

function renderHome() {
  const t = shellStrings();
  const words = $("search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const matching = screens.filter((s) => {
    const text = [s.title, s.category, ...s.keywords].join(" ").toLowerCase();
    return words.every((word) => text.includes(word));
  });
  const groups = new Map(); // by category, in the order of their first (highest-priority) screen
  for (const s of matching) {
    const category = s.category || t("other");
    if (!groups.has(category)) groups.set(category, []);
    groups.get(category).push(s);
  }
  $("grid").replaceChildren(...[...groups].map(([category, members]) => {
    const section = document.createElement("section");
    section.className = "category";
    const heading = document.createElement("h2");
    heading.textContent = category;
    const tiles = document.createElement("div");
    tiles.className = "tiles";
    tiles.append(...members.map((s) => {
      const tile = document.createElement("a");
      tile.className = "tile";
      tile.href = `#/${encodeURIComponent(s.plugin)}/${encodeURIComponent(s.id)}`;
      tile.dataset.screen = `${s.plugin}/${s.id}`;
      const icon = document.createElement("img");
      icon.src = s.icon;
      icon.alt = "";
      const title = document.createElement("span");
      title.textContent = s.title;
      tile.append(icon, title);
      return tile;
    }));
    section.append(heading, tiles);
    return section;
  }));
  $("empty").hidden = matching.length > 0;
  $("empty").textContent = screens.length ? t("no_match") : t("no_screens");
}

/** Show what the address and the sign-in call for; safe to call at any time. */
async function render() {
  const run = ++generation;
  const identity = mesh.identity;
  translateChrome();
  $("who").hidden = !identity;
  // the kept session is being read, or its token is on its way to the gateway
  const waiting = !identity && (mesh.restoring ||
                                (mesh.status !== "open" && sessionStorage.getItem("mesh-token")));
  $("signin").hidden = $("hint").hidden = !!identity || !!waiting;
  if (!identity) {
    unmount();
    showOnly(null);
    return;
  }
  try {
    if (screens === null) {
      const answer = await mesh.catalog({locale});
      if (run !== generation) return;
      screens = answer.screens;
      // the plugin versions listed now: the service worker drops the cached files of others
      // ("/plugins/<name>/@<hash>/", each up to the "/" after its "/@")
      navigator.serviceWorker?.controller?.postMessage({type: "plugins", keep: screens.map(
        (s) => s.module.slice(0, s.module.indexOf("/", s.module.indexOf("/@") + 1) + 1))});
    }
    const {plugin, screen, params} = route();
    if (!plugin) {
      unmount();
      showOnly("home");
      renderHome();
      document.title = `${shellStrings()("home")} — mesh`;
      return;
    }
    const entry = screens.find((s) => s.plugin === plugin && s.id === screen);
    if (!entry) {
      if (mounted) $("error").textContent = ""; // what the screen said as its plugin went
      unmount();
      showOnly("home");
      renderHome();
      notice(shellStrings()("gone", {screen: `${plugin}/${screen}`}));
      return;
    }
    const key = JSON.stringify([entry.module, entry.strings, params, identity.user]);
    showOnly("screen");
    document.title = `${entry.title} — mesh`;
    if (mounted?.key === key) return;
    const [module, t] = await Promise.all([import(entry.module), loadStrings(entry.strings)]);
    if (run !== generation) return;
    unmount();
    const element = document.createElement("div");
    element.className = "screen-root";
    element.dataset.screen = `${entry.plugin}/${entry.id}`;
    $("screen").replaceChildren(element);
    const stop = module.mount(element, {
      mesh, user: identity, permissions: identity.permissions, t, navigate, params,
      locale: entry.locale, report,
    });
    mounted = {key, unmount: typeof stop === "function" ? stop : () => {}};
  } catch (error) {
    if (run === generation) report(error);
  }
}

const centre = notificationCentre(mesh, {
  button: $("notifications-button"), panel: $("notifications"), getLocale: () => locale, report,
});

mesh.onStatus((state) => {
  $("status").textContent = state;
  $("status").className = state;
  if (!mesh.identity) render(); // the sign-in form once there is no session to wait for
  if (state === "open" && mesh.identity) centre.refresh(); // back online: what arrived meanwhile
});
mesh.onIdentity((identity, reason) => {
  screens = null;
  if (!identity && reason && reason !== "signed out") notice(shellStrings()("signed_out", {reason}));
  $("notifications-button").hidden = !identity;
  centre.refresh(); // after a reconnect too: what arrived while away
  render();
});
mesh.onCatalogChange(() => { screens = null; render(); });
window.addEventListener("hashchange", () => { $("error").textContent = ""; notice(""); render(); });
window.addEventListener("error", (event) => report(event.error ?? event.message));
window.addEventListener("unhandledrejection", (event) => report(event.reason));

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  $("error").textContent = "";
  notice("");
  mesh.signIn($("username").value, $("password").value).catch(report);
});
$("signout").addEventListener("click", () => {
  $("error").textContent = "";
  mesh.signOut().catch(report);
});
$("search").addEventListener("input", () => { if (screens) renderHome(); });
$("language").addEventListener("change", () => {
  locale = $("language").value;
  localStorage.setItem(LOCALE_KEY, locale);
  screens = null; // titles and the screen's own strings in the new language
  render();
  centre.refresh();
});
