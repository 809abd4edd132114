"""A minimal client for a headless ComfyUI server: queue API-format graphs, wait for history."""

from __future__ import annotations

import json
import time
import uuid

import requests


class PromptRejected(Exception):
    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class ComfyClient:
    def __init__(self, url: str, timeout: float = 1800):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def object_info(self) -> dict:
        return requests.get(f"{self.url}/object_info", timeout=60).json()

    def queue(self, graph: dict) -> str:
        r = requests.post(f"{self.url}/prompt", json={"prompt": graph, "client_id": uuid.uuid4().hex}, timeout=60)
        body = r.json()
        if r.status_code != 200 or body.get("node_errors"):
            raise PromptRejected(body)
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float | None = None) -> dict:
        deadline = time.time() + (timeout or self.timeout)
        while time.time() < deadline:
            h = requests.get(f"{self.url}/history/{prompt_id}", timeout=60).json()
            if prompt_id in h and h[prompt_id].get("status", {}).get("completed") is not None:
                entry = h[prompt_id]
                status = entry["status"]
                if status.get("status_str") in ("success", "error") or status.get("completed"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout or self.timeout} s")

    def run(self, graph: dict, timeout: float | None = None) -> dict:
        return self.wait(self.queue(graph), timeout)


def error_of(entry: dict) -> dict | None:
    """The execution_error message of a finished prompt, if any."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return data
    return None


def text_output(entry: dict, node_id: str) -> str:
    return "".join(entry["outputs"][node_id]["text"])
