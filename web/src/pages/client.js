// Đình browser client: signalling over WebSocket, one RTCPeerConnection, reconnection.
// Protocol: docs/signalling.md. Shared by /chair and /house; needs dinh.js (token, strings).
//
// Coming back by itself: when the WebSocket drops, the page probes /healthz every 1 to 2 s
// (with jitter) and reconnects as soon as the hub answers, so that a restarted hub has every
// screen back within a few seconds, not after a long backoff. Only a hub that answers but
// keeps refusing the connection makes the page wait longer between tries (up to 8 s).
"use strict";

class DinhClient {
  // opts: { role, onState(room), onStatus(text, kind), onTracks(transceivers), onError(msg), media }
  constructor(opts) {
    this.opts = opts;
    this.token = Dinh.token;
    this.claims = Dinh.claims;
    this.room = this.claims ? this.claims.room : "";
    this.id = this.claims ? this.claims.sub : "";
    this.localStream = null;
    this.pc = null;
    this.ws = null;
    this.retry = 0;
    this.stopped = false;
    this.lastRoom = null;
    this.pending = [];
  }

  async getMedia() {
    if (this.localStream) return this.localStream;
    const tries = this.opts.media === "none" ? [] :
      [{ audio: true, video: { width: 640, height: 360 } }, { audio: true }];
    for (const c of tries) {
      try { this.localStream = await navigator.mediaDevices.getUserMedia(c); return this.localStream; }
      catch (e) { /* try the next, then go receive-only */ }
    }
    this.localStream = new MediaStream();
    return this.localStream;
  }

  start() {
    if (!this.claims) { this.opts.onStatus(Dinh.t("client.no_token"), "error"); return; }
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    this.opts.onStatus(Dinh.t("client.connecting"), "wait");
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/${encodeURIComponent(this.room)}?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    this.welcomed = false;
    ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
    ws.onclose = () => { if (this.ws === ws) this.scheduleReconnect(); };
    ws.onerror = () => {};
  }

  scheduleReconnect() {
    if (this.stopped || this.waiting) return;
    this.teardownPc();
    const old = this.ws;
    this.ws = null;
    if (old) { try { old.close(); } catch (e) { /* already closed */ } }
    // A connection that never got its welcome while the hub answers is being refused: wait a
    // little longer each time (1, 2, 4, 8 s). One that worked comes back as soon as it can.
    this.retry = this.welcomed ? 0 : Math.min(this.retry + 1, 4);
    this.opts.onStatus(Dinh.t("client.lost"), "error");
    this.waiting = true;
    Dinh.hubAnswers().then(() => {
      const delay = this.retry ? 500 * Math.pow(2, this.retry - 1) * (1 + Math.random()) : 0;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => { this.waiting = false; this.connect(); }, delay);
    });
    if (this.opts.onLost) this.opts.onLost();
  }

  /** Leave: close the media and the signalling, and do not come back. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.teardownPc();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  /** Join again after stop(). */
  resume() {
    this.stopped = false;
    this.waiting = false;
    this.connect();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  async onMessage(m) {
    switch (m.type) {
      case "welcome":
        this.welcomed = true;
        this.iceServers = m.ice_servers || [];
        await this.startPc();
        break;
      case "answer":
        await this.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
        // A new session starts with video: keep the low-bandwidth mode across reconnections.
        if (this.audioOnly) this.send({ type: "audio_only", on: true });
        if (this.lowQuality) this.send({ type: "low_quality", on: true });
        break;
      case "audio_only":
        this.audioOnly = m.on;
        if (this.opts.onAudioOnly) this.opts.onAudioOnly(m.on);
        break;
      case "low_quality":
        this.lowQuality = m.on;
        break;
      case "room":
        this.lastRoom = m;
        this.opts.onState(m);
        break;
      case "error":
        if (m.code === "session_ended") { this.scheduleReconnectPc(); }
        else if (this.opts.onError) this.opts.onError(m.message, m.code);
        break;
      case "pong":
        break;
    }
  }

  async startPc() {
    this.teardownPc();
    const stream = await this.getMedia();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    const mic = stream.getAudioTracks()[0];
    const cam = stream.getVideoTracks()[0];
    pc.addTransceiver(mic || "audio", { direction: mic ? "sendrecv" : "recvonly", streams: [stream] });
    const video = { direction: cam ? "sendrecv" : "recvonly", streams: [stream] };
    // The chair's camera goes out as simulcast: a half-size layer for houses on weak links
    // and a full one for the rest, chosen per house by the hub (docs/signalling.md).
    if (cam && this.opts.role === "chair") {
      video.sendEncodings = [
        { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 250000 },
        { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 900000 },
      ];
    }
    pc.addTransceiver(cam || "video", video);
    if (this.opts.role !== "chair") {
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    pc.onicecandidate = (e) => {
      if (e.candidate) this.send({ type: "candidate", candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === "connected") { this.retry = 0; this.opts.onStatus(Dinh.t("client.connected"), "ok"); }
      if (s === "disconnected") this.opts.onStatus(Dinh.t("client.unstable"), "wait");
      if (s === "failed") this.restartIce();
    };
    this.opts.onTracks(pc.getTransceivers(), stream);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.send({ type: "offer", sdp: pc.localDescription.sdp });
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.reportQuality(), 5000);
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), 20000);
  }

  async restartIce() {
    // A network change: try an ICE restart on the same session before starting over.
    if (!this.pc || this.restarting) return;
    this.restarting = true;
    this.opts.onStatus(Dinh.t("client.reconnecting"), "wait");
    try {
      const offer = await this.pc.createOffer({ iceRestart: true });
      await this.pc.setLocalDescription(offer);
      this.send({ type: "offer", sdp: this.pc.localDescription.sdp });
    } catch (e) { this.scheduleReconnect(); }
    setTimeout(() => {
      this.restarting = false;
      if (this.pc && this.pc.connectionState !== "connected") this.scheduleReconnect();
    }, 10000);
  }

  scheduleReconnectPc() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.startPc(); else this.scheduleReconnect();
  }

  teardownPc() {
    clearInterval(this.statsTimer);
    clearInterval(this.pingTimer);
    if (this.pc) { try { this.pc.close(); } catch (e) {} }
    this.pc = null;
  }

  async stats() {
    // A summary of what this page receives, for people (and the end-to-end test).
    const out = { framesDecoded: 0, audioEnergy: 0, packetsLost: 0, packetsReceived: 0, rtt: 0, inbound: [], outbound: [] };
    if (!this.pc) return out;
    const r = await this.pc.getStats();
    r.forEach((s) => {
      if (s.type === "inbound-rtp") {
        out.inbound.push({ kind: s.kind, mid: s.mid, frames: s.framesDecoded || 0, energy: s.totalAudioEnergy || 0, packets: s.packetsReceived || 0, width: s.frameWidth || 0 });
        out.packetsLost += s.packetsLost || 0;
        out.packetsReceived += s.packetsReceived || 0;
        if (s.kind === "video") out.framesDecoded += s.framesDecoded || 0;
        if (s.kind === "audio") out.audioEnergy += s.totalAudioEnergy || 0;
      }
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.outbound.push({ rid: s.rid || "", width: s.frameWidth || 0, frames: s.framesEncoded || 0, active: s.active !== false });
      }
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime) out.rtt = s.currentRoundTripTime * 1000;
    });
    return out;
  }

  async reportQuality() {
    const s = await this.stats();
    const prev = this.prevStats || { packetsLost: 0, packetsReceived: 0 };
    const lost = s.packetsLost - prev.packetsLost;
    const recv = s.packetsReceived - prev.packetsReceived;
    this.prevStats = s;
    const loss = lost + recv > 0 ? (100 * lost) / (lost + recv) : 0;
    this.send({ type: "quality", loss_pct: Math.max(0, loss), rtt_ms: s.rtt });
    // On a weak link, by itself: 5 % loss for 10 s asks for the small picture, and 15 % for
    // 15 s drops the video, unless someone chose otherwise on this screen. The voice is what
    // matters in a meeting. A clean link for 30 s brings the sharp picture back.
    this.lossyReports = loss >= 5 ? (this.lossyReports || 0) + 1 : 0;
    this.cleanReports = loss < 1 ? (this.cleanReports || 0) + 1 : 0;
    if (this.lossyReports >= 2 && !this.lowQuality && !this.lowQualityChosen) this.send({ type: "low_quality", on: true });
    if (this.cleanReports >= 6 && this.lowQuality && !this.lowQualityChosen) this.send({ type: "low_quality", on: false });
    this.badReports = loss >= 15 ? (this.badReports || 0) + 1 : 0;
    if (this.badReports >= 3 && !this.audioOnly && !this.audioOnlyChosen) this.setAudioOnly(true, false);
  }

  /** Small picture (the smallest simulcast layer) on or off; `chosen` as for setAudioOnly. */
  setLowQuality(on, chosen) {
    if (chosen) this.lowQualityChosen = true;
    this.send({ type: "low_quality", on });
  }

  /** Low-bandwidth mode on or off; `chosen`: a person pressed the button (automatic mode then
   *  leaves it alone). */
  setAudioOnly(on, chosen) {
    if (chosen) this.audioOnlyChosen = true;
    this.send({ type: "audio_only", on });
  }
}
window.DinhClient = DinhClient;
