// The house screen: an unattended kiosk on a TV driven by a remote. Between meetings it is
// the village's bulletin board (next meeting, notices, this house's feedback and answers);
// during one, the chair's programme, the current agenda item and a QR code that opens the
// feedback form on a villager's phone. It changes by itself from the record's event stream
// and comes back by itself when the hub does. Needs dinh.js and client.js.
"use strict";
(function () {
  const { $, t, el, api, show } = Dinh;
  const program = $("program"), floor = $("floor");
  const enc = encodeURIComponent;
  let handUp = false;
  let room = null; // the SFU's view of the room (signalling)
  let board = null; // the record's view (GET /api/board)

  const client = new DinhClient({
    role: "house",
    onStatus: (text, k) => { $("status").textContent = text; $("status").className = "status " + (k || ""); },
    onError: (msg) => { $("status").textContent = msg; $("status").className = "status error"; },
    onTracks: (tr, local) => {
      program.srcObject = new MediaStream([tr[0].receiver.track, tr[1].receiver.track]);
      floor.srcObject = new MediaStream([tr[2].receiver.track, tr[3].receiver.track]);
      // The microphone and camera go out only while this house holds the floor.
      local.getTracks().forEach((x) => (x.enabled = false));
      play();
    },
    onAudioOnly: (on) => {
      $("audioOnly").textContent = t(on ? "house.video_back" : "house.audio_only");
      program.classList.toggle("dim", on);
    },
    onState: (r) => { room = r; show("hubDown", false); renderRoom(); renderMode(); },
    onLost: () => show("hubDown", true),
  });

  function myName() {
    if (board && board.house) return board.house.name;
    const me = room && room.houses.find((h) => h.id === client.id);
    return me ? me.name : (client.claims ? client.claims.name : "");
  }

  // ---- The meeting: programme, floor, hand ----------------------------------------------
  function renderRoom() {
    $("title").textContent = t("house.title_named", { house: myName() });
    if (!room) return;
    const me = room.houses.find((h) => h.id === client.id);
    const open = board && board.open;
    show("waiting", !!open && !room.live);
    const mine = room.floor === client.id;
    handUp = room.hands.includes(client.id) || mine;
    $("hand").textContent = t(mine ? "house.end_speaking" : handUp ? "house.hand_up" : "house.raise_hand");
    show("floorBanner", mine);
    floor.classList.toggle("hidden", !room.floor || mine);
    if (client.localStream) client.localStream.getTracks().forEach((x) => (x.enabled = mine && !(me && me.muted)));
  }
  function play() {
    Promise.all([program.play(), floor.play()]).then(() => show("tap", false)).catch(() => show("tap", true));
  }

  // The board between meetings, the stage during one (a meeting open, or the chair live).
  let mode = "";
  function renderMode() {
    const meeting = !!(board && board.open) || !!(room && room.live);
    const next = meeting ? "stage" : "board";
    show("board", next === "board");
    show("stage", next === "stage");
    if (next !== mode) {
      mode = next;
      if (!panelOpen()) (mode === "stage" ? $("hand") : $("operator")).focus();
    }
    const open = board && board.open;
    show("meetingSide", !!open);
    if (open) {
      $("meetingTitle").textContent = open.title;
      const cur = open.current_item != null ? open.agenda[open.current_item] : null;
      $("currentItem").textContent = cur ? t("house.current_item", { item: cur.title }) : t("house.no_current_item");
    }
    renderQr();
  }

  // ---- The bulletin board -----------------------------------------------------------------
  const pictures = new Map(); // name -> object URL, fetched with the token
  async function picture(name) {
    if (!pictures.has(name)) {
      const r = await fetch(`/api/notices/pictures/${enc(name)}`, { headers: { authorization: "Bearer " + Dinh.token } });
      if (!r.ok) return null;
      pictures.set(name, URL.createObjectURL(await r.blob()));
    }
    return pictures.get(name);
  }

  function renderBoard() {
    if (!board) return;
    const next = board.upcoming[0];
    const nm = $("nextMeeting");
    if (next) {
      nm.replaceChildren(
        el("h3", next.title),
        el("p", t("house.next_meeting_at", { time: Dinh.dateTime(next.starts_at, { weekday: "long", day: "numeric", month: "numeric", year: "numeric", hour: "2-digit", minute: "2-digit" }) })),
        el("ol", null, { class: "agenda" }),
      );
      next.agenda.forEach((a) => nm.querySelector("ol").appendChild(el("li", a.title)));
    } else nm.replaceChildren(el("p", t("house.no_meeting_scheduled"), { class: "muted" }));

    $("notices").replaceChildren(...(board.notices.length ? board.notices.map((n) => {
      const c = el("div", null, { class: "card notice", data: { notice: n.id } });
      c.appendChild(el("h3", n.title));
      c.appendChild(el("p", n.text));
      c.appendChild(el("p", t("house.notice_until", { date: Dinh.date(n.valid_until) }), { class: "muted" }));
      if (n.picture) {
        const img = el("img", null, { alt: n.title });
        c.appendChild(img);
        picture(n.picture.name).then((u) => { if (u) img.src = u; else img.remove(); });
      }
      return c;
    }) : [el("p", t("house.no_notices"), { class: "muted" })]));

    $("items").replaceChildren(...(board.feedback.length ? board.feedback.map((f) => {
      const c = el("div", null, { class: "card" + (f.overdue ? " overdue" : ""), data: { feedback: f.id } });
      const head = el("p");
      head.appendChild(el("span", f.content.length > 240 ? f.content.slice(0, 240) + "…" : f.content));
      c.appendChild(head);
      const st = el("p", null, { class: "muted" });
      st.appendChild(el("span", t("house.item_meta", { meeting: f.meeting_title, date: Dinh.date(f.raised_at) })));
      st.appendChild(el("span", t("feedback.status." + f.status), { class: "badge " + f.status }));
      if (f.overdue) st.appendChild(el("span", t("house.overdue"), { class: "badge overdue" }));
      c.appendChild(st);
      if (f.deadline && !f.answer) c.appendChild(el("p", t("house.deadline", { date: Dinh.date(f.deadline) })));
      if (f.answer) {
        const a = el("p", null, { class: "answer" });
        a.appendChild(el("b", t("house.answer_label")));
        a.appendChild(el("span", " " + f.answer));
        c.appendChild(a);
      }
      return c;
    }) : [el("p", t("house.no_feedback"), { class: "muted" })]));
  }

  async function loadBoard() {
    try {
      board = await api("GET", "/api/board");
      show("hubDown", false);
      renderBoard();
      renderRoom();
      renderMode();
      renderPanel();
    } catch (e) {
      if (e.status === 0) show("hubDown", true);
      else $("status").textContent = e.text;
    }
  }
  let boardTimer = null;
  function loadBoardSoon() { clearTimeout(boardTimer); boardTimer = setTimeout(loadBoard, 300); }

  // ---- The QR code: a short-lived feedback token for this house in this meeting ------------
  let qr = null; // { meeting, url, renewAt }
  let qrTimer = null;
  async function renderQr() {
    const open = board && board.open;
    show("qrSide", !!open && !!qr && qr.meeting === open.id);
    if (!open) { if (qr) { URL.revokeObjectURL(qr.img); qr = null; } show("qrBig", false); return; }
    if (qr && qr.meeting === open.id && Date.now() < qr.renewAt) return;
    if (renderQr.busy) return;
    renderQr.busy = true;
    try {
      const link = await api("POST", "/api/house/feedback-link", { base: location.origin });
      const img = URL.createObjectURL(new Blob([link.svg], { type: "image/svg+xml" }));
      if (qr) URL.revokeObjectURL(qr.img);
      qr = { meeting: link.meeting, url: link.url, img, renewAt: Date.now() + link.renew_after_secs * 1000 };
      $("qrImg").src = img;
      $("qrBigImg").src = img;
      show("qrSide", true);
      clearTimeout(qrTimer);
      qrTimer = setTimeout(renderQr, link.renew_after_secs * 1000 + 500);
    } catch (e) {
      clearTimeout(qrTimer);
      qrTimer = setTimeout(renderQr, 10000);
    } finally { renderQr.busy = false; }
  }
  $("qrButton").addEventListener("click", () => { show("qrBig", true); $("qrClose").focus(); });
  $("qrClose").addEventListener("click", () => { show("qrBig", false); $("qrButton").focus(); });

  // ---- The operator panel: headcount, check-in, feedback typed on the spot ---------------
  const panelOpen = () => !$("panel").classList.contains("hidden");
  function renderPanel() {
    const open = board && board.open;
    show("panelNoMeeting", !open);
    for (const f of ["headcountForm", "checkinForm", "raiseForm"]) $(f).querySelectorAll("input, textarea, select, button").forEach((x) => (x.disabled = !open));
    if (!open) return;
    const sel = $("rfItem");
    const keep = sel.value;
    sel.replaceChildren(el("option", t("house.no_item"), { value: "" }), ...open.agenda.map((a, i) => el("option", a.title, { value: String(i) })));
    sel.value = keep !== "" ? keep : open.current_item != null ? String(open.current_item) : "";
  }
  function openPanel() { show("panel", true); renderPanel(); $("panelMsg").textContent = ""; $("panelError").textContent = ""; firstFocusable($("panel")).focus(); }
  function closePanel() { show("panel", false); $("operator").focus(); }
  $("operator").addEventListener("click", openPanel);
  $("panelClose").addEventListener("click", closePanel);

  async function panelSend(form, fn, done) {
    $("panelMsg").textContent = ""; $("panelError").textContent = "";
    const bad = Dinh.check(form);
    if (bad) { $("panelError").textContent = bad; return; }
    try { await fn(); form.reset(); $("panelMsg").textContent = done; renderPanel(); }
    catch (e) { $("panelError").textContent = e.text; }
  }
  const meetingCommand = (body) => api("POST", `/api/meetings/${enc(board.open.id)}/commands`, Object.assign({ house: client.id }, body));
  $("headcountForm").addEventListener("submit", (e) => {
    e.preventDefault();
    const n = Number($("hcCount").value);
    panelSend($("headcountForm"), () => meetingCommand({ type: "report_headcount", count: n }), t("house.headcount_done", { n }));
  });
  $("checkinForm").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("ciName").value.trim();
    panelSend($("checkinForm"), () => meetingCommand({ type: "check_in", name }), t("house.checkin_done", { name }));
  });
  $("raiseForm").addEventListener("submit", (e) => {
    e.preventDefault();
    const item = $("rfItem").value;
    panelSend($("raiseForm"), () => api("POST", "/api/feedback", {
      meeting: board.open.id, content: $("rfContent").value.trim(), agenda_item: item === "" ? null : Number(item),
    }), t("house.raise_done"));
  });

  // ---- The remote: arrows move between the controls in view, Enter presses, Back closes --
  function focusables(root) {
    return [...root.querySelectorAll("button, input, select, textarea, summary, [tabindex]")]
      .filter((x) => !x.disabled && x.offsetParent !== null && !x.closest(".hidden"));
  }
  function firstFocusable(root) { return focusables(root)[0] || root; }
  function scope() {
    if (!$("qrBig").classList.contains("hidden")) return $("qrBig");
    if (panelOpen()) return $("panel");
    if (!$("tap").classList.contains("hidden")) return $("tap");
    return document.body;
  }
  document.addEventListener("keydown", (e) => {
    const a = document.activeElement;
    if (e.key === "Escape" || e.key === "GoBack" || e.key === "BrowserBack") {
      if (!$("qrBig").classList.contains("hidden")) { show("qrBig", false); $("qrButton").focus(); e.preventDefault(); }
      else if (panelOpen()) { closePanel(); e.preventDefault(); }
      return;
    }
    const dir = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[e.key];
    if (!dir) return;
    // In a text field Left and Right move the caret; in a text area Up and Down move between
    // lines until the first or last, a select keeps Up and Down for its options.
    if (a && (a.tagName === "INPUT" && a.type !== "number" || a.tagName === "TEXTAREA") && (e.key === "ArrowLeft" || e.key === "ArrowRight")) return;
    if (a && a.tagName === "TEXTAREA" && ((dir < 0 && a.selectionStart > 0) || (dir > 0 && a.selectionEnd < a.value.length))) return;
    if (a && a.tagName === "SELECT" && (e.key === "ArrowUp" || e.key === "ArrowDown")) return;
    const list = focusables(scope());
    if (!list.length) return;
    const i = list.indexOf(a);
    const next = list[(i < 0 ? 0 : i + dir + list.length) % list.length];
    next.focus();
    e.preventDefault();
  });

  // ---- Clock, language, start -------------------------------------------------------------
  function tick() { $("clock").textContent = Dinh.dateTime(new Date(), { weekday: "short", hour: "2-digit", minute: "2-digit" }); }
  $("tapBtn").addEventListener("click", () => { show("tap", false); play(); });
  $("hand").addEventListener("click", () => client.send({ type: handUp ? "lower_hand" : "raise_hand" }));
  $("audioOnly").addEventListener("click", () => client.setAudioOnly(!client.audioOnly, true));
  document.addEventListener("dinh:lang", () => { renderBoard(); renderRoom(); renderMode(); renderPanel(); tick(); });
  window.dinh = client;
  window.dinhHouse = { board: () => board, qrUrl: () => qr && qr.url };
  Dinh.ready.then(() => {
    tick();
    setInterval(tick, 15000);
    loadBoard();
    // A notice's last day ends at midnight: read the board again now and then.
    setInterval(loadBoard, 60000);
    Dinh.events(loadBoardSoon, (up) => { if (up) { show("hubDown", false); loadBoardSoon(); } else show("hubDown", true); });
    client.start();
  });
})();
