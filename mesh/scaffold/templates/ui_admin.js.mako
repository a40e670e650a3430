// The ${name} plugin's admin screen (docs/plugin-guide.md, "Writing an admin screen"): its
// settings. The admin page imports this module when the screen is opened and calls
//   mount(element, {api, user, permissions, t, navigate, params, locale, report})
// `api(path, options)` is fetch with the administrator's token: the JSON answer, or an Error
// whose `body` is the API's {code, message, details}.

const SETTINGS = "/api/v1/plugins/${name}/settings";

export function mount(element, {api, t, report}) {
  let stopped = false;
  const heading = document.createElement("h2");
  heading.textContent = t("admin_screens.settings.title");
  const form = document.createElement("form");
  form.id = "${name}-settings";
  const saved = document.createElement("p");
  saved.setAttribute("role", "status");
  element.replaceChildren(heading, form, saved);

  api(SETTINGS).then((view) => {
    if (stopped) return;
    const inputs = {};
    for (const [field, schema] of Object.entries(view.json_schema.properties || {})) {
      const label = document.createElement("label");
      label.textContent = schema.title || field;
      const input = document.createElement("input");
      input.name = field;
      input.type = schema.type === "integer" || schema.type === "number" ? "number" : "text";
      input.value = view.values[field] ?? "";
      label.append(" ", input);
      const row = document.createElement("p");
      row.append(label);
      form.append(row);
      inputs[field] = [input, schema];
    }
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = t("save");
    form.append(button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      saved.textContent = "";
      const values = Object.fromEntries(Object.entries(inputs).map(([field, [input, schema]]) =>
        [field, schema.type === "integer" || schema.type === "number" ? Number(input.value) : input.value]));
      api(SETTINGS, {method: "PUT", body: JSON.stringify(values)})
        .then(() => { saved.textContent = t("saved"); })
        .catch(report);
    });
  }).catch(report);
  return () => { stopped = true; };
}
