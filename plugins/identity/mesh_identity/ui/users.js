// The identity plugin's admin screen for users: list, add or change, remove.
import { button, call, field, node, table } from "./directory.js";

export function mount(element, {api, t, report}) {
  let stopped = false;
  const list = node("div");
  const [nameLabel, username] = field(t("username"), {name: "username", required: true, autocomplete: "off"});
  const [displayLabel, displayName] = field(t("display_name"), {name: "display_name"});
  const [rolesLabel, roles] = field(t("roles_comma"), {name: "roles"});
  const [passwordLabel, password] = field(t("password"), {name: "password", type: "password", autocomplete: "new-password"});
  const form = node("form", {id: "identity-user"}, nameLabel, " ", displayLabel, " ", rolesLabel, " ",
    passwordLabel, " ", button(t("save"), null, "submit"));
  element.replaceChildren(node("h2", {textContent: t("admin_screens.users.title")}), list,
    node("h3", {textContent: t("add_or_change_user")}), form);

  async function load() {
    const users = (await call(api, "list_users")).items;
    if (stopped) return;
    list.replaceChildren(table("identity-users",
      [t("username"), t("display_name"), t("roles"), t("enabled"), ""],
      users.map((u) => [u.username, u.display_name, u.roles.join(", "), u.enabled ? "✓" : "–",
        button(t("remove"), () => call(api, "delete_user", {username: u.username}).then(load).catch(report))])));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {username: username.value, display_name: displayName.value,
      roles: roles.value.split(",").map((r) => r.trim()).filter(Boolean)};
    if (password.value) body.password = password.value;
    call(api, "put_user", body).then(() => { password.value = ""; return load(); }).catch(report);
  });
  load().catch(report);
  return () => { stopped = true; };
}
