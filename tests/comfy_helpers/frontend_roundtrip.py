"""Load each UI-format workflow into ComfyUI's real web frontend (headless Chromium) and let the
frontend convert it to API format (app.graphToPrompt), as the Queue button does. Prints one
JSON line: {workflow: {"ok": bool, "api": <frontend's API graph>, "errors": [...]}}.

    python frontend_roundtrip.py http://127.0.0.1:PORT WORKFLOW_DIR [CHROMIUM]
"""

import json
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

URL, WF_DIR = sys.argv[1], Path(sys.argv[2])
CHROMIUM = sys.argv[3] if len(sys.argv) > 3 else "/usr/bin/chromium"
TIMEOUT_MS = 1000 * int(os.environ.get("E2E_TIMEOUT", "1800"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main():
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.goto(URL, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.wait_for_function("() => window.app && window.app.graph && window.app.graphToPrompt", timeout=TIMEOUT_MS)
        for path in sorted(WF_DIR.glob("*.json")):
            wf = json.loads(path.read_text())
            try:
                api = page.evaluate("""async (wf) => {
                    await window.app.loadGraphData(wf, true, false, null);
                    const p = await window.app.graphToPrompt();
                    return p.output;
                }""", wf)
                results[path.stem] = {"ok": True, "api": api}
            except Exception as exc:  # reported, not raised: the test shows which workflow failed
                results[path.stem] = {"ok": False, "errors": [str(exc)[:2000]]}
        browser.close()
    results["_console_errors"] = console[-20:]
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
