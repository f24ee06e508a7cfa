// The house screen: the chair's programme, the floor, the hand. Needs dinh.js and client.js.
"use strict";
(function () {
  const { $, t } = Dinh;
  const program = $("program"), floor = $("floor");
  let handUp = false;
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
    onState: render,
  });
  function render(room) {
    const me = room.houses.find((h) => h.id === client.id);
    $("title").textContent = t("house.title_named", { house: me ? me.name : (client.claims ? client.claims.name : "") });
    $("waiting").classList.toggle("hidden", room.live);
    const mine = room.floor === client.id;
    handUp = room.hands.includes(client.id) || mine;
    $("hand").textContent = t(mine ? "house.end_speaking" : handUp ? "house.hand_up" : "house.raise_hand");
    $("floorBanner").classList.toggle("hidden", !mine);
    floor.classList.toggle("hidden", !room.floor || mine);
    if (client.localStream) client.localStream.getTracks().forEach((x) => (x.enabled = mine && !(me && me.muted)));
  }
  function play() {
    Promise.all([program.play(), floor.play()]).then(() => $("tap").classList.add("hidden"))
      .catch(() => $("tap").classList.remove("hidden"));
  }
  $("tapBtn").addEventListener("click", () => { $("tap").classList.add("hidden"); play(); });
  $("hand").addEventListener("click", () => client.send({ type: handUp ? "lower_hand" : "raise_hand" }));
  $("audioOnly").addEventListener("click", () => client.setAudioOnly(!client.audioOnly, true));
  document.addEventListener("dinh:lang", () => { if (client.lastRoom) render(client.lastRoom); });
  window.dinh = client;
  Dinh.ready.then(() => client.start());
})();
