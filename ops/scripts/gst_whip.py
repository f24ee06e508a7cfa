#!/usr/bin/python3
"""Publish a 440 Hz tone and a test picture to a WHIP endpoint with GStreamer's webrtcbin.

A standard WHIP client that shares no code with the hub: GStreamer's own WebRTC stack
(webrtcbin, libnice for ICE). Debian 12 has no whipsink element, so this script does the
RFC 9725 exchange itself: POST the offer, apply the answer, DELETE the session at the end.

    gst_whip.py URL TOKEN SECONDS [vp8|h264]

H.264 is x264 (gstreamer1.0-plugins-ugly) in the constrained baseline profile browsers decode.

Prints one line per step; exits non-zero when the hub refuses or the connection fails.
"""
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
codec = sys.argv[4] if len(sys.argv) > 4 else "vp8"
Gst.init(None)
video = {
    "vp8": "vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96",
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay pt=96 config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96",
}[codec]
pipe = Gst.parse_launch(
    "webrtcbin name=w bundle-policy=max-bundle "
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.1 ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w. "
    "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=15/1 "
    f"! videoconvert ! {video} ! w."
)
w = pipe.get_by_name("w")
# libnice leaves loopback out of its host candidates when the machine has another interface;
# the tests run the hub on loopback.
# (The agent is kept referenced for the whole run: PyGObject drops one reference too many
# when a temporary wrapper of it is collected.)
ice = w.get_property("ice-agent")
if urllib.parse.urlparse(url).hostname in ("127.0.0.1", "localhost"):
    ice.emit("add-local-ip-address", "127.0.0.1")
loop = GLib.MainLoop()
state = {"location": None, "failed": False}


def fail(msg):
    print(f"gst-whip: {msg}", flush=True)
    state["failed"] = True
    loop.quit()


def request(method, target, body=None, ctype=None):
    req = urllib.request.Request(target, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if ctype:
        req.add_header("Content-Type", ctype)
    return urllib.request.urlopen(req, timeout=10)


def post_offer():
    offer = w.get_property("local-description").sdp.as_text()
    try:
        res = request("POST", url, offer.encode(), "application/sdp")
    except urllib.error.HTTPError as e:
        fail(f"POST refused: {e.code} {e.read().decode(errors='replace')}")
        return False
    if res.status != 201:
        fail(f"POST answered {res.status}")
        return False
    state["location"] = urllib.parse.urljoin(url, res.headers["Location"])
    answer = res.read().decode()
    ok, sdp = GstSdp.SDPMessage.new_from_text(answer)
    desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
    w.emit("set-remote-description", desc, None)
    print("gst-whip: 201 Created, answer applied", flush=True)
    return False


def on_gathering(element, _pspec):
    if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        GLib.idle_add(post_offer)


def on_offer(promise, _):
    reply = promise.get_reply()
    offer = reply.get_value("offer")
    w.emit("set-local-description", offer, Gst.Promise.new())


def on_negotiation_needed(element):
    element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


def on_state(element, _pspec):
    s = element.get_property("connection-state")
    print(f"gst-whip: connection {s.value_nick}", flush=True)
    if s == GstWebRTC.WebRTCPeerConnectionState.FAILED:
        fail("connection failed")


def on_bus(_bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, _ = msg.parse_error()
        fail(f"pipeline error: {err.message}")
    return True


w.connect("on-negotiation-needed", on_negotiation_needed)
w.connect("notify::ice-gathering-state", on_gathering)
w.connect("notify::connection-state", on_state)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_bus)
pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(int(seconds * 1000), loop.quit)
loop.run()
pipe.set_state(Gst.State.NULL)
if state["location"]:
    try:
        request("DELETE", state["location"])
        print("gst-whip: session deleted", flush=True)
    except urllib.error.URLError as e:
        print(f"gst-whip: DELETE failed: {e}", flush=True)
sys.exit(1 if state["failed"] or not state["location"] else 0)
