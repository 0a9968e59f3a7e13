// The operator console's behaviour: login, logout, the live calls (Server-Sent Events), hang-up and label
// buttons, the system charts. Plain JavaScript, no build step; every action is a call of the JSON API with
// the session's CSRF token (from <meta name="csrf">).
"use strict";

const I18N = JSON.parse(document.getElementById("i18n").textContent);
const CSRF = document.querySelector('meta[name="csrf"]').content;

function api(method, url, body) {
  const init = {method, headers: {"X-CSRF-Token": CSRF}, credentials: "same-origin"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(url, init);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
}

function setupLogin() {
  const form = document.getElementById("login");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const resp = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({name: data.get("name"), password: data.get("password")})});
    if (resp.ok) {
      window.location.assign(form.dataset.next || "/live");
      return;
    }
    const err = document.getElementById("login-error");
    err.textContent = resp.status === 429 ? I18N.login_locked : I18N.login_failed;
    err.hidden = false;
  });
}

async function hangup(callId) {
  if (!window.confirm(I18N.hangup_confirm)) return;
  const resp = await api("POST", "/api/calls/" + encodeURIComponent(callId) + "/hangup");
  if (!resp.ok) window.alert((await resp.json()).error || resp.status);
}

function setupLive() {
  const table = document.getElementById("calls");
  const body = table.tBodies[0];
  const control = table.dataset.control === "True";
  const state = document.getElementById("stream-state");
  table.addEventListener("click", (ev) => {
    const button = ev.target.closest("button.hangup");
    if (button) hangup(button.dataset.call);
  });
  const source = new EventSource("/api/calls/stream");
  source.onopen = () => { state.textContent = I18N.connected; state.className = "dot on"; };
  source.onerror = () => { state.textContent = I18N.disconnected; state.className = "dot off"; };
  source.onmessage = (ev) => {
    const data = JSON.parse(ev.data);
    document.getElementById("draining").hidden = !data.draining;
    document.getElementById("count").textContent = data.calls.length;
    const rows = data.calls.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.call = c.id;
      tr.dataset.state = c.state;
      tr.append(cell(c.id), cell(c.department || ""), cell(I18N[c.direction] || c.direction),
        cell(I18N.states[c.state] || c.state),
        cell(duration(c.duration_s)), cell(c.caller), cell(c.callee), cell(c.recording ? I18N.yes : I18N.no),
        cell(Object.values(c.codec).join("/")));
      const td = document.createElement("td");
      if (control) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "hangup danger";
        b.dataset.call = c.id;
        b.textContent = I18N.hangup;
        td.append(b);
      }
      tr.append(td);
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(I18N.none);
      td.colSpan = 10;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  };
}

function setupLabels() {
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.label-btn");
    if (!button) return;
    const confirm = button.dataset.confirm === "true";
    const resp = await api("POST", "/api/abuse/events/" + encodeURIComponent(button.dataset.event) + "/label",
      {confirm});
    if (!resp.ok) { window.alert((await resp.json()).error || resp.status); return; }
    const row = button.closest("tr");
    row.querySelector(".label").textContent = confirm ? I18N.confirmed : I18N.rejected;
    row.classList.add("labelled");
  });
}

const POINTS = 150;  // five minutes of samples every two seconds

function setupSystem() {
  const series = {active: [], cps: [], loss: [], backlog: [], lag: []};
  let last = null;
  async function poll() {
    try {
      const resp = await fetch("/api/system", {credentials: "same-origin"});
      if (!resp.ok) return;
      const data = await resp.json();
      const f = data.figures;
      const now = {t: data.now, attempts: f.attempts, rtp_in: f.rtp_in, rtp_lost: f.rtp_lost};
      series.active.push(f.active);
      series.backlog.push(f.detection_backlog);
      series.lag.push(f.lag_s * 1000);
      if (last) {
        const dt = Math.max(0.001, now.t - last.t);
        series.cps.push(Math.max(0, (now.attempts - last.attempts) / dt));
        const got = now.rtp_in - last.rtp_in, lost = now.rtp_lost - last.rtp_lost;
        series.loss.push(got + lost > 0 ? (100 * lost) / (got + lost) : 0);
      }
      last = now;
      for (const [key, values] of Object.entries(series)) {
        if (values.length > POINTS) values.splice(0, values.length - POINTS);
        draw(key, values);
      }
    } catch (e) { /* the next poll tries again */ }
  }
  poll();
  setInterval(poll, 2000);
}

function draw(key, values) {
  const fig = document.querySelector('[data-chart="' + key + '"]');
  if (!fig || !values.length) return;
  const top = Math.max(1, ...values);
  const step = 300 / (POINTS - 1);
  const points = values.map((v, i) => (i * step).toFixed(1) + "," + (78 - (76 * v) / top).toFixed(1));
  fig.querySelector("polyline").setAttribute("points", points.join(" "));
  const latest = values[values.length - 1];
  fig.querySelector("output").textContent = Number.isInteger(latest) ? latest : latest.toFixed(2);
}

function setupLogout() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    await api("POST", "/api/logout");
    window.location.assign("/login");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupLogout();
  setupLabels();
  const page = document.body.dataset.page;
  if (page === "login") setupLogin();
  if (page === "live") setupLive();
  if (page === "system") setupSystem();
});
