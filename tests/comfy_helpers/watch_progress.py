"""Queue one API graph on a running ComfyUI and record what its websocket tells a watching user:
progress ticks and the progress text shown on the node, with the seconds since the node began.

    python watch_progress.py http://127.0.0.1:PORT GRAPH.json NODE_ID

Prints one line: RESULT {"started": bool, "events": [[seconds, kind, payload], ...], "status": ...}
(kind: "progress" with [value, max], or "text" with the text).
"""

import asyncio
import json
import struct
import sys
import time
import uuid
from pathlib import Path

import aiohttp

URL, GRAPH, NODE = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), sys.argv[3]
TEXT = 3  # protocol.BinaryEventTypes.TEXT


async def main():
    client_id = uuid.uuid4().hex
    events, started, status = [], None, None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{URL.replace('http', 'ws', 1)}/ws?clientId={client_id}", max_msg_size=0) as ws:
            async with session.post(f"{URL}/prompt", json={"prompt": GRAPH, "client_id": client_id}) as r:
                prompt_id = (await r.json())["prompt_id"]
            async for msg in ws:
                now = time.monotonic()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    kind = struct.unpack(">I", msg.data[:4])[0]
                    if kind == TEXT and started is not None:
                        n = struct.unpack(">I", msg.data[4:8])[0]
                        node = msg.data[8:8 + n].decode()
                        if node == NODE:
                            events.append([now - started, "text", msg.data[8 + n:].decode()])
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                kind, body = data["type"], data.get("data", {})
                if body.get("prompt_id") not in (None, prompt_id):
                    continue
                if kind == "executing" and body.get("node") == NODE and started is None:
                    started = now
                elif kind == "progress" and body.get("node") == NODE and started is not None:
                    events.append([now - started, "progress", [body["value"], body["max"]]])
                elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                    status = kind
                    break
    print("RESULT " + json.dumps({"started": started is not None, "events": events, "status": status}))


if __name__ == "__main__":
    asyncio.run(main())
