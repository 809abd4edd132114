"""Open each shipped workflow in ComfyUI's real web frontend (headless Chromium) the way a user
does — the Templates browser, the pack's tab, a click on the workflow's card — and report what
the loaded graph looks like, what the frontend would send, and how a run queued from the page
ends. The test (test_comfyui_e2e.py) makes the assertions; this script only observes.

    python frontend_check.py http://127.0.0.1:PORT PLAN.json CHROMIUM SCREENSHOT_DIR

PLAN.json: {"pack": "<custom_nodes folder name>",
            "workflows": [{"name": ..., "set_widgets": {node_id: {input: value}} | null}, ...]}
For a workflow with `set_widgets`, those widget values are set in the page (a small checkpoint,
few steps), and the workflow is queued with the page's own queue call and waited for.
Prints one line: RESULT <json>.
"""

import json
import os
import sys
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

URL, PLAN, CHROMIUM, SHOTS = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), sys.argv[3], Path(sys.argv[4])
TIMEOUT_S = int(os.environ.get("E2E_TIMEOUT", "1800"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

GRAPH_STATE = """() => {
    const registered = window.LiteGraph.registered_node_types;
    return window.app.graph._nodes.map(n => ({
        id: n.id, type: n.type, title: n.title, missing: !(n.type in registered),
        bounding: Array.from(n.getBounding()),
        widgets: (n.widgets || []).map(w => ({
            name: w.name, type: w.type, value: w.value,
            min: w.options ? w.options.min : undefined, max: w.options ? w.options.max : undefined,
            values: w.options && Array.isArray(w.options.values) ? w.options.values : null})),
    }));
}"""


def open_templates(page):
    """The sidebar's Templates button, unless the dialog is already open (first visit)."""
    entry = page.get_by_text(PLAN["pack"], exact=True)
    if entry.count() == 0:
        page.get_by_role("button", name="Templates").first.click()
        entry.first.wait_for()
    entry.first.click()
    page.locator("[data-testid^='template-workflow-']").first.wait_for()


def listed_templates(page) -> list[str]:
    ids = page.evaluate("() => Array.from(document.querySelectorAll(\"[data-testid^='template-workflow-']\"))"
                        ".map(e => e.getAttribute('data-testid'))")
    return sorted(i[len("template-workflow-"):] for i in ids)


def history_ids() -> set[str]:
    return set(requests.get(f"{URL}/history", timeout=60).json())


def wait_for_idle_queue() -> None:
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        q = requests.get(f"{URL}/queue", timeout=60).json()
        if not q["queue_running"] and not q["queue_pending"]:
            return
        time.sleep(1.0)
    raise TimeoutError("the queued workflow did not finish in time")


def run_status(new_ids: set[str]) -> list[dict]:
    history = requests.get(f"{URL}/history", timeout=60).json()
    out = []
    for pid in new_ids:
        status = history[pid].get("status", {})
        errors = [m for m in status.get("messages", []) if m[0] == "execution_error"]
        out.append({"status": status.get("status_str"), "completed": status.get("completed"),
                    "errors": [e[1].get("exception_message", "")[:2000] for e in errors]})
    return out


def check_workflow(page, item: dict) -> dict:
    name = item["name"]
    result = {"name": name}
    open_templates(page)
    page.locator(f"[data-testid='template-workflow-{name}']").click()
    expected_nodes = item["node_count"]
    page.wait_for_function(f"() => window.app.graph._nodes.length === {expected_nodes}")
    page.locator("[data-testid^='template-workflow-']").first.wait_for(state="detached")
    page.wait_for_timeout(500)
    result["nodes"] = page.evaluate(GRAPH_STATE)
    result["api_as_loaded"] = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    if item.get("set_widgets"):
        page.evaluate("""(values) => {
            for (const [id, inputs] of Object.entries(values)) {
                const node = window.app.graph.getNodeById(Number(id));
                for (const [name, value] of Object.entries(inputs)) {
                    const widget = node.widgets.find(w => w.name === name);
                    if (!widget) throw new Error(`node ${id} has no widget ${name}`);
                    widget.value = value;
                }
            }
        }""", item["set_widgets"])
        result["api_as_queued"] = page.evaluate("async () => (await window.app.graphToPrompt()).output")
        before = history_ids()
        t0 = time.time()
        page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
        # the page queues asynchronously: wait until the server has the prompt, then until it is done
        deadline = time.time() + 120
        while history_ids() == before and time.time() < deadline:
            q = requests.get(f"{URL}/queue", timeout=60).json()
            if q["queue_running"] or q["queue_pending"]:
                break
            time.sleep(0.5)
        wait_for_idle_queue()
        result["runs"] = run_status(history_ids() - before)
        result["run_seconds"] = time.time() - t0
    return result


def main():
    results = {"workflows": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        # large enough that a fitted graph renders its text (the canvas drops text when zoomed far out)
        page = browser.new_page(viewport={"width": 2400, "height": 1500})
        page.set_default_timeout(1000 * TIMEOUT_S)
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.goto(URL, wait_until="domcontentloaded")
        page.wait_for_function("() => window.app && window.app.graph && window.app.graphToPrompt && window.LiteGraph")
        # draw node text at any zoom, so screenshots of fitted wide graphs stay readable: frontend 1.35
        # switches to low-detail nodes by font size (0 = never); LowQualityRenderingZoomThreshold is
        # deprecated there and ignored
        page.evaluate("() => window.app.extensionManager.setting.set('LiteGraph.Canvas.MinFontSizeForLOD', 0)")
        page.wait_for_timeout(2000)  # the first-visit Templates dialog opens on its own a moment later
        open_templates(page)
        results["listed"] = listed_templates(page)
        page.keyboard.press("Escape")
        for item in PLAN["workflows"]:
            try:
                results["workflows"][item["name"]] = check_workflow(page, item)
            except Exception as exc:  # reported, not raised: the test says which workflow failed
                results["workflows"][item["name"]] = {"name": item["name"], "error": str(exc)[:3000]}
        browser.close()
    results["console_errors"] = console[-30:]
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
