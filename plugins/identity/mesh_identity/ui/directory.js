// What the identity plugin's admin screens share: calling its RPCs through the admin API
// (`POST /api/v1/rpc/identity/<rpc>`, as the signed-in administrator) and building tables
// and forms with DOM APIs.

export const call = (api, rpc, body = {}) =>
  api(`/api/v1/rpc/identity/${rpc}`, {method: "POST", body: JSON.stringify(body)});

export function node(tag, props = {}, ...children) {
  const element = Object.assign(document.createElement(tag), props);
  element.append(...children.filter((c) => c !== null && c !== undefined));
  return element;
}

/** A table with a header row of `head` and a row of cells per item of `rows`. */
export function table(id, head, rows) {
  const header = node("tr", {}, ...head.map((h) => node("th", {scope: "col", textContent: h})));
  const body = rows.map((cells) => node("tr", {}, ...cells.map((c) => node("td", {}, c))));
  const made = node("table", {id});
  made.createTHead().append(header);
  made.append(node("tbody", {}, ...body));
  return made;
}

/** A labelled input: [the label wrapping it, the input]. */
export function field(label, props) {
  const input = node("input", props);
  return [node("label", {}, node("span", {textContent: label}), " ", input), input];
}

export const button = (text, onClick, type = "button") =>
  node("button", {type, textContent: text, onclick: onClick});
