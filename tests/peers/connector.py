"""A connector written against protocols/connector-api.md with Python's `websockets` and OpenSSL:
an implementation of TLS, WebSocket and the protocol that shares no code with the gateway.

usage: connector.py URL CA_PEM TOKEN LOGIN_ID NUMBER
Prints one JSON object: the welcome, the make_call result and the events seen.
"""

import asyncio
import json
import ssl
import sys

import websockets


async def main(url, ca, token, login, number):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    async with websockets.connect(url, ssl=ctx, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "login_ids": [login],
                                  "client": "python-websockets"}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if welcome.get("type") != "welcome":
            print(json.dumps({"refused": welcome}))
            return
        sent = False
        result = None
        events = []
        while result is None or "originated" not in events:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if msg["type"] == "status" and msg["status"] == "green" and not sent:
                sent = True
                await ws.send(json.dumps({"type": "make_call", "id": "py-1", "login_id": login,
                                          "to": number}))
            elif msg["type"] == "result":
                result = msg
            elif msg["type"] == "event":
                assert msg["login_id"] == login, msg
                events.append(msg["event"])
        print(json.dumps({"welcome": welcome, "result": result, "events": events,
                          "tls": ws.transport.get_extra_info("ssl_object").version()}))


asyncio.run(main(*sys.argv[1:]))
