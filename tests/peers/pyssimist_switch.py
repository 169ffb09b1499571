"""pyssimist's CstaServer as the switch, on 127.0.0.1:PORT: it opens OSV style, answers MonitorStart,
SystemRegister and SnapshotDevice; once DEVICE is monitored it sends its own DeliveredEvent
template for it. Usage: pyssimist_switch.py DEVICE PORT (runs until stdin closes)."""
import os, sys, time
from common import server
from common.server import CstaServer

# pyssimist 1.0.3's CstaServer.__init__ deletes an instance attribute `send` that SipServer no
# longer sets ("It's probably not going to work", says its summary); give it one to delete.
_sip_init = server.SipServer.__init__
def _init(self, *a, **k):
    _sip_init(self, *a, **k)
    self.send = None
server.SipServer.__init__ = _init

# Its CstaApplication.send refuses to send for a user whose `monitorCrossRefID` attribute is
# unset, but the server only fills the `parameters` dict: the switch's own user (recreated on
# every accept) and each monitored device get the attribute set from it. Cross-reference ids
# start at 0, which that check also takes for unset; they start at 1 here.
_cleanup = CstaServer.cleanup
def _cleanup_and_mark(self):
    _cleanup(self)
    self.user.monitorCrossRefID = self.user.parameters["monitorCrossRefID"]
CstaServer.cleanup = _cleanup_and_mark

_monitor_user = CstaServer.monitor_user
def _monitor_and_mark(csta_server, message):
    csta_server.refid = max(csta_server.refid, 1)
    ref = csta_server.refid
    device = message["deviceObject"]
    if device:
        csta_server.csta_endpoint.new_user(device).monitorCrossRefID = ref
    _monitor_user(csta_server, message)
CstaServer.monitor_user = staticmethod(_monitor_and_mark)

DEVICE, PORT = sys.argv[1], int(sys.argv[2])
srv = CstaServer("127.0.0.1", PORT)
srv.serve_in_background()
print("serving on", PORT, flush=True)
deadline = time.time() + 30
while time.time() < deadline:
    u = srv.csta_endpoint.users.get(DEVICE)
    if u is not None and u.parameters.get("monitorCrossRefID") is not None:
        break
    time.sleep(0.05)
else:
    print("NOT MONITORED", flush=True)
    os._exit(1)
print("MONITORED", flush=True)
time.sleep(0.5)
u = srv.csta_endpoint.get_user(DEVICE)
u.parameters.update({
    "alertingDevice": DEVICE, "deviceIdentifier": DEVICE, "numberDialed": DEVICE,
    "localConnectionInfo": "alerting", "cause": "newCall",
    "networkCallingDevice": "+4930123456", "networkCalledDevice": DEVICE,
})
srv.send("DeliveredEvent", to_user=DEVICE)
print("SENT", flush=True)
sys.stdin.read()
# Its serving thread is not a daemon and polls every 60 s: end now.
os._exit(0)
