// The chair's page: the meeting (schedule, open, agenda, close and its minutes), going live,
// the floor, the houses' attendance, feedback as it comes, the loudspeakers and the notices.
// Needs dinh.js and client.js. Everything the record knows comes from the API and is kept up
// to date from its event stream; what the SFU knows comes over signalling.
"use strict";
(function () {
  const { $, t, el, api, show } = Dinh;
  let lastRoom = null;
  const client = new DinhClient({
    role: "chair",
    onStatus: (text, k) => { $("status").textContent = text; $("status").className = "status " + (k || ""); },
    onError: (msg) => { $("error").textContent = msg; },
    onTracks: (tr, local) => {
      $("preview").srcObject = local;
      $("floor").srcObject = new MediaStream([tr[0].receiver.track, tr[1].receiver.track]);
    },
    onState: (room) => { lastRoom = room; show("hubDown", false); renderRoom(); },
    onLost: () => show("hubDown", true),
  });
  $("room").textContent = client.room;
  const enc = encodeURIComponent;

  // ---- What the record knows ------------------------------------------------------------
  let meetings = [];
  let open = null; // the open meeting's minutes row
  let attendance = {}; // house -> attendance row of the open meeting
  let items = []; // feedback items of the open meeting

  const houseName = (id) => {
    const h = lastRoom && lastRoom.houses.find((x) => x.id === id);
    return h ? h.name : id;
  };
  const currentItem = (m) => m.agenda.findIndex((a) => a.started.length > a.ended.length);

  async function loadMeetings() {
    try {
      meetings = await api("GET", "/api/meetings");
      const opened = meetings.filter((m) => m.status === "open").sort((a, b) => (a.opened_at || "").localeCompare(b.opened_at || ""));
      const was = open && open.meeting;
      open = opened.length ? opened[opened.length - 1] : null;
      if (open) {
        const detail = await api("GET", `/api/meetings/${enc(open.meeting)}`);
        attendance = Object.fromEntries((detail.attendance || []).map((a) => [a.house, a]));
        if (was !== open.meeting) await loadFeedback();
      } else {
        attendance = {};
        if (was) items = [];
      }
      renderMeeting();
      renderRoom();
      renderFeedback();
    } catch (e) { $("meetingError").textContent = e.text || String(e); }
  }

  async function loadFeedback() {
    if (!open) { items = []; return; }
    // The register answers in pages (at most 500 items each), oldest first.
    const all = [];
    for (;;) {
      const page = await api("GET", `/api/feedback?meeting=${enc(open.meeting)}&sort=oldest&limit=500&offset=${all.length}`);
      all.push(...page.items);
      if (!page.items.length || all.length >= page.total) break;
    }
    items = all;
    items.sort((a, b) => a.raised_at.localeCompare(b.raised_at));
  }

  function renderMeeting() {
    show("meetingNone", !open);
    show("meetingOpen", !!open);
    if (open) {
      $("meetingTitle").textContent = t("chair.meeting_open", { title: open.title, time: Dinh.time(open.opened_at) });
      const cur = currentItem(open);
      $("agenda").replaceChildren(...open.agenda.map((a, i) => {
        const li = el("li", a.title + " ", { class: i === cur ? "current" : a.ended.length ? "done" : "" });
        if (i === cur) li.appendChild(el("span", t("chair.item_current"), { class: "badge" }));
        else li.appendChild(el("button", t("chair.start_item"), { class: "small secondary", data: { item: String(i) }, on: { click: () => command({ type: "start_agenda_item", index: i }) } }));
        return li;
      }));
      $("endItem").disabled = cur < 0;
    }
    const upcoming = meetings.filter((m) => m.status === "scheduled").sort((a, b) => a.starts_at.localeCompare(b.starts_at));
    $("upcoming").replaceChildren(...(upcoming.length ? upcoming.map((m) => {
      const li = el("li", t("chair.upcoming_line", { title: m.title, time: Dinh.dateTime(m.starts_at), n: m.agenda.length }) + " ");
      if (!open) li.appendChild(el("button", t("chair.open_meeting"), { class: "small", on: { click: () => openMeeting(m.meeting) } }));
      return li;
    }) : [el("li", t("chair.none_scheduled"), { class: "muted" })]));
  }

  async function command(body, id) {
    id = id || (open && open.meeting);
    $("meetingError").textContent = "";
    try { await api("POST", `/api/meetings/${enc(id)}/commands`, body); await loadMeetings(); return true; }
    catch (e) { $("meetingError").textContent = e.text; return false; }
  }

  async function openMeeting(id) {
    if (await command({ type: "open" }, id)) {
      show("openOffer", false);
      $("minutes").classList.add("hidden");
      return true;
    }
    return false;
  }

  // ---- Going live -----------------------------------------------------------------------
  function startPublishing() {
    show("live", false); show("stop", true);
    if (client.stopped) client.resume(); else if (!client.ws) client.start();
  }
  async function goLive() {
    await loadMeetings();
    if (open) { startPublishing(); return; }
    // No meeting open: offer the next scheduled one, or one with a title now.
    const next = meetings.filter((m) => m.status === "scheduled").sort((a, b) => a.starts_at.localeCompare(b.starts_at))[0];
    show("offerNext", !!next);
    if (next) {
      $("offerOpenNext").textContent = t("chair.offer_next", { title: next.title, time: Dinh.dateTime(next.starts_at) });
      $("offerOpenNext").dataset.meeting = next.meeting;
    }
    $("offerError").textContent = "";
    show("openOffer", true);
    (next ? $("offerOpenNext") : $("adhocTitle")).focus();
  }
  $("offerOpenNext").addEventListener("click", async () => {
    if (await openMeeting($("offerOpenNext").dataset.meeting)) startPublishing();
    else $("offerError").textContent = $("meetingError").textContent;
  });
  $("offerAdhoc").addEventListener("submit", async (e) => {
    e.preventDefault();
    const bad = Dinh.check($("offerAdhoc"));
    if (bad) { $("offerError").textContent = bad; return; }
    try {
      const o = await api("POST", "/api/meetings", { title: $("adhocTitle").value.trim(), starts_at: new Date().toISOString(), agenda: [] });
      if (await openMeeting(o.aggregate_id)) { $("adhocTitle").value = ""; startPublishing(); }
      else $("offerError").textContent = $("meetingError").textContent;
    } catch (err) { $("offerError").textContent = err.text; }
  });
  $("offerCancel").addEventListener("click", () => show("openOffer", false));
  function stopLive() {
    client.stop();
    $("status").textContent = t("chair.stopped"); $("status").className = "status";
    show("stop", false); show("live", true);
  }
  $("live").addEventListener("click", goLive);
  $("stop").addEventListener("click", stopLive);
  $("revoke").addEventListener("click", () => client.send({ type: "revoke_floor" }));
  $("endItem").addEventListener("click", () => command({ type: "end_agenda_item" }));

  // Closing ends the broadcast (and the loudspeaker relay) and shows the minutes.
  $("closeMeeting").addEventListener("click", () => { show("closeConfirm", true); $("closeNo").focus(); });
  $("closeNo").addEventListener("click", () => show("closeConfirm", false));
  $("closeYes").addEventListener("click", async () => {
    show("closeConfirm", false);
    const id = open.meeting;
    if (!(await command({ type: "close" }, id))) return;
    stopLive();
    if (relayOn) { try { await api("POST", `/api/broadcast/${enc(client.room)}/relay`, { on: false }); } catch (e) { /* shown by the next refresh */ } }
    refreshLoudspeakers();
    showMinutes(id);
  });

  async function showMinutes(id) {
    const box = $("minutes");
    try {
      const d = await api("GET", `/api/meetings/${enc(id)}`);
      const m = d.minutes;
      box.replaceChildren(
        el("h3", t("chair.minutes_title", { title: m.title })),
        el("p", t("chair.minutes_times", { opened: Dinh.dateTime(m.opened_at), closed: Dinh.dateTime(m.closed_at) })),
        el("h3", t("chair.minutes_agenda")),
        el("ol", null, {}),
        el("h3", t("chair.minutes_attendance")),
        el("ul"),
        el("p", t("chair.minutes_floor", { n: m.floor.length })),
        el("p", t("chair.minutes_feedback", { n: m.feedback.length })),
      );
      const [ol, ul] = [box.querySelector("ol"), box.querySelector("ul")];
      m.agenda.forEach((a) => ol.appendChild(el("li", a.started.length
        ? t("chair.minutes_item", { title: a.title, start: Dinh.time(a.started[0]), end: a.ended.length ? Dinh.time(a.ended[a.ended.length - 1]) : "—" })
        : t("chair.minutes_item_skipped", { title: a.title }))));
      (d.attendance || []).forEach((a) => ul.appendChild(el("li", t("chair.minutes_house", {
        house: houseName(a.house), minutes: Math.round(a.seconds_connected / 60), checked: a.checked_in.length,
        people: a.headcount == null ? t("chair.no_headcount") : t("chair.people_n", { n: a.headcount }),
      }))));
      box.classList.remove("hidden");
      box.scrollIntoView({ block: "nearest" });
    } catch (e) { $("meetingError").textContent = e.text; }
  }

  // ---- Scheduling -----------------------------------------------------------------------
  $("scheduleForm").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("scheduleError").textContent = "";
    let bad = Dinh.check($("scheduleForm"));
    const agenda = $("schAgenda").value.split("\n").map((s) => s.trim()).filter(Boolean);
    if (!bad && agenda.length > 100) bad = t("error.field", { field: t("field.agenda"), reason: t("error.reason.too_many", { max: 100 }) });
    if (!bad && agenda.some((a) => a.length > 500)) bad = t("error.field", { field: t("field.agenda"), reason: t("error.reason.too_long", { max: 500 }) });
    const at = new Date($("schAt").value);
    if (!bad && isNaN(at)) bad = t("error.field", { field: t("field.starts_at"), reason: t("error.reason.date") });
    if (bad) { $("scheduleError").textContent = bad; return; }
    try {
      await api("POST", "/api/meetings", { title: $("schTitle").value.trim(), starts_at: at.toISOString(), agenda });
      $("scheduleForm").reset();
      $("scheduleBox").open = false;
      await loadMeetings();
    } catch (err) { $("scheduleError").textContent = err.text; }
  });

  // ---- The room: floor, hands, houses with their attendance -----------------------------
  const VIDEO = { full: "chair.video_full", small: "chair.video_small", off: "chair.video_off" };
  function renderRoom() {
    const room = lastRoom;
    if (!room) return;
    $("holder").textContent = room.floor ? houseName(room.floor) : "—";
    $("revoke").disabled = !room.floor;
    $("floor").classList.toggle("hidden", !room.floor);
    $("handsTitle").textContent = t("chair.hands", { n: room.hands.length });
    $("hands").replaceChildren(...room.hands.map((id) => {
      const li = el("li", houseName(id) + " ");
      li.appendChild(el("button", t("chair.give_floor"), { class: "small", on: { click: () => client.send({ type: "grant_floor", house: id }) } }));
      return li;
    }));
    let people = 0, connected = 0;
    $("houses").replaceChildren(...room.houses.map((h) => {
      const a = attendance[h.id] || {};
      if (a.headcount) people += a.headcount;
      if (h.connected) connected += 1;
      const tr = el("tr", null, { data: { house: h.id } });
      tr.appendChild(el("td")).appendChild(el("span", "", { class: "dot" + (h.connected ? " on" : ""), title: t(h.connected ? "chair.connected" : "chair.not_connected") }));
      tr.appendChild(el("td", h.hand_raised ? t("chair.house_hand", { house: h.name }) : h.name));
      tr.appendChild(el("td", a.connected_since ? Dinh.time(a.connected_since) : a.last_left ? t("chair.left_at", { time: Dinh.time(a.last_left) }) : "—"));
      tr.appendChild(el("td", a.headcount == null && !(a.checked_in || []).length ? "—"
        : t("chair.people", { n: a.headcount ?? 0, checked: (a.checked_in || []).length })));
      tr.appendChild(el("td", h.loss_pct == null ? "—" : Dinh.num(h.loss_pct / 100, { style: "percent", maximumFractionDigits: 1 })));
      tr.appendChild(el("td", h.rtt_ms == null ? "—" : t("common.ms", { n: Math.round(h.rtt_ms) })));
      tr.appendChild(el("td", VIDEO[h.video] ? t(VIDEO[h.video]) : "—"));
      const td = tr.appendChild(el("td"));
      if (h.connected) {
        td.appendChild(el("button", t("chair.invite"), { class: "secondary small", on: { click: () => client.send({ type: "grant_floor", house: h.id }) } }));
        td.appendChild(el("button", t(h.muted ? "chair.unmute" : "chair.mute"), { class: "secondary small", on: { click: () => client.send({ type: "mute", house: h.id, muted: !h.muted }) } }));
      }
      return tr;
    }));
    $("headcountTotal").textContent = t("chair.headcount_total", { n: people, connected, total: room.houses.length });
  }

  // ---- Feedback as it comes --------------------------------------------------------------
  function renderFeedback() {
    $("feedbackTitle").textContent = t("chair.feedback_title", { n: items.length });
    if (!open) { $("feedback").replaceChildren(el("li", t("chair.feedback_none_open"), { class: "muted" })); return; }
    $("feedback").replaceChildren(...items.slice().reverse().map((f) => {
      const item = f.agenda_item != null && open.agenda[f.agenda_item] ? open.agenda[f.agenda_item].title : t("chair.feedback_no_item");
      const li = el("li", null, { data: { feedback: f.id } });
      li.appendChild(el("b", t("chair.feedback_from", { house: houseName(f.house), item, time: Dinh.time(f.raised_at) })));
      li.appendChild(el("div", f.content));
      return li;
    }));
  }

  // The record's event stream: a meeting or feedback change reloads what it touches.
  let reloadTimer = null;
  function reloadSoon() { clearTimeout(reloadTimer); reloadTimer = setTimeout(loadMeetings, 250); }
  function onEvent(ev) {
    if (ev.aggregate_type === "meeting") reloadSoon();
    else if (ev.aggregate_type === "feedback" && open) {
      const p = ev.payload || {};
      if (p.type === "feedback_received" && p.meeting === open.meeting && !items.some((f) => f.id === ev.aggregate_id)) {
        items.push({ id: ev.aggregate_id, house: p.house, agenda_item: p.agenda_item, content: p.content, raised_at: ev.recorded_at, status: "received" });
        renderFeedback();
      }
    } else if (ev.aggregate_type === "notice") loadNotices();
  }

  // ---- Loudspeakers: relay, clusters, announcements --------------------------------------
  let relayOn = false;
  let clusters = [];
  const HEALTH = { up: "chair.health_up", down: "chair.health_down", unknown: "chair.health_unknown" };
  const PLAYING = { meeting: "chair.playing_meeting", silence: "chair.playing_silence" };
  const PRIORITY = { normal: "chair.priority_normal", priority: "chair.priority_priority", emergency: "chair.priority_emergency" };
  async function refreshLoudspeakers() {
    try {
      const [c, a] = await Promise.all([api("GET", "/api/clusters"), api("GET", "/api/broadcast/announcements")]);
      relayOn = (a.relays || []).includes(client.room);
      $("relay").textContent = t(relayOn ? "chair.relay_off" : "chair.relay_on");
      $("relay").className = relayOn ? "danger" : "secondary";
      clusters = c.clusters || [];
      $("clusters").replaceChildren(...clusters.map((cl) => {
        const h = cl.health || {};
        const tr = el("tr");
        tr.appendChild(el("td")).appendChild(el("span", "", { class: "dot" + (h.status === "up" ? " on" : "") }));
        tr.appendChild(el("td", cl.name || cl.id));
        const health = HEALTH[h.status] ? t(HEALTH[h.status]) : "—";
        tr.appendChild(el("td", h.status === "down" && h.reason ? t("chair.health_down_why", { reason: h.reason }) : health));
        const p = cl.playing || "";
        tr.appendChild(el("td", PLAYING[p] ? t(PLAYING[p]) : p.startsWith("announcement:") ? t("chair.playing_announcement") : "—"));
        return tr;
      }));
      const box = $("anClusters");
      const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
      box.replaceChildren(...clusters.map((cl) => {
        const l = el("label", null, { class: "inline" });
        l.appendChild(el("input", null, { type: "checkbox", name: "cluster", value: cl.id, checked: checked.has(cl.id) }));
        l.appendChild(el("span", cl.name || cl.id));
        return l;
      }));
      $("scheduledList").replaceChildren(...((a.scheduled || []).length ? a.scheduled.map((s) => {
        const li = el("li", t("chair.scheduled_line", {
          time: Dinh.dateTime(new Date(s.at_unix * 1000)),
          priority: t(PRIORITY[s.priority] || "chair.priority_normal"),
          clusters: s.clusters && s.clusters.length ? s.clusters.join(", ") : t("chair.all_clusters"),
        }) + " ");
        li.appendChild(el("button", t("common.cancel"), { class: "small secondary", on: { click: async () => {
          try { await api("DELETE", `/api/broadcast/announcements/${enc(s.id)}`); } catch (e) { $("announceError").textContent = e.text; }
          refreshLoudspeakers();
        } } }));
        return li;
      }) : [el("li", t("common.none"), { class: "muted" })]));
    } catch (e) { /* the next refresh tries again */ }
  }
  async function refreshFiles(select) {
    try {
      const f = await api("GET", "/api/broadcast/files");
      const keep = select || $("anFile").value;
      $("anFile").replaceChildren(...(f.files || []).map((n) => el("option", n, { value: n, selected: n === keep })));
    } catch (e) { /* shown when used */ }
  }
  $("relay").addEventListener("click", async () => {
    try { await api("POST", `/api/broadcast/${enc(client.room)}/relay`, { on: !relayOn }); $("error").textContent = ""; }
    catch (e) { $("error").textContent = e.text; }
    refreshLoudspeakers();
  });
  $("uploadForm").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("announceError").textContent = ""; $("uploadOk").textContent = "";
    const bad = Dinh.check($("uploadForm"));
    if (bad) { $("announceError").textContent = bad; return; }
    const file = $("upFile").files[0];
    const m = /^(.*)\.(wav|opus|ogg)$/i.exec(file.name);
    if (!m) { $("announceError").textContent = t("error.bad_name"); return; }
    // A file name the hub accepts: plain letters, digits, - and _.
    const stem = m[1].normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[đĐ]/g, "d")
      .replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60) || "thong-bao";
    const name = `${stem.toLowerCase()}.${m[2].toLowerCase()}`;
    try {
      await api("PUT", `/api/broadcast/files/${enc(name)}`, file, { type: file.type || "audio/wav" });
      $("uploadOk").textContent = t("chair.uploaded", { name });
      $("uploadForm").reset();
      await refreshFiles(name);
    } catch (err) { $("announceError").textContent = err.text; }
  });
  let emergencyArmed = false;
  async function sendAnnouncement() {
    const f = $("announceForm");
    const priority = f.querySelector("input[name=priority]:checked").value;
    const when = f.querySelector("input[name=when]:checked").value;
    const body = { file: $("anFile").value, priority, clusters: [...$("anClusters").querySelectorAll("input:checked")].map((i) => i.value) };
    if (when === "at") {
      const at = new Date($("anAt").value);
      if (isNaN(at)) { $("announceError").textContent = t("error.field", { field: t("field.at"), reason: t("error.reason.date") }); return; }
      body.at = at.toISOString();
    }
    try {
      await api("POST", "/api/broadcast/announcements", body);
      $("announceError").textContent = "";
      $("error").textContent = t(when === "at" ? "chair.announce_scheduled" : "chair.announce_playing");
    } catch (err) { $("announceError").textContent = err.text; }
    refreshLoudspeakers();
  }
  $("announceForm").addEventListener("submit", (e) => {
    e.preventDefault();
    const bad = Dinh.check($("announceForm"));
    if (bad) { $("announceError").textContent = bad; return; }
    const priority = $("announceForm").querySelector("input[name=priority]:checked").value;
    // Emergency priority cuts into everything on every chosen cluster: confirm it first.
    if (priority === "emergency" && !emergencyArmed) { show("emergencyConfirm", true); emergencyArmed = true; $("emergencyNo").focus(); return; }
    sendAnnouncement();
  });
  $("emergencyYes").addEventListener("click", () => { show("emergencyConfirm", false); emergencyArmed = false; sendAnnouncement(); });
  $("emergencyNo").addEventListener("click", () => { show("emergencyConfirm", false); emergencyArmed = false; });

  // ---- Notices ---------------------------------------------------------------------------
  async function loadNotices() {
    try {
      const list = await api("GET", "/api/notices");
      $("noticeList").replaceChildren(...(list.length ? list.map((n) => {
        const li = el("li", t(n.status === "posted" ? "chair.notice_line" : "chair.notice_line_withdrawn", {
          title: n.title, from: Dinh.date(n.valid_from), until: Dinh.date(n.valid_until),
        }) + " ");
        if (n.status === "posted") li.appendChild(el("button", t("chair.withdraw"), { class: "small secondary", on: { click: async () => {
          try { await api("POST", `/api/notices/${enc(n.id)}/withdraw`, {}); } catch (e) { $("noticeError").textContent = e.text; }
          loadNotices();
        } } }));
        return li;
      }) : [el("li", t("common.none"), { class: "muted" })]));
    } catch (e) { $("noticeError").textContent = e.text; }
  }
  $("noticeForm").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("noticeError").textContent = "";
    let bad = Dinh.check($("noticeForm"));
    if (!bad && $("noUntil").value < $("noFrom").value) bad = t("error.field", { field: t("field.valid_until"), reason: t("error.reason.order") });
    if (bad) { $("noticeError").textContent = bad; return; }
    try {
      let picture;
      const file = $("noPicture").files[0];
      if (file) picture = (await api("PUT", "/api/notices/pictures", file, { type: file.type })).name;
      await api("POST", "/api/notices", {
        title: $("noTitle").value.trim(), text: $("noText").value.trim(),
        valid_from: $("noFrom").value, valid_until: $("noUntil").value, picture,
      });
      $("noticeForm").reset();
      $("noticeBox").open = false;
      loadNotices();
    } catch (err) { $("noticeError").textContent = err.text; }
  });

  // ---- Start -----------------------------------------------------------------------------
  document.addEventListener("dinh:lang", () => { renderMeeting(); renderRoom(); renderFeedback(); refreshLoudspeakers(); loadNotices(); });
  window.dinh = client;
  Dinh.ready.then(async () => {
    const today = new Date();
    const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
    $("noFrom").value = iso(today);
    $("noUntil").value = iso(new Date(today.getTime() + 7 * 86400000));
    await loadMeetings();
    loadNotices();
    refreshFiles();
    refreshLoudspeakers();
    setInterval(refreshLoudspeakers, 3000);
    Dinh.events(onEvent, (up) => { if (up) loadMeetings(); });
    // The signalling connection (the houses, the hands) starts with going live.
    if (new URLSearchParams(location.search).get("autostart") === "1") goLive();
  });
})();
