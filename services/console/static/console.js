// The console's only script: the live queue and template autofill. Pages work without it.
"use strict";

(function liveQueue() {
  const table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  const body = table.tBodies[0];
  const source = new EventSource(table.dataset.live);
  source.addEventListener("ticket", (message) => {
    const data = JSON.parse(message.data);
    // The row is rendered (and escaped) by the server; parse it inside a <tbody>.
    const holder = document.createElement("tbody");
    holder.innerHTML = data.html;
    const row = holder.firstElementChild;
    if (!row) return;
    row.classList.add("fresh");
    const old = body.querySelector(`tr[data-ticket-id="${CSS.escape(data.id)}"]`);
    // Keep the counts in step: the page's figures were read when it was rendered.
    bump(old ? old.dataset.status : null, -1);
    bump(row.dataset.status, +1);
    if (!old) bump("total", +1);
    if (old) old.replaceWith(row); else body.prepend(row);
    const empty = document.querySelector("p.empty");
    if (empty) empty.remove();
  });
  source.addEventListener("end", () => source.close());

  function bump(which, by) {
    if (!which) return;
    const figure = which === "total"
      ? document.getElementById("total")
      : document.querySelector(`#counts [data-status="${CSS.escape(which)}"]`);
    if (figure) figure.textContent = String(Number(figure.textContent) + by);
  }
})();

(function templateAutofill() {
  const select = document.querySelector("select[data-autofill]");
  if (!select) return;
  const reply = document.getElementById("reply");
  select.addEventListener("change", async () => {
    if (!select.value) return;
    const url = `${select.dataset.autofill}?template_id=${encodeURIComponent(select.value)}`;
    const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!answer.ok) return;
    const filled = await answer.json();
    reply.querySelector("textarea[name=body]").value = filled.body;
  });
})();
