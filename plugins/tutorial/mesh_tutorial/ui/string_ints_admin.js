// The tutorial's admin screen: edit the StringInt table and the plugin's settings
// (docs/plugin-guide.md, "Writing an admin screen"). The admin page imports this module when the
// screen is opened and calls
//   mount(element, {api, user, permissions, t, navigate, params, locale, report})
// `api(path, options)` is fetch with the signed-in administrator's token: it returns the JSON
// answer, or throws an Error whose `body` is the API's {code, message, details}.

const ROWS = "/api/v1/plugins/tutorial/admin/string_ints";
const SETTINGS = "/api/v1/plugins/tutorial/settings";

function field(tag, props, label) {
  const wrap = document.createElement("label");
  const text = document.createElement("span");
  text.textContent = label;
  const input = Object.assign(document.createElement(tag), props);
  wrap.append(text, " ", input);
  return [wrap, input];
}

function button(text, onClick, type = "button") {
  const b = document.createElement("button");
  b.type = type;
  b.textContent = text;
  if (onClick) b.addEventListener("click", onClick);
  return b;
}

export function mount(element, {api, t, report}) {
  let stopped = false;
  const heading = document.createElement("h2");
  heading.textContent = t("admin_screens.string_ints_admin.title");
  const table = document.createElement("table");
  table.id = "admin-rows";
  const head = document.createElement("tr");
  for (const name of ["id", "string1", "int1", ""]) {
    const th = document.createElement("th");
    th.textContent = name;
    th.scope = "col";
    head.append(th);
  }
  const body = document.createElement("tbody");
  table.createTHead().append(head);
  table.append(body);

  const add = document.createElement("form");
  add.id = "admin-add";
  const [string1Label, string1] = field("input", {name: "string1", required: true, maxLength: 50}, "string1");
  const [int1Label, int1] = field("input", {name: "int1", type: "number", value: "0", required: true}, "int1");
  add.append(string1Label, int1Label, button(t("add"), null, "submit"));

  const settingsHeading = document.createElement("h3");
  settingsHeading.textContent = t("settings");
  const settings = document.createElement("form");
  settings.id = "admin-settings";
  const [maxLabel, maxRows] = field("input", {name: "max_rows", type: "number", min: "1", required: true}, t("max_rows"));
  const saved = document.createElement("span");
  saved.className = "muted";
  saved.setAttribute("role", "status");
  settings.append(maxLabel, button(t("save"), null, "submit"), saved);

  element.replaceChildren(heading, table, add, settingsHeading, settings);

  const act = (promise) => promise.then(load).catch(report);

  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    const cell = (...content) => {
      const td = document.createElement("td");
      td.append(...content);
      return td;
    };
    const text = Object.assign(document.createElement("input"), {value: item.string1, maxLength: 50, className: "string1"});
    text.setAttribute("aria-label", `string1 ${item.id}`);
    const number = Object.assign(document.createElement("input"), {value: item.int1, type: "number", className: "int1"});
    number.setAttribute("aria-label", `int1 ${item.id}`);
    const cells = [cell(String(item.id)), cell(text), cell(number)];
    const actions = document.createElement("td");
    actions.append(
      button(t("save"), () => act(api(ROWS, {method: "PATCH", body: JSON.stringify(
        {id: item.id, string1: text.value, int1: Number(number.value)})}))),
      button(t("delete"), () => act(api(`${ROWS}/${item.id}`, {method: "DELETE"}))),
    );
    tr.append(...cells, actions);
    return tr;
  }

  async function load() {
    const [rows, current] = await Promise.all([api(ROWS), api(SETTINGS)]);
    if (stopped) return;
    body.replaceChildren(...rows.items.map(row));
    if (document.activeElement !== maxRows) maxRows.value = current.values.max_rows;
  }

  add.addEventListener("submit", (event) => {
    event.preventDefault();
    act(api(ROWS, {method: "POST", body: JSON.stringify({string1: string1.value, int1: Number(int1.value)})})
      .then(() => { string1.value = ""; }));
  });
  settings.addEventListener("submit", (event) => {
    event.preventDefault();
    saved.textContent = "";
    act(api(SETTINGS, {method: "PUT", body: JSON.stringify({max_rows: Number(maxRows.value)})})
      .then(() => { saved.textContent = t("saved"); }));
  });

  load().catch(report);
  return () => { stopped = true; };
}
