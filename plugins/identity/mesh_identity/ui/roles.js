// The identity plugin's admin screen for roles: list, add or change, remove.
import { button, call, field, node, table } from "./directory.js";

export function mount(element, {api, t, report}) {
  let stopped = false;
  const list = node("div");
  const [nameLabel, name] = field(t("role"), {name: "name", required: true, autocomplete: "off"});
  const [permissionsLabel, permissions] = field(t("permissions_comma"), {name: "permissions"});
  const form = node("form", {id: "identity-role"}, nameLabel, " ", permissionsLabel, " ",
    button(t("save"), null, "submit"));
  element.replaceChildren(node("h2", {textContent: t("admin_screens.roles.title")}), list,
    node("h3", {textContent: t("add_or_change_role")}), form);

  async function load() {
    const roles = (await call(api, "list_roles")).items;
    if (stopped) return;
    list.replaceChildren(table("identity-roles", [t("role"), t("permissions"), ""],
      roles.map((r) => [r.name, r.permissions.join(", "),
        button(t("remove"), () => call(api, "delete_role", {name: r.name}).then(load).catch(report))])));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    call(api, "put_role", {name: name.value,
      permissions: permissions.value.split(",").map((p) => p.trim()).filter(Boolean)})
      .then(load).catch(report);
  });
  load().catch(report);
  return () => { stopped = true; };
}
