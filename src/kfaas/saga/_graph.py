"""The picture of a state machine with the path an execution took: Mermaid text, or a standalone SVG.

Mermaid (``stateDiagram-v2``) renders in GitHub, GitLab and most docs tools. The SVG is drawn here, with a
simple layered layout (each state one row below the first state that leads to it), so ``kfaas executions
show --graph saga.svg`` needs no Graphviz installed. States this execution entered are green, the state it
failed in is red; Parallel and Map states are drawn as one box each.
"""

from __future__ import annotations

import html
from collections import deque
from typing import Any

__all__ = ["edges", "mermaid", "svg"]

Edge = tuple[str, str, str]  # from, to, label


def edges(definition: dict[str, Any]) -> tuple[list[str], list[Edge], set[str]]:
    """(states in layout order, transitions, final states) of the top level of a definition."""
    states = definition.get("States", {})
    out: list[Edge] = []
    final: set[str] = set()
    for name, state in states.items():
        if state.get("Next"):
            out.append((name, state["Next"], ""))
        for choice in state.get("Choices", []):
            if choice.get("Next"):
                out.append((name, choice["Next"], _rule_label(choice)))
        if state.get("Default"):
            out.append((name, state["Default"], "default"))
        for catcher in state.get("Catch", []):
            out.append((name, catcher["Next"], "catch " + ", ".join(catcher.get("ErrorEquals", []))))
        if state.get("End") or state.get("Type") in ("Succeed", "Fail"):
            final.add(name)
    order: list[str] = []
    seen: set[str] = set()
    queue = deque([definition.get("StartAt")])
    while queue:
        name = queue.popleft()
        if name is None or name in seen or name not in states:
            continue
        seen.add(name)
        order.append(name)
        queue.extend(t for f, t, _ in out if f == name)
    order += [n for n in states if n not in seen]
    return order, out, final


def _rule_label(choice: dict[str, Any]) -> str:
    ops = [k for k in choice if k not in ("Next", "Variable", "Comment")]
    if "Variable" in choice and ops:
        return f"{choice['Variable']} {ops[0]} {choice[ops[0]]}"
    return ops[0] if ops else ""


def _marks(history: list[dict[str, Any]]) -> tuple[set[str], str | None]:
    visited = {
        e["details"]["name"] for e in history if e["type"].endswith("StateEntered") and "frame" not in e
    }
    failed = None
    if history and history[-1]["type"] in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        entered = [
            e["details"]["name"] for e in history if e["type"].endswith("StateEntered") and "frame" not in e
        ]
        failed = entered[-1] if entered else None
    return visited, failed


def mermaid(definition: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str:
    order, out, final = edges(definition)
    ids = {name: f"s{i}" for i, name in enumerate(order)}
    lines = ["stateDiagram-v2"]
    for name in order:
        kind = definition["States"][name].get("Type", "")
        label = name.replace('"', "'")
        lines.append(f'    state "{label} ({kind})" as {ids[name]}')
    lines.append(f"    [*] --> {ids[definition['StartAt']]}")
    for source, target, label in out:
        if source in ids and target in ids:
            text = f": {label.replace(':', ' ')}" if label else ""
            lines.append(f"    {ids[source]} --> {ids[target]}{text}")
    for name in sorted(final):
        lines.append(f"    {ids[name]} --> [*]")
    if history is not None:
        visited, failed = _marks(history)
        lines.append("    classDef visited fill:#d1f0d9,stroke:#1e7e34,color:#000")
        lines.append("    classDef failed fill:#f8d7da,stroke:#b02a37,color:#000")
        ok = [ids[n] for n in order if n in visited and n != failed]
        if ok:
            lines.append(f"    class {','.join(ok)} visited")
        if failed in ids:
            lines.append(f"    class {ids[failed]} failed")
    return "\n".join(lines) + "\n"


def svg(definition: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str:  # noqa: PLR0912
    order, out, final = edges(definition)
    visited, failed = _marks(history or [])
    depth: dict[str, int] = {}
    start = definition.get("StartAt")
    queue: deque[tuple[str, int]] = deque([(str(start), 0)])
    while queue:
        name, d = queue.popleft()
        if name in depth or name not in definition.get("States", {}):
            continue
        depth[name] = d
        queue.extend((t, d + 1) for f, t, _ in out if f == name)
    for name in order:
        depth.setdefault(name, max(depth.values(), default=0) + 1)
    rows: dict[int, list[str]] = {}
    for name in order:
        rows.setdefault(depth[name], []).append(name)
    width, height, gap_x, gap_y = 190, 40, 40, 60
    columns = max(len(r) for r in rows.values())
    total_w = columns * (width + gap_x) + gap_x + 160
    total_h = (max(rows) + 1) * (height + gap_y) + gap_y
    pos: dict[str, tuple[float, float]] = {}
    for d, names in rows.items():
        offset = (total_w - 160 - len(names) * (width + gap_x) + gap_x) / 2
        for i, name in enumerate(names):
            pos[name] = (offset + i * (width + gap_x), gap_y / 2 + d * (height + gap_y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for i, (source, target, label) in enumerate(out):
        if source not in pos or target not in pos:
            continue
        (x1, y1), (x2, y2) = pos[source], pos[target]
        sx, sy, tx, ty = x1 + width / 2, y1 + height, x2 + width / 2, y2
        taken = source in visited and target in visited
        colour = "#1e7e34" if taken else "#888"
        if ty > sy:
            path = f"M {sx:.0f} {sy:.0f} C {sx:.0f} {sy + 25:.0f}, {tx:.0f} {ty - 25:.0f}, {tx:.0f} {ty:.0f}"
        else:  # back to an earlier row: around the right side
            side = max(x1, x2) + width + 30 + 12 * (i % 4)
            path = (
                f"M {x1 + width:.0f} {y1 + height / 2:.0f} C {side:.0f} {y1 + height / 2:.0f}, "
                f"{side:.0f} {y2 + height / 2:.0f}, {x2 + width:.0f} {y2 + height / 2:.0f}"
            )
            tx, ty = side, (y1 + y2) / 2 + height / 2
        parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="{2 if taken else 1}" '
            'marker-end="url(#arrow)"/>'
        )
        if label:
            lx, ly = (sx + tx) / 2 + 6, (sy + ty) / 2
            parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" fill="#555">{html.escape(label[:40])}</text>')
    for name in order:
        x, y = pos[name]
        kind = definition["States"][name].get("Type", "")
        fill, stroke = "#ffffff", "#888"
        if name == failed:
            fill, stroke = "#f8d7da", "#b02a37"
        elif name in visited:
            fill, stroke = "#d1f0d9", "#1e7e34"
        rx = 18 if name in final else 4
        parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{width}" height="{height}" rx="{rx}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{x + width / 2:.0f}" y="{y + 17:.0f}" text-anchor="middle" font-weight="bold">'
            f"{html.escape(name[:28])}</text>"
        )
        parts.append(
            f'<text x="{x + width / 2:.0f}" y="{y + 31:.0f}" text-anchor="middle" fill="#555">'
            f"{html.escape(kind)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
