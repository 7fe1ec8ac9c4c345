"""``scales archs``: the registered architectures, in detection order."""

from __future__ import annotations

from rich.table import Table

from . import app
from ._common import JsonFlag, console, emit_json


@app.command("archs")
def archs(json_out: JsonFlag = False) -> None:
    """List the architectures that checkpoints are detected as (detection order)."""
    from ..archs import all_specs

    rows = [
        {
            "name": s.name,
            "description": s.description,
            "input_range": s.input_range,
            "not_inferable": dict(s.defaults),
            "head": list(s.head),
            "tail": list(s.tail),
        }
        for s in all_specs()
    ]
    if json_out:
        emit_json(rows)
        return
    table = Table(title="registered architectures (detection order)")
    for col in ("name", "description", "range", "--arch-opt defaults", "head", "tail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        defaults = ", ".join(f"{k}={v}" for k, v in r["not_inferable"].items()) or "-"
        table.add_row(
            r["name"], r["description"], f"[0,{r['input_range']:g}]", defaults, ", ".join(r["head"]), ", ".join(r["tail"])
        )
    console.print(table)
