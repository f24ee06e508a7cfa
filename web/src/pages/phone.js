// The phone page a house screen's QR code opens: a villager raises feedback for that house in
// the meeting under way and sees what became of it. The token in the address can do nothing
// else; once the meeting closes, or the token is spent, the page says so plainly.
"use strict";
(function () {
  const { $, t, el, api, show } = Dinh;
  let ctx = null;

  function refuse(err) {
    const expired = err.code === "token_expired";
    const closed = err.code === "meeting_closed";
    $("refusedTitle").textContent = t(closed ? "phone.closed_title" : expired ? "phone.expired_title" : "phone.refused_title");
    $("refusedText").textContent = closed || expired ? t("phone.scan_again") : err.text;
    show("refused", true);
    show("form", false);
  }

  function render() {
    if (!ctx) return;
    const m = ctx.meeting;
    $("where").textContent = t("phone.where", { house: ctx.house.name, meeting: m.title });
    $("now").textContent = m.current_item != null ? t("phone.current_item", { item: m.agenda[m.current_item] }) : "";
    const sel = $("item");
    const keep = sel.value;
    sel.replaceChildren(el("option", t("phone.no_item"), { value: "" }), ...m.agenda.map((a, i) => el("option", a, { value: String(i) })));
    sel.value = keep !== "" ? keep : m.current_item != null ? String(m.current_item) : "";
    $("mine").replaceChildren(...(ctx.items.length ? ctx.items.slice().reverse().map((f) => {
      const li = el("li", null, { data: { feedback: f.id } });
      li.appendChild(el("div", f.content));
      const st = el("div", null, { class: "muted" });
      st.appendChild(el("span", Dinh.time(f.raised_at)));
      st.appendChild(el("span", t("feedback.status." + f.status), { class: "badge " + f.status }));
      li.appendChild(st);
      if (f.answer) li.appendChild(el("div", t("phone.answer", { answer: f.answer })));
      return li;
    }) : [el("li", t("phone.none_yet"), { class: "muted" })]));
    show("form", true);
  }

  async function load() {
    try { ctx = await api("GET", "/api/phone"); render(); }
    catch (e) { if (e.status === 0) $("error").textContent = e.text; else refuse(e); }
  }

  $("raiseForm").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("sent").textContent = ""; $("error").textContent = "";
    const bad = Dinh.check($("raiseForm"));
    if (bad) { $("error").textContent = bad; return; }
    const item = $("item").value;
    $("send").disabled = true;
    try {
      await api("POST", "/api/phone/feedback", { content: $("content").value.trim(), agenda_item: item === "" ? null : Number(item) });
      $("content").value = "";
      $("sent").textContent = t("phone.sent");
      await load();
    } catch (err) {
      if (err.code === "meeting_closed" || err.status === 401) refuse(err);
      else $("error").textContent = err.text;
    } finally { $("send").disabled = false; }
  });
  document.addEventListener("dinh:lang", render);
  Dinh.ready.then(() => {
    if (!Dinh.token) { refuse({ code: "token_missing", text: t("error.token_missing") }); return; }
    load();
    // Answers and a closing meeting show up without a reload.
    setInterval(() => { if (!$("form").classList.contains("hidden")) load(); }, 20000);
  });
})();
