// Đình pages: what every page shares. Loaded before the page's own script; no framework,
// nothing from outside the hub.
//
// - Language: Vietnamese first, English on ?lang=en or when the browser prefers English
//   (Accept-Language, as navigator.languages); the choice is kept for the tab
//   (sessionStorage). Strings come from /assets/i18n/PAGE/{vi,en}.json; templates have named
//   placeholders ("{house} đã giơ tay"), numbers, dates and plurals go through Intl.
// - Token: read from ?token= or #token=, removed from the address bar at once
//   (history.replaceState), kept in sessionStorage for the tab only.
// - API: JSON, bearer token, an Idempotency-Key on every command, and an API refusal turned
//   into words in the page's language that name the field.
"use strict";

(function () {
  const LANGS = ["vi", "en"];
  const store = (() => {
    try { sessionStorage.setItem("dinh.probe", "1"); sessionStorage.removeItem("dinh.probe"); return sessionStorage; }
    catch (e) { const m = new Map(); return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) }; }
  })();

  // ---- Language -------------------------------------------------------------------------
  function chooseLang() {
    const q = new URLSearchParams(location.search).get("lang");
    if (q && LANGS.includes(q)) { store.setItem("dinh.lang", q); return q; }
    const kept = store.getItem("dinh.lang");
    if (kept && LANGS.includes(kept)) return kept;
    for (const l of navigator.languages || [navigator.language || "vi"]) {
      const base = String(l).slice(0, 2).toLowerCase();
      if (LANGS.includes(base)) return base;
    }
    return "vi";
  }

  let lang = chooseLang();
  let table = {};

  // The page's own table: the language's strings without the other pages' (pages.rs).
  const PAGE = location.pathname.replace(/^\/+|\/+$/g, "") || "index";

  async function loadTable(l) {
    const r = await fetch(`/assets/i18n/${encodeURIComponent(PAGE)}/${l}.json`, { cache: "no-cache" });
    if (!r.ok) throw new Error(`i18n ${l}: ${r.status}`);
    return r.json();
  }

  /** The string `key` in the page's language, `{name}` placeholders filled from `params`.
   *  A value that is an object is a plural set chosen by `params.n` (Intl.PluralRules). */
  function t(key, params) {
    let v = table[key];
    if (v === undefined) return key;
    if (typeof v === "object") {
      const n = params && typeof params.n === "number" ? params.n : 0;
      v = v[new Intl.PluralRules(lang).select(n)] ?? v.other;
    }
    if (!params) return v;
    return v.replace(/\{(\w+)\}/g, (m, name) => {
      if (!(name in params)) return m;
      const p = params[name];
      return typeof p === "number" ? num(p) : String(p);
    });
  }

  function has(key) { return Object.prototype.hasOwnProperty.call(table, key); }

  function locale() { return lang === "vi" ? "vi-VN" : "en-GB"; }
  function num(n, opts) { return new Intl.NumberFormat(locale(), opts).format(n); }
  /** A date and time (string in RFC 3339, or Date) for people: "14:30, 23/11/2026". */
  function dateTime(v, opts) {
    const d = v instanceof Date ? v : new Date(v);
    if (isNaN(d)) return "—";
    return new Intl.DateTimeFormat(locale(), opts || { dateStyle: "medium", timeStyle: "short" }).format(d);
  }
  function date(v) { return dateTime(v, { dateStyle: "medium" }); }
  function time(v) { return dateTime(v, { timeStyle: "short" }); }

  /** Fill every [data-i18n] (text), [data-i18n-placeholder], [data-i18n-title] and
   *  [data-i18n-aria-label] under `root`. */
  function apply(root) {
    root = root || document;
    root.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
    for (const attr of ["placeholder", "title", "aria-label"]) {
      const data = "i18n" + attr.replace(/(^|-)(\w)/g, (m, d, c) => c.toUpperCase());
      root.querySelectorAll(`[data-i18n-${attr}]`).forEach((e) => e.setAttribute(attr, t(e.dataset[data])));
    }
    document.documentElement.lang = lang;
    const title = document.querySelector("title[data-i18n]");
    if (title) document.title = t(title.dataset.i18n);
  }

  async function setLang(l) {
    if (!LANGS.includes(l)) return;
    table = await loadTable(l);
    lang = l;
    store.setItem("dinh.lang", l);
    const u = new URL(location.href);
    if (u.searchParams.has("lang")) { u.searchParams.set("lang", l); history.replaceState(history.state, "", u); }
    apply(document);
    document.dispatchEvent(new CustomEvent("dinh:lang", { detail: l }));
  }

  // ---- Token ----------------------------------------------------------------------------
  // The token is taken out of the address at once, so that a photographed or shared screen
  // does not carry it, and kept for this tab only.
  function takeToken() {
    const key = "dinh.token" + location.pathname;
    const u = new URL(location.href);
    const hash = new URLSearchParams(u.hash.replace(/^#/, ""));
    const fresh = u.searchParams.get("token") || hash.get("token");
    if (u.searchParams.has("token") || hash.has("token")) {
      u.searchParams.delete("token");
      hash.delete("token");
      const h = hash.toString();
      u.hash = h ? "#" + h : "";
      history.replaceState(history.state, "", u.pathname + u.search + u.hash);
    }
    if (fresh) store.setItem(key, fresh);
    return fresh || store.getItem(key) || "";
  }
  const token = takeToken();

  function claimsOf(tok) {
    try {
      const b = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) { return null; }
  }
  const claims = claimsOf(token);

  // ---- API ------------------------------------------------------------------------------
  /** A random id (crypto.randomUUID needs a secure context; plain HTTP on a LAN is not). */
  function randomId() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = (body && body.error) || "";
      this.body = body || {};
      this.retryAfter = 0;
    }
    /** For a person, in the page's language, naming the field when the API named one. */
    get text() { return errorText(this); }
  }

  /** Call the API. `body` (an object) goes as JSON; a POST, PUT or DELETE carries an
   *  Idempotency-Key (pass `opts.key` to retry the same command). Resolves to the JSON answer
   *  (or null for 204); rejects with an ApiError. */
  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = { accept: "application/json" };
    const tok = opts.token || token;
    if (tok) headers.authorization = "Bearer " + tok;
    let payload;
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      payload = body;
      headers["content-type"] = opts.type || (body.type || "application/octet-stream");
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    if (method !== "GET" && method !== "HEAD") headers["idempotency-key"] = opts.key || randomId();
    let r;
    try {
      r = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, { error: "network", message: String(e) });
    }
    if (r.status === 204) return null;
    const ct = r.headers.get("content-type") || "";
    const data = ct.includes("json") ? await r.json().catch(() => null) : opts.raw ? await r.blob() : await r.text();
    if (!r.ok) {
      const err = new ApiError(r.status, typeof data === "object" ? data : { message: String(data || "") });
      err.retryAfter = Number(r.headers.get("retry-after")) || 0;
      throw err;
    }
    return data;
  }

  // API refusals whose English message has a translation of its own.
  const MESSAGES = [
    [/meeting has not been scheduled/, "error.msg.not_scheduled"],
    [/meeting is already scheduled/, "error.msg.already_scheduled"],
    [/meeting is not open/, "error.msg.not_open"],
    [/meeting is already open/, "error.msg.already_open"],
    [/meeting is closed/, "error.msg.closed"],
    [/no agenda item is in progress/, "error.msg.no_agenda_item"],
    [/there is no agenda item/, "error.msg.no_such_agenda_item"],
    [/relay is already/, "error.msg.relay_already"],
    [/nobody holds the floor/, "error.msg.no_floor"],
    [/is not connected/, "error.msg.not_connected"],
    [/notice is already withdrawn/, "error.msg.notice_withdrawn"],
    [/cannot (\w+) an item that is (\w+)/, "error.msg.wrong_status"],
  ];
  const REASONS = [
    [/must not be empty|missing field/, "error.reason.empty"],
    [/longer than (\d+)/, "error.reason.too_long"],
    [/between (\d+) and (\d+)/, "error.reason.range"],
    [/more than (\d+)/, "error.reason.too_many"],
    [/RFC 3339|not a date|YYYY-MM-DD/, "error.reason.date"],
    [/before|after/, "error.reason.order"],
    [/letters, digits/, "error.reason.id"],
  ];

  /** The field an API message names: "invalid title: …", "missing field `house`",
   *  "unknown field `x`", "at: …", "file 'x.wav': …". */
  function fieldOf(message) {
    const m = /invalid (\w+):/.exec(message) || /(?:missing|unknown) field `(\w+)`/.exec(message) ||
      /^(\w+)(?: '[^']*')?: /.exec(message) || /\bfield (\w+)/.exec(message);
    return m ? m[1] : null;
  }

  function errorText(err) {
    const msg = err.body.message || err.message || "";
    if (err.status === 0) return t("error.network");
    const field = fieldOf(msg);
    if (field && (err.status === 422 || err.status === 400 || err.code === "bad_body" || err.code === "refused")) {
      const label = has("field." + field) ? t("field." + field) : field;
      let reason = t("error.reason.invalid");
      for (const [re, key] of REASONS) {
        const m = re.exec(msg);
        if (m) { reason = t(key, { max: m[1] ? Number(m[1]) : 0, min: m[1] ? Number(m[1]) : 0, to: m[2] ? Number(m[2]) : 0 }); break; }
      }
      return t("error.field", { field: label, reason });
    }
    for (const [re, key] of MESSAGES) {
      const m = re.exec(msg);
      if (m) return t(key, { action: m[1] || "", status: m[2] ? t("feedback.status." + m[2]) : "" });
    }
    if (err.code === "rate_limited") return t("error.rate_limited", { n: Math.max(1, Math.ceil(err.retryAfter || 60)) });
    if (err.code && has("error." + err.code)) return t("error." + err.code);
    if (err.status === 401) return t("error.token_invalid");
    if (err.status === 403) return t("error.wrong_role");
    if (err.status === 404) return t("error.not_found");
    if (err.status === 409) return t("error.conflict");
    if (err.status === 413) return t("error.too_large");
    if (err.status >= 500) return t("error.server");
    return t("error.unknown", { status: err.status });
  }

  // ---- Small DOM helpers ----------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  /** An element with text (never HTML) and properties. */
  function el(tag, text, props) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "class") e.className = v;
        else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
        else if (k === "data") Object.assign(e.dataset, v);
        else if (k in e) e[k] = v;
        else e.setAttribute(k, v);
      }
    }
    return e;
  }
  function show(e, on) { (typeof e === "string" ? $(e) : e).classList.toggle("hidden", !on); }

  /** A form's fields checked before sending: returns null when all pass, else marks the first
   *  bad field and returns the message (in the page's language) naming it. */
  function check(form) {
    for (const input of form.querySelectorAll("input, textarea, select")) {
      input.removeAttribute("aria-invalid");
      if (input.checkValidity()) continue;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      const name = input.dataset.field || input.name;
      const label = has("field." + name) ? t("field." + name) : name;
      const v = input.validity;
      let reason = t("error.reason.invalid");
      if (v.valueMissing) reason = t("error.reason.empty");
      else if (v.tooLong) reason = t("error.reason.too_long", { max: input.maxLength });
      else if (v.rangeUnderflow || v.rangeOverflow) reason = t("error.reason.range", { min: Number(input.min), to: Number(input.max) });
      return t("error.field", { field: label, reason });
    }
    return null;
  }

  // ---- Coming back by itself -------------------------------------------------------------
  /** Resolves once the hub answers /healthz: a cheap probe every 1 to 2 s (random, so that
   *  300 screens do not all arrive in the same 100 ms), for as long as it takes. */
  function hubAnswers() {
    return new Promise((resolve) => {
      const probe = async () => {
        try {
          const r = await fetch("/healthz", { cache: "no-store" });
          if (r.ok) { resolve(); return; }
        } catch (e) { /* down: try again */ }
        setTimeout(probe, 1000 + Math.random() * 1000);
      };
      setTimeout(probe, Math.random() * 1000);
    });
  }

  /** The record's live events (/api/events, server-sent events read with fetch so the token
   *  stays in a header), after position `from` (default 0: the whole visible log). Calls
   *  `onEvent(event)` for each, `onState(up)` when the stream comes and goes; resumes after the
   *  last position seen, forever, once the hub answers again. */
  function events(onEvent, onState, from) {
    let after = from || 0;
    let stopped = false;
    const run = async () => {
      while (!stopped) {
        try {
          const r = await fetch(`/api/events?from=${after}`, {
            headers: { authorization: "Bearer " + token, accept: "text/event-stream" }, cache: "no-store",
          });
          if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
          if (onState) onState(true);
          const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            let i;
            while ((i = buf.indexOf("\n\n")) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
              if (!data) continue;
              try {
                const ev = JSON.parse(data);
                if (ev.position > after) after = ev.position;
                onEvent(ev);
              } catch (e) { /* a comment or keep-alive */ }
            }
          }
        } catch (e) {
          if (e instanceof ApiError && (e.status === 401 || e.status === 403)) { if (onState) onState(false, e); return; }
        }
        if (onState) onState(false);
        if (!stopped) await hubAnswers();
      }
    };
    run();
    return { stop: () => { stopped = true; } };
  }

  // Every CSP violation is counted, so that a test (and a curious operator) can see one.
  window.dinhCspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.dinhCspViolations.push(e.violatedDirective + " " + (e.blockedURI || ""));
  });

  /** Resolves once the strings are loaded and applied. */
  const ready = loadTable(lang).catch(() => { lang = "vi"; return loadTable("vi"); })
    .then((tb) => { table = tb; apply(document); document.body.classList.remove("loading"); });

  /** The language switch: a button with [data-lang-switch] toggles vi/en. */
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-lang-switch]");
    if (b) setLang(lang === "vi" ? "en" : "vi");
  });

  window.Dinh = {
    get lang() { return lang; }, t, has, num, dateTime, date, time, apply, setLang, ready,
    token, claims, claimsOf, api, ApiError, errorText, randomId, $, el, show, check, store,
    hubAnswers, events,
  };
})();
