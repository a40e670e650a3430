// admin.js — the admin page (docs/admin.md): services, plugins, hooks, settings, migrations,
// uploads, contracts, and the plugins' admin screens.
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("mesh-admin-token");

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {
    "Authorization": `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {})}});
  if (response.status === 401) { forget("Signed out: that token was refused, or its session ended."); throw new Error("unauthorized"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) { const e = new Error(body.message || response.statusText); e.body = body; throw e; }
  return body;
}

function el(tag, {dataset, ...props} = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  Object.assign(node.dataset, dataset || {});
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
const badge = (text) => el("span", {className: `state ${text}`, textContent: text});
function table(id, head, rows) {
  const fresh = [el("tr", {}, ...head.map((h) => el("th", {textContent: h}))),
    ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))];
  // unchanged: keep the rows, so a button is never replaced under a pointer mid-click
  if (fresh.map((r) => r.outerHTML).join("") === [...$(id).children].map((r) => r.outerHTML).join("")) return;
  $(id).replaceChildren(...fresh);
}
const grantBadge = (granted, outdated) => el("span", {
  className: `state ${granted ? "granted" : outdated ? "outdated" : "ungranted"}`,
  textContent: granted ? "granted" : outdated ? "outdated: grant again" : "not granted"});
function say(text) { $("message").textContent = text || ""; }

async function refresh() {
  const [services, plugins, migrations] = await Promise.all(
    [api("/api/v1/services"), api("/api/v1/plugins"), api("/api/v1/migrations")]);
  table("services", ["service", "instance", "host", "status", "uptime", "plugins"], services.map((s) => [
    s.service, s.instance, `${s.host} (pid ${s.pid})`, badge(s.status), `${Math.round(s.uptime_s)} s`,
    s.plugins.map((p) => `${p.name}: ${p.state}`).join(", ")]));
  table("plugins", ["plugin", "version", "services", "depends", "status", "on instances", ""], plugins.map((p) => [
    el("span", {title: p.description}, el("strong", {textContent: p.name}), ` ${p.title || ""}`),
    p.version || "?", p.services.join(", "),
    Object.entries(p.depends).map(([k, v]) => `${k}${v}`).join(", ") || "–",
    el("span", {}, badge(p.status), p.reason ? el("div", {className: "muted", textContent: p.reason}) : null),
    p.instances.map((i) => `${i.service}: ${i.state}`).join(", ") || "–",
    el("span", {},
      p.status === "refused" ? "" : el("button", {
        textContent: p.enabled ? "Disable" : "Enable", dataset: {plugin: p.name},
        onclick: () => toggle(p)}), " ",
      el("button", {textContent: "Uninstall or roll back…", dataset: {manage: p.name},
        onclick: () => manage(p.name)})),
  ]));
  table("migrations", ["plugin", "schema", "current", "head", "state", "pending"], migrations.map((m) => [
    m.plugin, m.schema_name, m.current.join(", ") || "–", m.heads.join(", "), badge(m.state),
    m.pending.join(", ") || "–"]));
  const hooks = await api("/api/v1/hooks");
  table("hook-grants", ["plugin", "hooks", "grant", ""], hooks.plugins.map((h) => [
    el("strong", {textContent: h.plugin}),
    h.hooks.map((t) => `${t.when} ${t.entries.join(", ")}${t.except.length ? ` except ${t.except.join(", ")}` : ""} → ${t.handler}`).join("; "),
    grantBadge(h.granted, h.outdated),
    el("button", {textContent: h.granted ? "Revoke" : "Grant", dataset: {hooks: h.plugin},
      onclick: () => grant(h.plugin, !h.granted)}),
  ]));
  table("hooks", ["entry", "when", "#", "hook", "runs"], hooks.entries.map((e) => [
    e.entry, e.when, e.position ?? "–", e.hook,
    e.left_out ? el("span", {className: "muted", textContent: `never: ${e.left_out}`})
      : grantBadge(e.granted, false)]));
  const catalog = await api("/api/v1/contracts");
  table("contracts", ["name", "kind", "served by", "callers", "devices", "doc"], catalog.entries.map((e) => [
    e.qualname, e.kind, e.service, e.callers ? e.callers.join(", ") : "any", e.devices ? "yes" : "–", e.doc || ""]));
  const withSettings = plugins.filter((p) => p.has_settings);
  const forms = $("settings");
  for (const plugin of withSettings) {
    if (!forms.querySelector(`form[data-plugin="${plugin.name}"]`)) forms.append(await settingsForm(plugin.name));
  }
  if (!withSettings.length) forms.textContent = "No plugin declares settings.";
  await loadScreens();
}

// -- plugins' admin screens (docs/admin.md, "Admin screens") ------------------------------
// A screen is an ES module of a plugin's UI folder; opening it (#/<plugin>/<screen>?<params>)
// imports it once per version and calls
//   mount(element, {api, user, permissions, t, navigate, params, locale, report}) -> unmount
let me = null;             // who signed in: {user, permissions, ...}
let adminScreens = [];     // GET /api/v1/screens
let mountedScreen = null;  // {key, unmount}
const locale = navigator.language || "en";

function format(text, vars) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

async function strings(screen) {
  const merged = {};
  for (const url of screen.strings) Object.assign(merged, await (await fetch(url)).json());
  return (key, vars = {}) => (key in merged ? format(merged[key], vars) : key);
}

export function navigate(target, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${target.replace(/^\/+/, "")}${query ? `?${query}` : ""}`;
}

function adminRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const cut = hash.indexOf("?");
  const path = cut < 0 ? hash : hash.slice(0, cut);
  const [plugin, screen] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return {plugin, screen, params: Object.fromEntries(new URLSearchParams(cut < 0 ? "" : hash.slice(cut + 1)))};
}

async function loadScreens() {
  const fresh = await api(`/api/v1/screens?locale=${encodeURIComponent(locale)}`);
  const same = JSON.stringify(fresh) === JSON.stringify(adminScreens);
  adminScreens = fresh;
  if (same && $("screen-links").childElementCount === fresh.length) return showRoute();
  const links = adminScreens.map((s) => el("a", {href: `#/${s.plugin}/${s.id}`, dataset: {screen: `${s.plugin}/${s.id}`}},
    el("img", {src: s.icon, alt: ""}), s.title));
  $("screen-links").replaceChildren(...links);
  await showRoute();
}

function unmountScreen() {
  if (mountedScreen) { try { mountedScreen.unmount?.(); } catch (e) { say(e.message); } }
  mountedScreen = null;
  $("plugin-screen").replaceChildren();
}

async function showRoute() {
  const {plugin, screen, params} = adminRoute();
  const found = adminScreens.find((s) => s.plugin === plugin && s.id === screen);
  for (const a of $("screens-nav").querySelectorAll("a")) {
    const current = a.dataset.screen ? a.dataset.screen === `${plugin}/${screen}` : !plugin;
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const key = found ? `${found.module}?${location.hash}` : null;
  if (mountedScreen?.key === key && key) return;
  unmountScreen();
  $("overview").hidden = !!found;
  $("plugin-screen").hidden = !found;
  if (!found) {
    if (plugin) say(`The screen ${plugin}/${screen} is not available to you (any more).`);
    return;
  }
  const element = $("plugin-screen");
  const [module, t] = await Promise.all([import(found.module), strings(found)]);
  const unmount = module.mount(element, {api, user: me, permissions: me.permissions, t, navigate, params,
    locale: found.locale, report: (error) => say(error?.message ?? String(error))});
  mountedScreen = {key, unmount};
}
window.addEventListener("hashchange", () => { if (token) showRoute().catch((e) => say(e.message)); });

async function toggle(plugin) {
  say();
  const action = plugin.enabled ? "disable" : "enable";
  try {
    await api(`/api/v1/plugins/${plugin.name}/${action}`, {method: "POST"});
  } catch (e) {
    if (e.body?.code === "has_dependents" && confirm(`${e.message}\n\nDisable them all?`)) {
      await api(`/api/v1/plugins/${plugin.name}/disable?cascade=true`, {method: "POST"});
    } else { say(e.message); }
  }
  await refresh();
}

// Uninstall with its impact shown first; purge only when the plugin's name is typed again.
async function manage(name) {
  say();
  $("lifecycle").hidden = true;  // shown again with the impact as it is now
  let impact;
  try { impact = await api(`/api/v1/plugins/${encodeURIComponent(name)}/impact`); }
  catch (e) { say(e.message); return; }
  const box = $("lifecycle");
  const purge = el("input", {type: "checkbox", id: "purge"});
  const confirmName = el("input", {id: "purge-confirm", placeholder: `type ${name} to drop its data`,
    ariaLabel: `Type ${name} to confirm dropping its data`});
  const schema = impact.schema_name
    ? `schema ${impact.schema_name} (revision ${impact.schema_revision.join(", ") || "–"}): kept, unless dropped below`
    : "no schema";
  const uninstall = el("button", {id: "uninstall", textContent: `Uninstall ${name}`,
    disabled: impact.blockers.length > 0, onclick: () => lifecycle(name, "uninstall",
      purge.checked ? `?purge=true&confirm=${encodeURIComponent(confirmName.value)}` : "")});
  const rollback = impact.previous_version ? el("button", {id: "rollback",
    textContent: `Roll back to ${impact.previous_version}`,
    onclick: () => lifecycle(name, "rollback", "")}) : "";
  box.replaceChildren(
    el("h3", {textContent: `${impact.plugin} ${impact.version || "?"}`}),
    el("ul", {id: "impact"},
      el("li", {textContent: `dependents: ${impact.dependents.join("; ") || "none"}`}),
      el("li", {textContent: schema}),
      el("li", {textContent: `settings: ${impact.settings_kept ? "kept, unless dropped below" : "none"}`}),
      el("li", {textContent: `kept versions: ${impact.kept_versions.join(", ") || "none"}`}),
      ...impact.blockers.map((b) => el("li", {className: "field-error", textContent: `cannot uninstall: ${b}`}))),
    el("label", {}, purge, " also drop its schema and all its data, and forget its settings "), confirmName,
    el("p", {}, uninstall, " ", rollback, " ",
      el("button", {textContent: "Close", onclick: () => { box.hidden = true; }})));
  box.hidden = false;
}

async function lifecycle(name, action, query) {
  say();
  try {
    const done = await api(`/api/v1/plugins/${encodeURIComponent(name)}/${action}${query}`, {method: "POST"});
    say(action === "uninstall" ? `uninstalled ${done.plugin} ${done.version}${done.purged ? ", its data dropped" : ", its data kept"}`
      : `rolled back ${done.plugin} ${done.replaced_version} → ${done.version}`);
    $("lifecycle").hidden = true;
  } catch (e) { say(`${e.body?.code || "error"}: ${e.message}`); }
  await refresh();
}

async function grant(plugin, granted) {
  say();
  try {
    await api(`/api/v1/plugins/${plugin}/hooks/${granted ? "grant" : "revoke"}`, {method: "POST"});
  } catch (e) { say(e.message); }
  await refresh();
}

async function settingsForm(name) {
  const view = await api(`/api/v1/plugins/${name}/settings`);
  const form = el("form", {className: "settings", dataset: {plugin: name}});
  form.append(el("strong", {textContent: name}), el("span"), el("span"));
  for (const [field, schema] of Object.entries(view.json_schema.properties || {})) {
    const type = schema.type;
    const input = schema.enum ? el("select", {}, ...schema.enum.map((v) => el("option", {value: v, textContent: v})))
      : el("input", {type: type === "boolean" ? "checkbox" : (type === "integer" || type === "number") ? "number" : "text"});
    input.name = field;
    input.id = `setting-${name}-${field}`;
    if (type === "boolean") input.checked = !!view.values[field]; else input.value = view.values[field] ?? "";
    if (type === "number") input.step = "any";
    form.append(el("label", {htmlFor: input.id, textContent: schema.title || field, title: schema.description || ""}),
                input, el("span", {className: "field-error", id: `error-${name}-${field}`}));
  }
  form.append(el("span"), el("button", {type: "submit", textContent: `Save ${name}`}), el("span", {className: "muted", id: `saved-${name}`}));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    const values = {};
    for (const [field, schema] of Object.entries(view.json_schema.properties || {})) {
      const input = form.elements[field];
      values[field] = schema.type === "boolean" ? input.checked
        : (schema.type === "integer" || schema.type === "number") && input.value !== "" ? Number(input.value) : input.value;
    }
    try {
      await api(`/api/v1/plugins/${name}/settings`, {method: "PUT", body: JSON.stringify(values)});
      $(`saved-${name}`).textContent = `saved ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      for (const d of e.body?.details || []) {
        const target = $(`error-${name}-${d.loc[0]}`);
        if (target) target.textContent = d.msg;
      }
      say(e.message);
    }
  });
  return form;
}

function forget(reason) {
  unmountScreen();
  sessionStorage.removeItem("mesh-admin-token");
  token = null;
  $("app").hidden = true; $("signin").hidden = false; $("signout").hidden = true;
  say(reason);
  $("who").textContent = reason || "";
}

async function signOut() {
  if (token) await fetch("/api/v1/sign-out", {method: "POST", headers: {"Authorization": `Bearer ${token}`}});
  forget();
}

async function signIn() {
  me = await api("/api/v1/me");
  $("signin").hidden = true; $("app").hidden = false; $("signout").hidden = false;
  $("who").textContent = `signed in as ${me.user}`;
  await refresh();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("mesh-admin-token", token);
  try { await signIn(); } catch (e) { say(e.message === "unauthorized" ? "That token was refused." : e.message); }
});
$("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/api/v1/sign-in", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({username: $("username").value, password: $("password").value})});
  const body = await response.json();
  if (!response.ok) { say(body.message); $("who").textContent = body.message; return; }
  token = body.token;
  sessionStorage.setItem("mesh-admin-token", token);
  try { await signIn(); } catch (e) { say(e.message); }
});
$("signout").addEventListener("click", () => signOut());
$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("wheel").files[0];
  $("uploaded").textContent = "uploading…";
  try {
    const result = await api(`/api/v1/plugins?filename=${encodeURIComponent(file.name)}`,
      {method: "POST", body: file, headers: {"Content-Type": "application/octet-stream"}});
    $("uploaded").textContent = `installed ${result.plugin} ${result.version}`
      + (result.previous_version ? ` (was ${result.previous_version})` : "");
    say();
  } catch (e) { $("uploaded").textContent = ""; say(e.body?.code ? `${e.body.code}: ${e.message}` : e.message); }
  await refresh();
});
$("asyncapi").addEventListener("click", async (event) => {
  event.preventDefault();
  const doc = await api("/api/v1/asyncapi.json");
  const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], {type: "application/json"}));
  window.open(url, "_blank");
});
if (token) signIn().catch(() => {});
setInterval(() => { if (token) refresh().catch((e) => say(e.message)); }, 3000);
  
