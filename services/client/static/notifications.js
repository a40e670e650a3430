// notifications.js — the shell's notification centre (docs/devices.md, "Notifications").
// A header button with the unread count opens a panel listing the user's notifications,
// newest first, in the shell's language; each can be marked read, all at once too, and each
// group followed or unfollowed. New ones arrive live and are announced to screen readers.
// Keyboard: the button toggles the panel (aria-expanded), Escape closes it and gives the
// focus back to the button.

const STRINGS = {
  en: {
    title: "Notifications", unread: "{count} unread", none: "No notifications.",
    mark_read: "Mark read", mark_all: "Mark all read", groups: "Groups",
    arrived: "New notification: {title}", read: "read",
  },
  de: {
    title: "Benachrichtigungen", unread: "{count} ungelesen", none: "Keine Benachrichtigungen.",
    mark_read: "Als gelesen markieren", mark_all: "Alle als gelesen markieren",
    groups: "Gruppen", arrived: "Neue Benachrichtigung: {title}", read: "gelesen",
  },
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

/** Build the centre into `button` (in the header) and `panel` (a section); returns
 * {refresh, clear}: refresh after signing in and when the language changes. */
export function notificationCentre(mesh, {button, panel, getLocale, report}) {
  let items = [];
  let unread = 0;
  const badge = el("span", {className: "badge", hidden: true, "aria-hidden": "true"});
  const label = el("span", {className: "sr-only"});
  const announcer = el("p", {className: "sr-only", role: "status", "aria-live": "polite"});
  button.replaceChildren(el("span", {"aria-hidden": "true", textContent: "🔔"}), badge, label);
  button.setAttribute("aria-controls", panel.id);
  button.setAttribute("aria-expanded", "false");
  panel.setAttribute("role", "region");
  document.body.append(announcer);

  const t = (key, vars = {}) => {
    const locale = getLocale();
    const table = STRINGS[locale] ?? STRINGS[locale.split("-")[0]] ?? STRINGS.en;
    return (table[key] ?? STRINGS.en[key]).replace(/\{(\w+)\}/g, (_, name) => String(vars[name]));
  };

  function showCount() {
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
    label.textContent = `${t("title")}, ${t("unread", {count: unread})}`;
    button.title = label.textContent;
  }

  function entry(n) {
    const item = el("li", {className: n.read ? "read" : "unread", dataset: {id: String(n.id)}},
      el("strong", {className: "n-title", textContent: n.title}),
      el("span", {className: "n-body", textContent: n.body}),
      el("time", {dateTime: new Date(n.sent_ms).toISOString(),
                  textContent: new Date(n.sent_ms).toLocaleString(getLocale())}));
    if (!n.read) {
      item.append(el("button", {type: "button", className: "mark-read", textContent: t("mark_read"),
                                onclick: () => markRead([n.id])}));
    }
    return item;
  }

  async function renderPanel() {
    // the groups first, then the whole panel at once: no moment without its checkboxes
    const {groups: found} = await mesh.groups();
    const heading = el("h2", {id: `${panel.id}-title`, textContent: t("title")});
    panel.setAttribute("aria-labelledby", heading.id);
    const list = items.length ? el("ul", {className: "notification-list"}, ...items.map(entry))
      : el("p", {textContent: t("none")});
    const all = el("button", {type: "button", id: "mark-all-read", textContent: t("mark_all"),
                              disabled: unread === 0, onclick: () => markRead("all")});
    const groups = el("fieldset", {className: "groups"}, el("legend", {textContent: t("groups")}),
      ...found.map((g) => el("label", {},
        el("input", {type: "checkbox", checked: g.following, dataset: {group: g.group},
                     onchange: (event) => mesh.follow(g.group, event.target.checked).catch(report)}),
        ` ${g.group}`)));
    panel.replaceChildren(heading, all, list, groups);
  }

  async function refresh() {
    if (!mesh.identity) return clear();
    const answer = await mesh.notifications({locale: getLocale()});
    items = answer.items;
    unread = answer.unread;
    showCount();
    if (!panel.hidden) await renderPanel();
  }

  function clear() {
    items = [];
    unread = 0;
    showCount();
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }

  async function markRead(ids) {
    try {
      ({unread} = await mesh.markRead(ids));
      for (const n of items) if (ids === "all" || ids.includes(n.id)) n.read = true;
      showCount();
      await renderPanel();
      button.focus();
    } catch (error) { report(error); }
  }

  function toggle(open = panel.hidden) {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) renderPanel().then(() => panel.querySelector("button, input")?.focus(), report);
  }

  button.addEventListener("click", () => toggle());
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      toggle(false);
      button.focus();
    }
  });
  mesh.onNotification((n) => {
    if (items.some((known) => known.id === n.id)) return;
    items.unshift(n);
    unread += 1;
    showCount();
    announcer.textContent = t("arrived", {title: n.title});
    if (!panel.hidden) renderPanel().catch(report);
  });
  showCount();
  // Offline is not an error here: the list is asked for again once the gateway is back.
  const quietly = (error) => { if (error?.code !== "disconnected") report(error); };
  return {refresh: () => refresh().catch(quietly), clear};
}
