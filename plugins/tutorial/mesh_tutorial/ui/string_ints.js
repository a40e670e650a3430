// The tutorial's device screen: the StringInt table, live (docs/plugin-guide.md, "Writing a
// screen"). The shell imports this module when the screen is opened and calls
//   mount(element, {mesh, user, permissions, t, navigate, params, report})
// which fills `element` and returns the function that unmounts it.

export function mount(element, {mesh, t, report}) {
  element.innerHTML = `
    <h2 class="screen-title"></h2>
    <p class="lead"></p>
    <table>
      <thead><tr><th>id</th><th>string1</th><th class="num">int1</th><th class="actions"></th></tr></thead>
      <tbody id="rows"><tr><td colspan="4"></td></tr></tbody>
    </table>
    <form id="add">
      <input id="string1" placeholder="string1" required maxlength="50">
      <input id="int1" type="number" placeholder="int1" value="0" required>
      <button type="submit"></button>
    </form>
    <p class="stale" hidden></p>
    <ul class="pending"></ul>
    <ul class="failed"></ul>`;
  element.querySelector(".screen-title").textContent = t("screens.string_ints.title");
  element.querySelector(".lead").textContent = t("lead");
  element.querySelector("#add button").textContent = t("add");
  element.querySelector("th.actions").textContent = t("actions");
  const rows = element.querySelector("#rows");
  rows.querySelector("td").textContent = t("waiting");

  const act = (promise) => promise.catch(report);
  // Row changes work offline too: queued on the device, sent when it is back, each applied
  // once. What waits is listed (and can be cancelled); what failed for good is shown.
  const queue = (name, payload) => mesh.action(name, payload, {offline: true}).catch((error) => {
    if (error.code !== "cancelled") report(error);
  });
  const stale = element.querySelector(".stale");
  const pending = element.querySelector(".pending");
  const failed = element.querySelector(".failed");

  async function showQueue() {
    const waiting = await mesh.pendingActions();
    pending.replaceChildren(...waiting.map((entry) => {
      const li = document.createElement("li");
      li.dataset.actionId = entry.actionId;
      li.textContent = `${entry.action} ${JSON.stringify(entry.payload)} `;
      if (!entry.sending) li.append(button("×", t("cancel"), () => mesh.cancelAction(entry.actionId).catch(report)));
      return li;
    }));
    pending.dataset.count = waiting.length;
    pending.title = t("pending", {count: waiting.length});
    const gone = (await mesh.settledActions()).filter((entry) => entry.error);
    failed.replaceChildren(...gone.map((entry) => {
      const li = document.createElement("li");
      li.dataset.actionId = entry.actionId;
      li.dataset.code = entry.error.code;
      li.textContent = t("failed", {action: entry.action, message: entry.error.message});
      return li;
    }));
  }
  const stopQueue = mesh.onActions(() => showQueue().catch(report));
  showQueue().catch(report);

  function button(label, title, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  // Rows are kept and updated in place, keyed by id, so a button is never replaced under a
  // user's pointer by an update that arrives mid-click.
  function row(item) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.id;
    for (const cls of ["id", "string1", "num int1"]) {
      const td = document.createElement("td");
      td.className = cls;
      tr.append(td);
    }
    const id = item.id;
    const actions = document.createElement("td");
    actions.append(
      button("−1", t("subtract_one"), () => queue("tutorial.add_int_value", {string_int_id: id, offset: -1})),
      button("+1", t("add_one"), () => queue("tutorial.add_int_value", {string_int_id: id, offset: 1})),
      button("Aa", t("toggle_case"), () => queue("tutorial.string_cap_toggle", {string_int_id: id})),
      button("×2", t("double"), () => act(mesh.call("tutorial.double_string_int", {id}))),
    );
    tr.append(actions);
    return tr;
  }

  function render(payload, version, {stale: old = false, at = 0} = {}) {
    stale.hidden = !old;
    stale.textContent = old ? t("stale", {age: Math.round((Date.now() - at) / 1000)}) : "";
    const existing = new Map([...rows.querySelectorAll("tr[data-id]")].map((tr) => [tr.dataset.id, tr]));
    const ordered = payload.items.map((item) => {
      const tr = existing.get(String(item.id)) ?? row(item);
      tr.querySelector(".id").textContent = item.id;
      tr.querySelector(".string1").textContent = item.string1;
      tr.querySelector(".int1").textContent = item.int1;
      return tr;
    });
    if (ordered.length) {
      rows.replaceChildren(...ordered);
    } else {
      const td = document.createElement("td");
      td.colSpan = 4;
      td.textContent = t("empty");
      rows.replaceChildren(document.createElement("tr"));
      rows.firstChild.append(td);
    }
  }

  element.querySelector("#add").addEventListener("submit", (event) => {
    event.preventDefault();
    act(mesh.call("tutorial.add_string_int", {
      string1: element.querySelector("#string1").value,
      int1: Number(element.querySelector("#int1").value),
    }));
  });

  const stop = mesh.subscribe("tutorial.string_ints", {}, render, report);
  return () => { stop(); stopQueue(); };
}
