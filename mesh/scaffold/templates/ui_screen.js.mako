// The ${name} plugin's device screen (docs/plugin-guide.md, "Writing a screen"). The device
// shell at the client service's / imports this module when the screen is opened and calls
//   mount(element, {mesh, user, permissions, t, navigate, params, locale, report})
// which fills `element` (with DOM APIs and textContent: never HTML made of strings) and
// returns the function that unmounts it.

export function mount(element, {mesh, user, t, report}) {
  const heading = document.createElement("h2");
  heading.textContent = t("screens.main.title");
% if server:
  const form = document.createElement("form");
  form.id = "${name}-greet";
  const label = document.createElement("label");
  label.textContent = t("name");
  const input = document.createElement("input");
  input.name = "name";
  input.required = true;
  input.maxLength = 100;
  input.value = user.displayName || user.user;
  label.append(" ", input);
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = t("greet");
  form.append(label, " ", button);
  const answer = document.createElement("p");
  answer.id = "${name}-greeting";
  answer.setAttribute("role", "status");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    mesh.call("${name}.greet", {name: input.value})
      .then((reply) => { answer.textContent = reply.greeting; })
      .catch(report);
  });
  element.replaceChildren(heading, form, answer);
% else:
  const hello = document.createElement("p");
  hello.id = "${name}-greeting";
  hello.textContent = t("hello", {user: user.displayName || user.user});
  element.replaceChildren(heading, hello);
% endif
  return () => {};
}
