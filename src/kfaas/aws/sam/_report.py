"""The import report: what each resource became, what differs (noted) and what was not mapped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

__all__ = ["REPORT_FILE", "Item", "Report"]

REPORT_FILE = "sam-import-report.yaml"
Status = Literal["mapped", "noted", "unmapped"]


@dataclass(frozen=True)
class Item:
    status: Status
    resource: str  # the logical id (of the SAM template)
    type: str
    what: str  # the resource, or one of its properties / events
    detail: str  # what it became, or why not

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "type": self.type, "what": self.what, "detail": self.detail}


@dataclass
class Report:
    templates: list[str]
    items: list[Item] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def add(self, status: Status, resource: str, type_: str, what: str, detail: str) -> None:
        item = Item(status, resource, type_, what, detail)
        if item not in self.items:
            self.items.append(item)

    def of(self, status: Status) -> list[Item]:
        return [i for i in self.items if i.status == status]

    def as_dict(self) -> dict[str, Any]:
        return {
            "templates": self.templates,
            "written": self.written,
            "mapped": [i.as_dict() for i in self.of("mapped")],
            "noted": [i.as_dict() for i in self.of("noted")],
            "unmapped": [i.as_dict() for i in self.of("unmapped")],
        }

    def to_yaml(self) -> str:
        head = (
            "# Written by `kfaas import sam`: what each resource of the template became (mapped), where kfaas\n"
            "# behaves differently (noted) and what has no counterpart here (unmapped), with the reason.\n"
        )
        return head + yaml.safe_dump(self.as_dict(), sort_keys=False, width=120, allow_unicode=True)

    def to_text(self) -> str:
        lines = []
        titles = {
            "mapped": "Mapped",
            "noted": "Mapped with a difference (noted)",
            "unmapped": "Not mapped (unmapped)",
        }
        statuses: tuple[Status, ...] = ("mapped", "noted", "unmapped")
        for status in statuses:
            items = sorted(self.of(status), key=lambda i: i.resource)
            lines.append(f"{titles[status]}: {len(items)}")
            for i in items:
                lines.append(f"  {i.resource} ({i.type}) {i.what}: {i.detail}")
        return "\n".join(lines) + "\n"
