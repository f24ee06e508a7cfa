// Đình: the officials' page. The feedback register (filtered and paged by the hub), an item's
// history and the actions the record allows the role, attendance, the printable minutes,
// pictures drawn as SVG here, exports and the log's integrity, notices.
//
// Sections are chosen by the address's hash (#register?status=open, #item/ID, #minutes/ID...),
// so the browser's back button and a reload keep the place. Strings come from the i18n tables
// (official.*); nothing is built by joining words.
"use strict";

(function () {
  const { t, $, el, api, show } = Dinh;
  const me = Dinh.claims || {};
  const TABS = ["register", "item", "attendance", "minutes", "charts", "exports", "notices"];
  const STATUSES = ["received", "classified", "assigned", "answered", "confirmed", "forwarded", "closed", "withdrawn"];
  const KIND_KEYS = {
    feedback: "official.kind_feedback", complaint: "official.kind_complaint",
    denunciation: "official.kind_denunciation", none: "official.kind_none",
  };
  const EVENT_KEYS = {
    FeedbackReceived: "official.ev_received", FeedbackClassified: "official.ev_classified",
    FeedbackAssigned: "official.ev_assigned", DeadlineExtended: "official.ev_extended",
    FeedbackForwarded: "official.ev_forwarded", FeedbackAnswered: "official.ev_answered",
    AnswerConfirmed: "official.ev_confirmed", FeedbackReopened: "official.ev_reopened",
    FeedbackClosed: "official.ev_closed", FeedbackWithdrawn: "official.ev_withdrawn",
    FeedbackOverdue: "official.ev_overdue",
  };
  const ACTOR_KEYS = {
    chair: "official.actor_chair", house: "official.actor_house",
    official: "official.actor_official", system: "official.actor_system",
  };
  const VN = "Asia/Ho_Chi_Minh";
  const S = { dir: null, meetings: [], page: null, query: "", item: null, history: [], position: 0, shown: false };

  const kindText = (k) => t(KIND_KEYS[k || "none"] || "official.kind_none");
  const statusText = (s) => t("feedback.status." + s);
  const houseName = (id) => {
    const h = S.dir && S.dir.houses.find((x) => x.id === id);
    return h ? h.name : id;
  };
  const meetingTitle = (id) => {
    const m = S.meetings.find((x) => x.meeting === id);
    return m ? m.title : id;
  };
  /** A calendar date ("2026-12-07") for people, never shifted by the browser's time zone. */
  const day = (d) => (d ? Dinh.dateTime(d + "T00:00:00Z", { dateStyle: "medium", timeZone: "UTC" }) : "—");
  const vnTime = (v) => Dinh.dateTime(v, { dateStyle: "medium", timeStyle: "short", timeZone: VN });
  /** A time of day in the minutes: always Vietnam's clock, whatever the printing computer's. */
  const vnClock = (v) => Dinh.dateTime(v, { timeStyle: "short", timeZone: VN });
  const minutesOf = (secs) => Dinh.num(Math.round((secs || 0) / 60));

  function fail(err, where) {
    const box = where || $("error");
    box.textContent = err instanceof Dinh.ApiError ? explain(err) : String(err);
  }
  /** A refusal in words. The domain's refusals that only officials meet have sentences here. */
  function explain(err) {
    const msg = (err.body && err.body.message) || "";
    if (/assigned to someone else/.test(msg)) return t("official.err_not_assignee");
    if (err.code === "log_shared") return t("official.err_log_shared");
    return err.text;
  }

  // ---- Sections --------------------------------------------------------------------------
  function route() {
    const h = location.hash.replace(/^#/, "");
    const [path, qs] = h.split("?");
    const [tab, arg] = path.split("/");
    const name = TABS.includes(tab) ? tab : "register";
    for (const id of TABS) show(id, id === name);
    document.querySelectorAll("nav.tabs a").forEach((a) => {
      const on = a.dataset.tab === name || (name === "item" && a.dataset.tab === "register");
      a.classList.toggle("current", on);
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    $("error").textContent = "";
    if (name === "register") return loadRegister(qs || "");
    if (name === "item" && arg) return openItem(decodeURIComponent(arg));
    if (name === "attendance") return loadAttendance(arg && decodeURIComponent(arg));
    if (name === "minutes") return loadMinutes(arg && decodeURIComponent(arg));
    if (name === "charts") return loadCharts();
    if (name === "exports") return loadIntegrity();
    if (name === "notices") return loadNotices();
    return null;
  }

  // ---- The register ----------------------------------------------------------------------
  function fillSelect(sel, options, keep) {
    const was = keep !== undefined ? keep : sel.value;
    sel.replaceChildren(...options.map(([v, text]) => el("option", text, { value: v })));
    sel.value = was;
    if (sel.value !== was) sel.value = "";
  }
  const withCount = (label, n) => (n === undefined ? label : t("official.option_count", { label, n }));

  function renderFilterChoices(params) {
    const c = (S.page && S.page.counts) || { status: {}, kind: {} };
    fillSelect($("fStatus"), [["", t("official.all")], ["open", t("official.status_open")]]
      .concat(STATUSES.map((s) => [s, withCount(statusText(s), c.status[s] || 0)])), params.get("status") || "");
    fillSelect($("fKind"), [["", t("official.all")]]
      .concat(Object.keys(KIND_KEYS).map((k) => [k, withCount(kindText(k), c.kind[k] || 0)])), params.get("kind") || "");
    fillSelect($("fHouse"), [["", t("official.all")]]
      .concat(((S.dir && S.dir.houses) || []).map((h) => [h.id, h.name])), params.get("house") || "");
    fillSelect($("fMeeting"), [["", t("official.all")]]
      .concat(S.meetings.map((m) => [m.meeting, m.title])), params.get("meeting") || "");
    $("fAssignee").value = params.get("assignee") || "";
    $("fQ").value = params.get("q") || "";
    $("fSort").value = params.get("sort") || "newest";
    $("fOverdue").checked = params.get("overdue") === "true";
    $("overdueLabel").textContent = withCount(t("official.only_overdue"), c.overdue);
    $("assignees").replaceChildren(...((c.assignees || []).map((a) => el("option", null, { value: a }))));
  }

  function formQuery(offset) {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData($("filters"))) if (String(v).trim()) q.set(k, String(v).trim());
    if (offset) q.set("offset", String(offset));
    return q.toString();
  }

  async function loadRegister(qs) {
    S.query = qs;
    const params = new URLSearchParams(qs);
    try {
      const page = await api("GET", "/api/feedback" + (qs ? "?" + qs : ""));
      if (S.query !== qs) return; // a newer query went out meanwhile
      S.page = page;
      if (page.position > S.position) S.position = page.position;
      renderRegister(page, params);
    } catch (e) { fail(e); }
  }

  function deadlineText(r) {
    if (!r.deadline) return "—";
    if (r.working_days_left === null || r.working_days_left === undefined) return day(r.deadline);
    let left;
    if (r.past_deadline) left = r.working_days_left < 0 ? t("official.days_late", { n: -r.working_days_left }) : t("official.late");
    else if (r.working_days_left === 0) left = t("official.due_today");
    else left = t("official.days_left", { n: r.working_days_left });
    return t("official.deadline_left", { date: day(r.deadline), left });
  }

  function renderRegister(page, params) {
    renderFilterChoices(params);
    const labels = ["official.col_raised", "official.col_house", "official.col_content", "official.col_kind",
      "official.col_status", "official.col_assignee", "official.col_deadline"].map((k) => t(k));
    const rows = page.items.map((r) => {
      const late = r.overdue || r.past_deadline;
      const tr = el("tr", null, { class: late ? "late" : "" });
      const content = el("a", r.content.length > 140 ? r.content.slice(0, 140) + "…" : r.content, { href: "#item/" + encodeURIComponent(r.id) });
      const status = el("span", statusText(r.status), { class: "badge " + r.status });
      const cells = [Dinh.date(r.raised_at), houseName(r.house), content, kindText(r.kind), status, r.assignee || "—", deadlineText(r)];
      cells.forEach((c, i) => {
        const td = el("td", typeof c === "string" ? c : null, { data: { label: labels[i] } });
        if (typeof c !== "string") td.append(c);
        if (i === 4 && late) td.append(el("span", t("official.overdue"), { class: "badge overdue" }));
        tr.append(td);
      });
      return tr;
    });
    if (!rows.length) rows.push(el("tr", null, {}));
    if (!page.items.length) rows[0].append(el("td", t("official.no_items"), { colSpan: 7, class: "muted" }));
    $("regRows").replaceChildren(...rows);
    const from = page.total ? page.offset + 1 : 0;
    const to = page.offset + page.items.length;
    $("regSummary").textContent = t("official.summary", { from, to, n: page.total, visible: page.counts.visible });
    $("pageInfo").textContent = t("official.page_of", {
      page: Math.floor(page.offset / page.limit) + 1, pages: Math.max(1, Math.ceil(page.total / page.limit)),
    });
    $("prevPage").disabled = page.offset === 0;
    $("nextPage").disabled = to >= page.total;
    if (!S.shown) {
      S.shown = true;
      performance.mark("dinh:register-shown");
      window.dinhRegisterShownAt = performance.now();
    }
  }

  function goRegister(offset) {
    const q = formQuery(offset);
    location.hash = "#register" + (q ? "?" + q : "");
  }

  // ---- One item ----------------------------------------------------------------------------
  const FORMS = ["fClassify", "fAssign", "fExtend", "fForward", "fAnswer", "fClose"];
  let dirty = false;

  /** What the record lets this role do to an item now (mirrors the feedback domain). */
  function allowed(r) {
    const staff = me.role === "official" || me.role === "chair";
    if (!staff) return [];
    const s = r.status;
    const out = [];
    if (s === "received" || s === "classified") out.push("fClassify", "fForward");
    if ((s === "classified" || s === "assigned") && r.kind) out.push("fAssign");
    if (s === "assigned" && r.deadline) out.push("fExtend");
    if (s === "assigned" && (me.role === "chair" || r.assignee === me.sub)) out.push("fAnswer");
    if (s === "answered" || s === "confirmed" || s === "forwarded") out.push("fClose");
    return out;
  }

  async function openItem(id, keepMessages) {
    if (!keepMessages) { $("itemError").textContent = ""; $("itemOk").textContent = ""; }
    show("itemChanged", false);
    try {
      const [row, hist] = await Promise.all([
        api("GET", "/api/feedback/" + encodeURIComponent(id)),
        api("GET", "/api/feedback/" + encodeURIComponent(id) + "/history"),
      ]);
      S.item = row;
      S.history = hist.events;
      dirty = false;
      renderItem();
    } catch (e) { fail(e, $("itemError")); }
  }

  function fact(k, v) { return [el("dt", t(k)), el("dd", v)]; }

  function renderItem() {
    const r = S.item;
    if (!r) return;
    $("itemTitle").textContent = t("official.item_title", { house: houseName(r.house), date: Dinh.date(r.raised_at) });
    $("itemContent").textContent = r.content;
    const facts = [
      ...fact("official.col_status", statusText(r.status)),
      ...fact("official.col_kind", kindText(r.kind)),
      ...fact("field.meeting", meetingTitle(r.meeting)),
      ...fact("official.col_assignee", r.assignee || "—"),
      ...fact("official.col_deadline", deadlineText(r)),
    ];
    if (r.forwarded_to) facts.push(...fact("field.to", r.forwarded_to));
    if (r.answer) facts.push(...fact("field.answer", r.answer));
    if (r.reopened) facts.push(...fact("official.reopened", Dinh.num(r.reopened)));
    $("itemFacts").replaceChildren(...facts);
    $("itemCard").classList.toggle("overdue", !!r.overdue);
    const can = allowed(r);
    for (const f of FORMS) { show(f, can.includes(f)); $(f).reset(); }
    const notMine = r.status === "assigned" && me.role === "official" && r.assignee && r.assignee !== me.sub;
    $("notMine").textContent = notMine ? t("official.not_mine", { official: r.assignee }) : "";
    show("notMine", notMine);
    $("aOfficial").value = r.assignee || "";
    $("history").replaceChildren(...S.history.map(historyLine));
  }

  function actorText(label) {
    const i = label.indexOf(":");
    const role = label.slice(0, i), id = label.slice(i + 1);
    const key = ACTOR_KEYS[role];
    if (!key) return label;
    return t(key, { id: role === "house" ? houseName(id) : id });
  }

  function historyLine(e) {
    const d = e.data || {};
    const params = {
      house: houseName(d.house || ""), kind: kindText(d.kind), official: d.official || "",
      deadline: day(d.deadline), n: d.working_days || 0, reason: d.reason || "", to: d.to || "",
      answer: d.answer || "",
    };
    const what = EVENT_KEYS[e.type] ? t(EVENT_KEYS[e.type], params) : e.type;
    const li = el("li");
    li.append(el("time", vnTime(e.at), { dateTime: e.at }), " ", el("b", actorText(e.actor)), " · ", what);
    li.append(el("span", t("official.at_position", { n: e.position }), { class: "muted pos" }));
    return li;
  }

  async function act(form) {
    const r = S.item;
    $("itemError").textContent = "";
    $("itemOk").textContent = "";
    form.querySelectorAll("input:not([type=number]), textarea").forEach((i) => { i.value = i.value.trim(); });
    const bad = Dinh.check(form);
    if (bad) { $("itemError").textContent = bad; return; }
    const body = { type: form.dataset.action };
    for (const [k, v] of new FormData(form)) {
      if (v === "") continue;
      body[k] = k === "working_days" ? Number(v) : v;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/api/feedback/" + encodeURIComponent(r.id) + "/commands", body);
      $("itemOk").textContent = t("official.done");
      await openItem(r.id, true);
    } catch (e) {
      fail(e, $("itemError"));
      // The item moved on meanwhile: show where it is now (the refusal stays on screen).
      if (e.status === 409 || e.status === 404) await openItem(r.id, true);
    } finally {
      button.disabled = false;
    }
  }

  // ---- Attendance --------------------------------------------------------------------------
  async function loadAttendance(meeting) {
    const sel = $("attMeeting");
    fillSelect(sel, S.meetings.map((m) => [m.meeting, t("official.meeting_option", { title: m.title, date: Dinh.date(m.starts_at) })]),
      meeting || sel.value || (S.meetings[0] && S.meetings[0].meeting) || "");
    try {
      const [one, across] = await Promise.all([
        sel.value ? api("GET", "/api/meetings/" + encodeURIComponent(sel.value) + "/minutes") : Promise.resolve(null),
        api("GET", "/api/attendance"),
      ]);
      renderOne(one);
      $("acrossRows").replaceChildren(...across.houses.map((h) => {
        const tr = el("tr");
        [h.name, t("official.n_of", { n: h.meetings_attended, of: across.meetings.length }), minutesOf(h.seconds_connected),
          Dinh.num(h.headcount_total), Dinh.num(h.checked_in)].forEach((v) => tr.append(el("td", v)));
        return tr;
      }));
      $("attChart").replaceChildren(attendanceChart(across));
    } catch (e) { fail(e); }
  }

  /** One meeting's attendance: every house of the room, present or absent (from the minutes). */
  function renderOne(one) {
    if (!one) { $("attRows").replaceChildren(); $("attSummary").textContent = t("official.no_meetings"); return; }
    let people = 0;
    $("attRows").replaceChildren(...one.attendance.map((a) => {
      if (a.headcount) people += a.headcount;
      const tr = el("tr", null, { class: a.present ? "" : "absent" });
      const state = !a.present ? t("official.absent") : a.connected_since ? t("official.connected_since", { time: vnClock(a.connected_since) }) : t("official.attended");
      [a.name, state, a.present ? minutesOf(a.seconds_connected) : "—", a.headcount != null ? Dinh.num(a.headcount) : "—",
        a.checked_in.length ? a.checked_in.join(", ") : "—"].forEach((v) => tr.append(el("td", v)));
      return tr;
    }));
    const present = one.attendance.filter((a) => a.present).length;
    $("attSummary").textContent = t("official.att_summary", { n: present, of: one.attendance.length, people });
  }

  // ---- Pictures (SVG) ------------------------------------------------------------------------
  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  /** An SVG picture with a title for screen readers and a table of the same numbers. */
  function figure(title, picture, rows) {
    picture.setAttribute("role", "img");
    picture.setAttribute("aria-label", title);
    picture.prepend(svg("title", {}, title));
    const details = el("details");
    details.append(el("summary", t("official.as_table")));
    const table = el("table");
    for (const r of rows) { const tr = el("tr"); r.forEach((c) => tr.append(el("td", String(c)))); table.append(tr); }
    details.append(table);
    const f = el("figure");
    f.append(picture, details);
    return f;
  }

  /** Horizontal bars: [[label, value, class]]. */
  function bars(title, data) {
    const W = 640, row = 34, left = 230, H = data.length * row + 10;
    const max = Math.max(1, ...data.map((d) => d[1]));
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "bars" });
    data.forEach(([label, v, cls], i) => {
      const y = 5 + i * row;
      const w = ((W - left - 70) * v) / max;
      s.append(svg("text", { x: left - 10, y: y + 21, "text-anchor": "end", class: "label" }, label));
      s.append(svg("rect", { x: left, y: y + 4, width: Math.max(v ? 2 : 0, w), height: row - 10, rx: 4, class: "bar " + (cls || "") }));
      s.append(svg("text", { x: left + w + 8, y: y + 21, class: "value" }, Dinh.num(v)));
    });
    return figure(title, s, data.map((d) => [d[0], Dinh.num(d[1])]));
  }

  function overdueChart(days) {
    const W = 640, H = 220, L = 44, B = 30, T = 10, R = 12;
    const max = Math.max(1, ...days.map((d) => d.overdue));
    const x = (i) => L + ((W - L - R) * i) / Math.max(1, days.length - 1);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "line" });
    for (const v of [0, max]) {
      s.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      s.append(svg("text", { x: L - 6, y: y(v) + 5, "text-anchor": "end", class: "value" }, Dinh.num(v)));
    }
    const pts = days.map((d, i) => `${x(i).toFixed(1)},${y(d.overdue).toFixed(1)}`);
    s.append(svg("polygon", { points: `${x(0)},${y(0)} ${pts.join(" ")} ${x(days.length - 1)},${y(0)}`, class: "area" }));
    s.append(svg("polyline", { points: pts.join(" "), class: "stroke" }));
    if (days.length) {
      s.append(svg("text", { x: L, y: H - 8, class: "label" }, day(days[0].date)));
      s.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "label" }, day(days[days.length - 1].date)));
      const last = days[days.length - 1];
      s.append(svg("circle", { cx: x(days.length - 1), cy: y(last.overdue), r: 5, class: "dot" }));
    }
    const rows = days.filter((d, i) => i === days.length - 1 || d.overdue !== (days[i + 1] || {}).overdue).map((d) => [day(d.date), Dinh.num(d.overdue)]);
    return figure(t("official.chart_overdue"), s, rows);
  }

  /** Houses down, meetings across: each cell shaded by the share of the meeting the house was
   *  connected, with its headcount written in it. */
  function attendanceChart(a) {
    const cell = 34, left = 200, top = 30;
    const W = left + Math.max(1, a.meetings.length) * cell + 10;
    const H = top + a.houses.length * cell + 10;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "grid-chart" });
    a.meetings.forEach((m, j) => {
      s.append(svg("text", { x: left + j * cell + cell / 2, y: top - 10, "text-anchor": "middle", class: "label small" }, Dinh.dateTime(m.starts_at, { day: "numeric", month: "numeric" })));
    });
    const longest = {};
    for (const c of a.cells) longest[c.meeting] = Math.max(longest[c.meeting] || 0, c.seconds_connected);
    a.houses.forEach((h, i) => {
      const y = top + i * cell;
      s.append(svg("text", { x: left - 8, y: y + cell / 2 + 5, "text-anchor": "end", class: "label" }, h.name));
      a.meetings.forEach((m, j) => {
        const c = a.cells.find((x) => x.meeting === m.id && x.house === h.id);
        const share = c && longest[m.id] ? c.seconds_connected / longest[m.id] : 0;
        const level = !c || !c.joins ? 0 : share > 0.75 ? 3 : share > 0.4 ? 2 : 1;
        s.append(svg("rect", { x: left + j * cell + 2, y: y + 2, width: cell - 4, height: cell - 4, rx: 4, class: "level" + level }));
        if (c && c.headcount != null) s.append(svg("text", { x: left + j * cell + cell / 2, y: y + cell / 2 + 5, "text-anchor": "middle", class: "count" }, Dinh.num(c.headcount)));
      });
    });
    const rows = a.houses.map((h) => [h.name, t("official.n_of", { n: h.meetings_attended, of: a.meetings.length }), Dinh.num(h.headcount_total)]);
    return figure(t("official.chart_attendance"), s, rows);
  }

  async function loadCharts() {
    try {
      const [page, series, across] = await Promise.all([
        api("GET", "/api/feedback?limit=1"), api("GET", "/api/stats/overdue?days=90"), api("GET", "/api/attendance"),
      ]);
      $("chartStatus").replaceChildren(bars(t("official.chart_status"), STATUSES.map((s) => [statusText(s), page.counts.status[s] || 0, s])));
      $("chartKind").replaceChildren(bars(t("official.chart_kind"), Object.keys(KIND_KEYS).map((k) => [kindText(k), page.counts.kind[k] || 0, "kind-" + k])));
      $("chartOverdue").replaceChildren(overdueChart(series.days));
      $("chartAttendance").replaceChildren(attendanceChart(across));
    } catch (e) { fail(e); }
  }

  // ---- Minutes ---------------------------------------------------------------------------------
  async function loadMinutes(meeting) {
    const sel = $("minMeeting");
    fillSelect(sel, S.meetings.map((m) => [m.meeting, t("official.meeting_option", { title: m.title, date: Dinh.date(m.starts_at) })]),
      meeting || sel.value || (S.meetings[0] && S.meetings[0].meeting) || "");
    if (!sel.value) { $("minutesDoc").replaceChildren(el("p", t("official.no_meetings"))); return; }
    try {
      renderMinutes(await api("GET", "/api/meetings/" + encodeURIComponent(sel.value) + "/minutes"));
    } catch (e) { fail(e); }
  }

  function renderMinutes(d) {
    const m = d.minutes;
    const doc = $("minutesDoc");
    const parts = new Intl.DateTimeFormat("en-GB", { timeZone: VN, day: "2-digit", month: "2-digit", year: "numeric" })
      .formatToParts(new Date(m.opened_at || m.starts_at));
    const p = (type) => (parts.find((x) => x.type === type) || {}).value || "";
    const head = el("div", null, { class: "m-head" });
    const left = el("div", null, { class: "m-authority" });
    left.append(el("p", t("official.m_authority", { commune: d.commune }), { class: "upper" }), el("p", d.room_title, { class: "bold" }));
    const right = el("div", null, { class: "m-motto" });
    right.append(el("p", t("official.m_nation"), { class: "upper bold" }), el("p", t("official.m_motto"), { class: "bold underline" }),
      el("p", t("official.m_date", { d: p("day"), m: p("month"), y: p("year") }), { class: "italic" }));
    head.append(left, right);
    const body = [head, el("h2", t("official.m_title"), { class: "m-title" }), el("p", m.title, { class: "m-subtitle" })];
    const section = (key) => body.push(el("h3", t(key)));
    const para = (text) => body.push(el("p", text));
    section("official.m_time");
    para(t("official.m_opened", { time: m.opened_at ? vnTime(m.opened_at) : "—", scheduled: vnTime(m.starts_at) }));
    para(t("official.m_form", { room: d.room_title }));
    section("official.m_attendance");
    const present = d.attendance.filter((a) => a.present);
    const people = d.attendance.reduce((n, a) => n + (a.headcount || 0), 0);
    para(t("official.att_summary", { n: present.length, of: d.attendance.length, people }));
    const at = el("table", null, { class: "m-table" });
    const hr = el("tr");
    ["official.col_house", "official.col_connected", "official.col_minutes", "official.col_headcount", "official.col_checked_in"].forEach((k) => hr.append(el("th", t(k))));
    at.append(hr);
    for (const a of d.attendance) {
      const tr = el("tr");
      [a.name, a.present ? t("official.attended") : t("official.absent"), a.present ? minutesOf(a.seconds_connected) : "—",
        a.headcount != null ? Dinh.num(a.headcount) : "—", a.checked_in.length ? a.checked_in.join(", ") : "—"].forEach((v) => tr.append(el("td", v)));
      at.append(tr);
    }
    body.push(at);
    section("official.m_agenda");
    const ol = el("ol");
    for (const a of m.agenda) {
      const when = a.started.length ? t("official.m_span", { from: vnClock(a.started[0]), to: a.ended.length ? vnClock(a.ended[a.ended.length - 1]) : "…" }) : t("official.m_not_taken");
      ol.append(el("li", t("official.m_agenda_item", { title: a.title, when })));
    }
    body.push(m.agenda.length ? ol : el("p", t("common.none")));
    section("official.m_floor");
    const fl = el("ol");
    for (const f of m.floor) fl.append(el("li", t("official.m_turn", { house: houseName(f.house), from: vnClock(f.granted_at), to: f.revoked_at ? vnClock(f.revoked_at) : "…" })));
    body.push(m.floor.length ? fl : el("p", t("common.none")));
    section("official.m_feedback");
    const fb = el("ol");
    for (const f of d.feedback) {
      const item = f.agenda_item != null && m.agenda[f.agenda_item] ? m.agenda[f.agenda_item].title : t("common.none");
      fb.append(el("li", f.protected ? t("official.m_protected") : t("official.m_feedback_item", { house: f.house_name, content: f.content, item })));
    }
    body.push(d.feedback.length ? fb : el("p", t("common.none")));
    section("official.m_end");
    para(m.closed_at ? t("official.m_closed", { time: vnTime(m.closed_at) }) : t("official.m_not_closed"));
    const sign = el("div", null, { class: "m-sign" });
    for (const k of ["official.m_secretary", "official.m_chair"]) {
      const b = el("div");
      b.append(el("p", t(k), { class: "upper bold" }), el("p", t("official.m_sign_hint"), { class: "italic" }));
      sign.append(b);
    }
    body.push(sign);
    const integ = el("section", null, { class: "m-integrity" });
    integ.append(el("h3", t("official.m_check")));
    const dl = el("dl");
    const add = (k, v, cls) => dl.append(el("dt", t(k)), el("dd", v, cls ? { class: cls } : undefined));
    add("official.m_position", t("official.m_position_value", { n: d.log.position, events: d.log.meeting_events }));
    if (d.log.hash) add("official.m_hash", d.log.hash, "hex");
    if (d.checkpoint) {
      add("official.cp_size", Dinh.num(d.checkpoint.tree_size));
      add("official.cp_root", d.checkpoint.root_hash, "hex");
      add("official.cp_time", vnTime(d.checkpoint.signed_at));
      add("official.cp_key", d.checkpoint.key, "hex");
      add("official.cp_signature", d.checkpoint.signature_ok ? t("official.sig_ok") : t("official.sig_bad"));
    } else {
      add("official.cp_size", t("official.m_not_yet"));
      add("official.cp_key", d.public_key, "hex");
    }
    add("official.m_generated", vnTime(d.generated_at));
    integ.append(dl, el("p", t("official.m_check_how"), { class: "small" }));
    body.push(integ);
    doc.replaceChildren(...body);
    doc.dataset.checkpoint = d.checkpoint ? String(d.checkpoint.tree_size) : "";
  }

  // ---- Exports and integrity -------------------------------------------------------------------
  async function download(path, button) {
    $("exportMsg").textContent = t("official.exporting");
    button.disabled = true;
    try {
      const r = await fetch(path, { headers: { authorization: "Bearer " + Dinh.token }, cache: "no-store" });
      if (!r.ok) {
        const err = new Dinh.ApiError(r.status, await r.json().catch(() => null));
        err.retryAfter = Number(r.headers.get("retry-after")) || 0;
        throw err;
      }
      const blob = await r.blob();
      const name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1] || "dinh-export";
      const a = el("a", null, { href: URL.createObjectURL(blob), download: name });
      document.body.append(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      $("exportMsg").textContent = t("official.exported", { name, size: Dinh.num(Math.ceil(blob.size / 1024)) });
    } catch (e) {
      $("exportMsg").textContent = e instanceof Dinh.ApiError ? explain(e) : String(e);
    } finally {
      button.disabled = false;
    }
  }

  const WITNESS_STATE = {
    ok: "official.witness_ok", behind: "official.witness_behind", unreachable: "official.witness_unreachable",
    refused: "official.witness_refused", inconsistent: "official.witness_inconsistent",
  };

  // The record's integrity as the hub keeps it (GET /api/integrity, the same answer as
  // /healthz and the start-up check): its checkpoints, its witnesses, the last verification.
  function showIntegrity(st) {
    const dl = $("integrity");
    const add = (k, v, cls) => dl.append(el("dt", t(k)), el("dd", v, cls ? { class: cls } : undefined));
    dl.replaceChildren();
    add("official.integrity_state", st.message[Dinh.lang] || st.message.vi, st.ok ? "ok-text" : "error");
    add("official.log_head", Dinh.num(st.head));
    if (st.last_checkpoint) {
      add("official.cp_size", Dinh.num(st.last_checkpoint.size));
      add("official.cp_time", vnTime(st.last_checkpoint.signed_at));
      add("official.cp_root", st.last_checkpoint.root_hash, "hex");
    } else add("official.cp_size", t("official.m_not_yet"));
    add("official.cp_key", st.public_key, "hex");
    for (const w of st.witnesses) {
      const held = w.cosigned_size == null ? "" : " · " + t("official.witness_held", { n: Dinh.num(w.cosigned_size) });
      const state = WITNESS_STATE[w.state] ? t(WITNESS_STATE[w.state]) : w.state;
      add("official.witness", `${w.name}: ${state}${held}`, w.state === "inconsistent" ? "error" : undefined);
    }
    $("verifyCommand").textContent = `dinh log verify --file dinh-log.jsonl --key ${st.public_key}`;
    showRun(st);
  }

  async function loadIntegrity() {
    try { showIntegrity(await api("GET", "/api/integrity")); } catch (e) { fail(e); }
  }

  function showRun(st) {
    const box = $("verifyResult");
    const run = st.last_verification;
    if (!run) { box.className = ""; box.textContent = ""; return; }
    const ok = run.ok && !st.problem;
    box.className = ok ? "ok-text" : "error";
    box.textContent = ok
      ? t("official.verify_ok", { n: run.events, cps: run.checkpoints, w: run.witnessed, time: vnTime(run.at) })
      : t("official.verify_bad", { position: st.problem ? st.problem.position : "?", reason: st.problem ? st.problem.reason : "", time: vnTime(run.at) });
  }

  async function verifyNow() {
    const b = $("verifyNow");
    b.disabled = true;
    $("verifyResult").className = "";
    $("verifyResult").textContent = t("official.verifying");
    $("verifyNote").textContent = "";
    try { showIntegrity(await api("POST", "/api/log/verify")); } catch (e) {
      // Refused (a run a moment ago, or one going on): the last result stays on screen.
      $("verifyNote").textContent = e.code === "rate_limited" ? t("official.verify_wait", { n: Math.max(1, e.retryAfter) }) : explain(e);
      const last = await api("GET", "/api/integrity").catch(() => null);
      if (last) showRun(last); else $("verifyResult").textContent = "";
    } finally { b.disabled = false; }
  }

  // ---- Notices (the bulletin boards of the room's houses) ------------------------------------
  async function loadNotices() {
    try {
      const list = await api("GET", "/api/notices");
      show("noticesMissing", false);
      show("noticeForm", true);
      $("noticeList").replaceChildren(...(list.length ? list.map(noticeLine) : [el("li", t("common.none"), { class: "muted" })]));
    } catch (e) {
      // A hub without the notices feature answers 404: say so instead of a broken form.
      if (e.status === 404 || e.status === 405) { show("noticesMissing", true); show("noticeForm", false); return; }
      fail(e, $("noticeError"));
    }
  }

  function noticeLine(n) {
    const li = el("li", null, { class: "card" + (n.status === "posted" ? "" : " withdrawn") });
    li.append(el("b", n.title), el("p", n.text, { class: "content" }),
      el("p", t(n.status === "posted" ? "official.notice_valid" : "official.notice_withdrawn", { from: day(n.valid_from), to: day(n.valid_until) }), { class: "muted" }));
    if (n.status === "posted") {
      li.append(el("button", t("official.withdraw_notice"), {
        class: "secondary small", type: "button",
        on: { click: async () => {
          try { await api("POST", "/api/notices/" + encodeURIComponent(n.id) + "/withdraw", {}); loadNotices(); } catch (e) { fail(e, $("noticeError")); }
        } },
      }));
    }
    return li;
  }

  async function postNotice(ev) {
    ev.preventDefault();
    const form = $("noticeForm");
    $("noticeError").textContent = "";
    form.querySelectorAll("input[type=text], input:not([type]), textarea").forEach((i) => { i.value = i.value.trim(); });
    const bad = Dinh.check(form);
    if (bad) { $("noticeError").textContent = bad; return; }
    if ($("nUntil").value < $("nFrom").value) {
      $("noticeError").textContent = t("error.field", { field: t("field.valid_until"), reason: t("error.reason.order") });
      $("nUntil").setAttribute("aria-invalid", "true");
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const file = $("nPicture").files[0];
      let picture;
      if (file) picture = (await api("PUT", "/api/notices/pictures", file, { type: file.type })).name;
      await api("POST", "/api/notices", {
        title: $("nTitle").value, text: $("nText").value, valid_from: $("nFrom").value, valid_until: $("nUntil").value, picture,
      });
      form.reset();
      loadNotices();
    } catch (e) { fail(e, $("noticeError")); } finally { button.disabled = false; }
  }

  // ---- Live: the record's events ----------------------------------------------------------------
  let refresh = null;
  function onEvent(ev) {
    if (ev.aggregate_type === "meeting" && ev.event_type === "MeetingScheduled") loadMeetings();
    if (ev.aggregate_type === "notice" && !$("notices").classList.contains("hidden")) loadNotices();
    if (ev.aggregate_type !== "feedback") return;
    clearTimeout(refresh);
    refresh = setTimeout(() => {
      const tab = location.hash.replace(/^#/, "").split(/[/?]/)[0] || "register";
      if (tab === "register") loadRegister(S.query);
      else if (tab === "charts") loadCharts();
    }, 800);
    if (S.item && ev.aggregate_id === S.item.id && !$("item").classList.contains("hidden")) {
      // Never redraw under the official's hands: offer a reload while a form is being filled.
      if (dirty) show("itemChanged", true);
      else openItem(S.item.id, true);
    }
  }
  function onState(up) {
    const s = $("live");
    s.className = "status " + (up ? "ok" : "wait");
    s.textContent = t(up ? "official.live_on" : "official.live_off");
  }

  async function loadMeetings() {
    try {
      const list = await api("GET", "/api/meetings");
      S.meetings = list.sort((a, b) => (b.starts_at || "").localeCompare(a.starts_at || ""));
    } catch (e) { fail(e); }
  }

  // ---- Start -----------------------------------------------------------------------------------
  async function start() {
    $("room").textContent = me.room || "";
    $("who").textContent = me.sub ? t("official.who", { name: me.name || me.sub }) : "";
    if (!Dinh.token) { $("error").textContent = t("error.token_missing"); return; }
    if (me.role !== "official" && me.role !== "chair") { $("error").textContent = t("official.wrong_role"); return; }
    // The register first: it is what an official opens the page for.
    const first = route();
    const [dir] = await Promise.all([api("GET", "/api/directory").catch((e) => { fail(e); return null; }), loadMeetings()]);
    S.dir = dir;
    await first;
    if (dir && dir.room.title) $("room").textContent = dir.room.title;
    if (S.page) renderRegister(S.page, new URLSearchParams(S.query));
    Dinh.events(onEvent, onState, S.position);
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("dinh:lang", () => {
    if (S.page) renderRegister(S.page, new URLSearchParams(S.query));
    if (S.item && !$("item").classList.contains("hidden")) renderItem();
    const h = location.hash.replace(/^#/, "").split(/[/?]/)[0];
    if (h === "minutes") loadMinutes();
    else if (h === "charts") loadCharts();
    else if (h === "attendance") loadAttendance();
    else if (h === "exports") loadIntegrity();
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); goRegister(0); });
  $("resetFilters").addEventListener("click", () => { $("filters").reset(); location.hash = "#register"; });
  for (const id of ["fStatus", "fKind", "fHouse", "fMeeting", "fSort", "fOverdue"]) $(id).addEventListener("change", () => goRegister(0));
  $("prevPage").addEventListener("click", () => goRegister(Math.max(0, S.page.offset - S.page.limit)));
  $("nextPage").addEventListener("click", () => goRegister(S.page.offset + S.page.limit));
  for (const f of FORMS) {
    $(f).addEventListener("submit", (e) => { e.preventDefault(); act(e.target); });
    $(f).addEventListener("input", () => { dirty = true; });
  }
  $("assignMe").addEventListener("click", () => { $("aOfficial").value = me.sub || ""; });
  $("reloadItem").addEventListener("click", () => openItem(S.item.id));
  $("attMeeting").addEventListener("change", (e) => { location.hash = "#attendance/" + encodeURIComponent(e.target.value); });
  $("minMeeting").addEventListener("change", (e) => { location.hash = "#minutes/" + encodeURIComponent(e.target.value); });
  $("printMinutes").addEventListener("click", () => window.print());
  $("exFeedback").addEventListener("click", (e) => download("/api/feedback.csv", e.target));
  $("exAttendance").addEventListener("click", (e) => download("/api/attendance.csv", e.target));
  $("exLog").addEventListener("click", (e) => download("/api/log/export.jsonl", e.target));
  $("verifyNow").addEventListener("click", verifyNow);
  $("noticeForm").addEventListener("submit", postNotice);

  Dinh.ready.then(start);

  /** For tests and the curious: the state of the page. */
  window.dinhOfficial = { state: S, reload: () => route() };
})();
