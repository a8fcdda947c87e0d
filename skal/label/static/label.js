// skal label: keyboard and buttons post labels to the JSON API; the server
// (SQLite) holds all state, so a reload always shows the truth.
(function () {
  "use strict";
  const classes = JSON.parse(document.getElementById("class-names").textContent);
  const grid = document.getElementById("grid");
  const message = document.getElementById("message");
  const who = document.getElementById("who");
  let generation = Number(document.body.dataset.generation);
  let curveRounds = -1;
  who.value = localStorage.getItem("skal-label-who") || "";
  who.addEventListener("change", () => localStorage.setItem("skal-label-who", who.value));

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
  }

  function tiles() {
    return Array.from(grid.querySelectorAll(".tile:not(.unreadable)"));
  }

  function current() {
    return grid.querySelector(".tile.current") || null;
  }

  function select(tile) {
    grid.querySelectorAll(".tile.current").forEach((t) => t.classList.remove("current"));
    if (tile) tile.classList.add("current");
  }

  function selectFirst() {
    if (!current()) select(tiles()[0] || null);
  }

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ who: who.value || undefined }, body)),
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error(data.detail || res.statusText);
    return data;
  }

  function removeTile(tile) {
    const next = tile.nextElementSibling;
    tile.remove();
    select(next && !next.classList.contains("unreadable") ? next : null);
    selectFirst();
    if (!tiles().length) loadBatch();
  }

  async function label(name) {
    const tile = current();
    if (!tile) return;
    try {
      const data = await post("/api/labels", { id: tile.dataset.id, label: name });
      say((data.stored ? "labeled " : "already labeled ") + tile.dataset.id + " as " + name);
      removeTile(tile);
      refreshStatus();
    } catch (err) {
      say(err.message, true);
    }
  }

  async function skip() {
    const tile = current();
    if (!tile) return;
    try {
      await post("/api/skip", { id: tile.dataset.id });
      say("skipped " + tile.dataset.id);
      removeTile(tile);
      refreshStatus();
    } catch (err) {
      say(err.message, true);
    }
  }

  async function undo() {
    try {
      const data = await post("/api/undo", {});
      say("undid " + data.undone.item_id);
      await loadBatch();
      refreshStatus();
    } catch (err) {
      say(err.message, true);
    }
  }

  function markUnreadable(tile) {
    if (tile.classList.contains("unreadable")) return;
    const wasCurrent = tile.classList.contains("current");
    tile.classList.add("unreadable");
    tile.classList.remove("current");
    tile.querySelector("figcaption").textContent = tile.dataset.id + ": unreadable, skipped";
    if (wasCurrent) selectFirst();
    post("/api/skip", { id: tile.dataset.id, reason: "unreadable" })
      .then(refreshStatus)
      .catch((err) => say(err.message, true))
      .finally(() => { if (!tiles().length) loadBatch(); });
  }

  function wire(tile) {
    const img = tile.querySelector("img");
    img.addEventListener("error", () => markUnreadable(tile));
    if (img.complete && img.naturalWidth === 0) markUnreadable(tile);
    tile.addEventListener("click", () => { if (!tile.classList.contains("unreadable")) select(tile); });
  }

  function renderBatch(batch) {
    grid.innerHTML = "";
    generation = batch.generation;
    if (!batch.items.length) {
      grid.innerHTML = '<p class="empty">' +
        (batch.done ? "Every item of the pool is labeled or skipped." : "Preparing the next batch\u2026") + "</p>";
      return;
    }
    for (const item of batch.items) {
      const fig = document.createElement("figure");
      fig.className = "tile";
      fig.dataset.id = item.id;
      const img = document.createElement("img");
      img.alt = item.id;
      img.src = item.url;
      const cap = document.createElement("figcaption");
      cap.textContent = item.id;
      fig.append(img, cap);
      grid.append(fig);
      wire(fig);
    }
    selectFirst();
  }

  async function loadBatch() {
    const res = await fetch("/api/batch");
    renderBatch(await res.json());
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
    return String(v);
  }

  function renderStatus(s) {
    const acc = s.cv_accuracy === null ? "not yet (needs 2 labels per class)" : s.cv_accuracy.toFixed(3);
    document.getElementById("progress").innerHTML = "";
    const lines = [
      s.n_labeled + " labeled of " + s.n_pool + " (" + s.n_skipped + " skipped, " + s.n_unreadable + " unreadable)",
      "estimated accuracy (cross-validation on the labeled set): " + acc,
      "model: " + s.worker.model + ", strategy: " + s.worker.strategy + ", worker: " + s.worker.phase,
    ];
    if (s.worker.error) lines.push("worker error: " + s.worker.error);
    for (const line of lines) {
      const p = document.createElement("div");
      p.textContent = line;
      document.getElementById("progress").append(p);
    }
    const table = document.getElementById("stopping");
    table.innerHTML = "";
    for (const [name, st] of Object.entries(s.stopping || {})) {
      const tr = document.createElement("tr");
      const detail = Object.entries(st)
        .filter(([k]) => !["name", "should_stop", "n_updates", "stopped_at"].includes(k))
        .map(([k, v]) => k + " " + fmt(v)).join(", ");
      tr.append(cell(name), cell(st.should_stop ? "stop" : "continue", st.should_stop ? "stop-yes" : ""), cell(detail));
      table.append(tr);
    }
    const recent = document.getElementById("recent");
    recent.innerHTML = "";
    for (const a of s.recent) {
      const li = document.createElement("li");
      li.dataset.id = a.item_id;
      li.textContent = a.item_id + ": " + (a.kind === "label" ? a.label : a.kind) + " (" + a.who + ")";
      recent.append(li);
    }
    const bad = document.getElementById("unreadable");
    bad.innerHTML = "";
    for (const a of s.unreadable) {
      const li = document.createElement("li");
      li.dataset.id = a.item_id;
      li.textContent = a.item_id + ": unreadable, skipped";
      bad.append(li);
    }
    if (s.curve.length !== curveRounds) {
      curveRounds = s.curve.length;
      fetch("/curve.svg").then((r) => r.text()).then((svg) => { document.getElementById("curve").innerHTML = svg; });
    }
    if (s.batch.generation !== generation && (!tiles().length || s.batch.model_round !== null)) loadBatch();
  }

  async function refreshStatus() {
    try {
      const res = await fetch("/api/status");
      renderStatus(await res.json());
    } catch (err) {
      say("server unreachable: " + err.message, true);
    }
  }

  document.querySelectorAll("button.cls").forEach((b) => b.addEventListener("click", () => label(b.dataset.label)));
  document.getElementById("skip").addEventListener("click", skip);
  document.getElementById("undo").addEventListener("click", undo);
  document.addEventListener("keydown", (ev) => {
    if (ev.target === who || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const button = document.querySelector('nav button[data-key="' + CSS.escape(ev.key.toLowerCase()) + '"]');
    if (button && ev.key !== "") { ev.preventDefault(); button.click(); return; }
    const all = tiles();
    const i = all.indexOf(current());
    if (ev.key === "ArrowRight" && i + 1 < all.length) select(all[i + 1]);
    if (ev.key === "ArrowLeft" && i > 0) select(all[i - 1]);
  });

  grid.querySelectorAll(".tile").forEach(wire);
  selectFirst();
  curveRounds = JSON.parse(document.getElementById("initial-status").textContent).curve.length;
  renderStatus(JSON.parse(document.getElementById("initial-status").textContent));
  setInterval(refreshStatus, 2000);
})();
