"""Conversion between ComfyUI's two graph formats, driven by /object_info.

API format (what POST /prompt takes): {id: {"class_type", "inputs": {name: value | [src_id, slot]}}}.
UI format (what people drag into ComfyUI): {"nodes": [{id, type, inputs, outputs, widgets_values, ...}],
"links": [[link_id, src_id, src_slot, dst_id, dst_slot, type]], ...}.

Widget values are listed in the node's input order (required, then optional), one per widget
input; an INT with a "control after generate" widget is followed by its control value ("fixed")
and an image-upload combo by the upload widget's value ("image"). The frontend (1.35.9,
useIntWidget) adds that control widget when the input says `control_after_generate`, or — when
the input leaves it unset — when the INT input is named `seed` or `noise_seed`."""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def input_specs(info: dict) -> list[tuple[str, str, dict]]:
    """[(name, type, options)] in the node's input order (required, optional)."""
    out = []
    order = info.get("input_order", {})
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in order.get(section, list(spec)):
            typ, *rest = spec[name]
            opts = dict(rest[0]) if rest else {}
            if isinstance(typ, list):  # the legacy combo spec: the options in place of the type
                opts.setdefault("options", typ)
                typ = "COMBO"
            out.append((name, typ, opts))
    return out


def is_widget(typ: str, opts: dict) -> bool:
    return typ in WIDGET_TYPES and not opts.get("forceInput")


#: INT inputs the frontend gives a "control after generate" widget unless the input says otherwise.
SEED_NAMES = ("seed", "noise_seed")
#: The values the frontend's control widget accepts.
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


def has_control_widget(name: str, typ: str, opts: dict) -> bool:
    """The frontend's rule: `control_after_generate ?? name in ("seed", "noise_seed")` for INTs."""
    if typ != "INT":
        return False
    flag = opts.get("control_after_generate")
    return bool(flag) if flag is not None else name in SEED_NAMES


def extra_widget_values(name: str, typ: str, opts: dict) -> list:
    extra = []
    if has_control_widget(name, typ, opts):
        extra.append("fixed")
    if opts.get("image_upload"):
        extra.append("image")
    return extra


def ui_to_api(ui: dict, object_info: dict) -> dict:
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0:  # muted/bypassed nodes are not sent
            continue
        info = object_info[node["type"]]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs = {}
        for name, typ, opts in input_specs(info):
            if is_widget(typ, opts):
                value = values.pop(0) if values else None
                for _ in extra_widget_values(name, typ, opts):
                    if values:
                        values.pop(0)
                if name in linked:
                    link = linked[name]
                    inputs[name] = [str(link[1]), link[2]]
                elif value is not None:
                    inputs[name] = value
            elif name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def api_to_ui(api: dict, object_info: dict, positions: dict[str, tuple[float, float]] | None = None,
              titles: dict[str, str] | None = None, sizes: dict[str, tuple[float, float]] | None = None) -> dict:
    """A UI-format workflow for an API graph (node ids must be integers as strings)."""
    positions = positions or {}
    links = []
    out_links: dict[tuple[str, int], list[int]] = {}
    for nid in sorted(api, key=int):
        for name, value in api[nid]["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                link_id = len(links) + 1
                src, slot = value
                typ = object_info[api[src]["class_type"]]["output"][slot]
                links.append([link_id, int(src), slot, int(nid), name, typ])
                out_links.setdefault((src, slot), []).append(link_id)
    nodes = []
    for order, nid in enumerate(sorted(api, key=int)):
        node = api[nid]
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, typ, opts in input_specs(info):
            value = node["inputs"].get(name)
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            if is_widget(typ, opts):
                widgets.append(value if not is_link else opts.get("default"))
                widgets.extend(extra_widget_values(name, typ, opts))
                if is_link:
                    link = next(lk for lk in links if lk[3] == int(nid) and lk[4] == name)
                    inputs.append({"name": name, "type": typ, "widget": {"name": name}, "link": link[0]})
            elif name in node["inputs"] or name in info["input"].get("required", {}):
                link = next((lk for lk in links if lk[3] == int(nid) and lk[4] == name), None)
                inputs.append({"name": name, "type": typ, "link": link[0] if link else None})
        for i, entry in enumerate(inputs):
            for lk in links:
                if lk[0] == entry["link"]:
                    lk[4] = i  # links name the target slot by index
        outputs = [{"name": name, "type": typ, "links": out_links.get((nid, i), []), "slot_index": i}
                   for i, (name, typ) in enumerate(zip(info["output_name"], info["output"]))]
        entry = {"id": int(nid), "type": node["class_type"], "pos": list(positions.get(nid, (100.0 * order, 0.0))),
                 "size": list(sizes[nid]) if sizes and nid in sizes else [320, 60 + 26 * (len(inputs) + len(widgets))], "flags": {}, "order": order, "mode": 0,
                 "inputs": inputs, "outputs": outputs,
                 "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        if titles and nid in titles:
            entry["title"] = titles[nid]
        nodes.append(entry)
    return {"last_node_id": max(int(n) for n in api), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".png", ".jpg", ".jpeg", ".webp")


def widget_value_problems(ui: dict, object_info: dict) -> list[str]:
    """What the real frontend would load wrongly from a UI-format workflow: a node whose
    widgets_values do not have exactly one slot per widget (frontend-added ones included), or a
    value its input does not accept. File-name combos (checkpoints, images) are not checked
    against this server's files. Empty when the workflow loads as written."""
    problems = []
    for node in ui["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{where}: unknown node type")
            continue
        values = list(node.get("widgets_values", []))
        expected = []
        for name, typ, opts in input_specs(info):
            if is_widget(typ, opts):
                expected.append((name, typ, opts))
                if has_control_widget(name, typ, opts):
                    expected.append((f"{name}: control after generate", "CONTROL", {}))
                if opts.get("image_upload"):
                    expected.append((f"{name}: upload", "UPLOAD", {}))
        if len(values) != len(expected):
            problems.append(f"{where}: {len(values)} widget values for {len(expected)} widgets "
                            f"({', '.join(n for n, _, _ in expected)})")
            continue
        for (name, typ, opts), value in zip(expected, values):
            problem = _value_problem(typ, opts, value, name)
            if problem:
                problems.append(f"{where}: {name} = {value!r}: {problem}")
    return problems


def _value_problem(typ: str, opts: dict, value, name: str) -> str | None:
    if typ == "CONTROL":
        return None if value in CONTROL_VALUES else f"not one of {CONTROL_VALUES}"
    if typ == "UPLOAD":
        return None
    if typ == "BOOLEAN":
        return None if isinstance(value, bool) else "not a boolean"
    if typ in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ == "INT" and value != int(value)):
            return f"not {'an integer' if typ == 'INT' else 'a number'}"
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            return f"outside [{opts.get('min')}, {opts.get('max')}]"
        return None
    if typ == "STRING":
        return None if isinstance(value, str) else "not a string"
    if typ == "COMBO":
        if isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES):
            return None
        return None if value in _combo_options(opts) else "not one of the input's options"
    return None


def _combo_options(opts: dict) -> list:
    return list(opts.get("options", []))
