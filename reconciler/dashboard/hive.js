// Progressive enhancement only: every form works without this file.
"use strict";
(() => {
  const main = document.getElementById("main");
  const toast = document.getElementById("toast");
  let timer = null;

  function say(text, bad) {
    if (!toast) return;
    toast.innerHTML = "";
    const p = document.createElement("p");
    p.className = bad ? "flash bad" : "flash";
    p.textContent = text;
    toast.appendChild(p);
  }

  function busyTyping() {
    const el = document.activeElement;
    return el && main.contains(el) && el.tagName === "INPUT" && el.value !== "";
  }

  async function refresh() {
    if (busyTyping()) { schedule(); return; }
    const url = new URL(location.href);
    url.searchParams.delete("msg");
    const resp = await fetch(url, { headers: { "X-Hive-Partial": "1" }, credentials: "same-origin" });
    if (!resp.ok) return;
    main.innerHTML = await resp.text();
    pendingCount(resp.headers.get("X-Hive-Pending"));
    wire();
  }

  function pendingCount(n) {
    const link = document.querySelector('nav a[href="/approvals"]');
    if (!link || n === null) return;
    let badge = link.querySelector(".count");
    if (n === "0") { if (badge) badge.remove(); return; }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "count";
      link.append(" ", badge);
    }
    badge.textContent = n;
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 250); }

  function wire() {
    for (const form of main.querySelectorAll("form.act")) {
      if (form.dataset.wired) continue;
      form.dataset.wired = "1";
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const buttons = form.querySelectorAll("button");
        buttons.forEach((b) => { b.disabled = true; });
        try {
          const resp = await fetch(form.action, {
            method: "POST", body: new FormData(form), credentials: "same-origin",
            headers: { "X-Hive-Fetch": "1" },
          });
          const data = await resp.json().catch(() => ({}));
          if (resp.ok && data.ok) say(data.message || "◆ done", false);
          else say("✕ " + ((data.error && data.error.message) || resp.statusText), true);
        } catch (err) {
          say("✕ " + err, true);
        } finally {
          buttons.forEach((b) => { b.disabled = false; });
          await refresh();
        }
      });
    }
    startFlow();
  }

  let flow = null;
  function startFlow() {
    const list = document.getElementById("flow");
    if (!list || flow) return;
    const state = document.getElementById("flow-state");
    flow = new EventSource(list.dataset.stream);
    const add = (id, cls, when, who, body) => {
      const li = document.createElement("li");
      if (id) li.id = "msg-" + id;
      if (cls) li.className = cls;
      for (const [k, v] of [["when", when], ["who", who], ["body", body]]) {
        const span = document.createElement("span");
        span.className = k;
        span.textContent = v;
        li.appendChild(span);
      }
      list.prepend(li);
      while (list.children.length > 500) list.lastChild.remove();
    };
    flow.addEventListener("send", (ev) => {
      const m = JSON.parse(ev.data).message || {};
      add(m.id, "", (m.sent_at || "").slice(11, 19), `${m.from} → ${m.to}`, m.body || "");
    });
    flow.addEventListener("ack", (ev) => {
      const d = JSON.parse(ev.data);
      const li = document.getElementById("msg-" + d.message_id);
      if (li) li.classList.add("acked");
    });
    flow.addEventListener("dead_letter", (ev) => {
      const d = JSON.parse(ev.data);
      add(null, "dead", "", `✕ dead letter ${d.from} → ${d.to}`, `message ${d.message_id}`);
    });
    flow.addEventListener("link", (ev) => {
      if (state) state.textContent = ev.data === "up" ? "live" : "broker down, reconnecting…";
    });
    flow.onerror = () => { if (state) state.textContent = "reconnecting…"; };
  }

  if (main) {
    wire();
    if (main.dataset.live && window.EventSource) {
      const live = new EventSource(main.dataset.live);
      live.addEventListener("status", schedule);
    }
  }
})();
