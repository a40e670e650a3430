// The identity plugin's admin screen for sessions: who has sessions that work now, and ending
// them (every token of the user stops working at once, on every service).
import { button, call, node, table } from "./directory.js";

export function mount(element, {api, t, report}) {
  let stopped = false;
  const list = node("div");
  const said = node("p", {role: "status"});
  element.replaceChildren(node("h2", {textContent: t("admin_screens.sessions.title")}), list, said);

  async function load() {
    const users = (await call(api, "list_users")).items;
    if (stopped) return;
    list.replaceChildren(table("identity-sessions", [t("username"), t("sessions"), t("locked_until"), ""],
      users.map((u) => [u.username, String(u.sessions),
        u.locked_until ? new Date(u.locked_until * 1000).toLocaleString() : "–",
        button(t("end_sessions"), () => call(api, "revoke_sessions", {username: u.username})
          .then((r) => { said.textContent = t("ended", {count: r.sessions, user: u.username}); return load(); })
          .catch(report))])));
  }

  load().catch(report);
  return () => { stopped = true; };
}
