// The chair's page: going live, the floor, the houses, the loudspeakers. Needs dinh.js and
// client.js.
"use strict";
(function () {
  const { $, t, el, api } = Dinh;
  const client = new DinhClient({
    role: "chair",
    onStatus: (text, k) => { $("status").textContent = text; $("status").className = "status " + (k || ""); },
    onError: (msg) => { $("error").textContent = msg; },
    onTracks: (tr, local) => {
      $("preview").srcObject = local;
      $("floor").srcObject = new MediaStream([tr[0].receiver.track, tr[1].receiver.track]);
    },
    onState: render,
  });
  $("room").textContent = client.room;
  const VIDEO = { full: "chair.video_full", small: "chair.video_small", off: "chair.video_off" };
  function render(room) {
    const byId = Object.fromEntries(room.houses.map((h) => [h.id, h]));
    const name = (id) => (byId[id] ? byId[id].name : id);
    $("holder").textContent = room.floor ? name(room.floor) : "—";
    $("revoke").disabled = !room.floor;
    $("floor").classList.toggle("hidden", !room.floor);
    $("handsTitle").textContent = t("chair.hands", { n: room.hands.length });
    $("hands").replaceChildren(...room.hands.map((id) => {
      const li = el("li", name(id) + " ");
      li.appendChild(el("button", t("chair.give_floor"), { class: "small", on: { click: () => client.send({ type: "grant_floor", house: id }) } }));
      return li;
    }));
    $("houses").replaceChildren(...room.houses.map((h) => {
      const tr = el("tr");
      tr.appendChild(el("td")).appendChild(el("span", "", { class: "dot" + (h.connected ? " on" : "") }));
      tr.appendChild(el("td", h.hand_raised ? t("chair.house_hand", { house: h.name }) : h.name));
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
  }
  function goLive() { $("live").classList.add("hidden"); $("stop").classList.remove("hidden"); if (client.stopped) client.resume(); else client.start(); }
  function stopLive() {
    client.stop();
    $("status").textContent = t("chair.stopped"); $("status").className = "status";
    $("stop").classList.add("hidden"); $("live").classList.remove("hidden");
  }
  $("live").addEventListener("click", goLive);
  $("stop").addEventListener("click", stopLive);
  $("revoke").addEventListener("click", () => client.send({ type: "revoke_floor" }));

  // Loudspeakers: the relay switch and each cluster's health, refreshed every 3 s.
  let relayOn = false;
  const HEALTH = { up: "chair.health_up", down: "chair.health_down", unknown: "chair.health_unknown" };
  const PLAYING = { meeting: "chair.playing_meeting", silence: "chair.playing_silence" };
  async function refreshLoudspeakers() {
    try {
      const [c, a] = await Promise.all([api("GET", "/api/clusters"), api("GET", "/api/broadcast/announcements")]);
      relayOn = (a.relays || []).includes(client.room);
      $("relay").textContent = t(relayOn ? "chair.relay_off" : "chair.relay_on");
      $("relay").className = relayOn ? "danger" : "secondary";
      $("clusters").replaceChildren(...(c.clusters || []).map((cl) => {
        const h = cl.health || {};
        const tr = el("tr");
        tr.appendChild(el("td")).appendChild(el("span", "", { class: "dot" + (h.status === "up" ? " on" : "") }));
        tr.appendChild(el("td", cl.name || cl.id || (cl.config && cl.config.id)));
        const health = HEALTH[h.status] ? t(HEALTH[h.status]) : "—";
        tr.appendChild(el("td", h.status === "down" && h.reason ? t("chair.health_down_why", { reason: h.reason }) : health));
        const p = cl.playing || "";
        tr.appendChild(el("td", PLAYING[p] ? t(PLAYING[p]) : p.startsWith("announcement:") ? t("chair.playing_announcement") : "—"));
        return tr;
      }));
    } catch (e) { /* the next refresh tries again */ }
  }
  $("relay").addEventListener("click", async () => {
    try { await api("POST", `/api/broadcast/${encodeURIComponent(client.room)}/relay`, { on: !relayOn }); $("error").textContent = ""; }
    catch (e) { $("error").textContent = e.text; }
    refreshLoudspeakers();
  });
  document.addEventListener("dinh:lang", () => { if (client.lastRoom) render(client.lastRoom); refreshLoudspeakers(); });
  window.dinh = client;
  Dinh.ready.then(() => {
    refreshLoudspeakers();
    setInterval(refreshLoudspeakers, 3000);
    if (new URLSearchParams(location.search).get("autostart") === "1") goLive();
  });
})();
