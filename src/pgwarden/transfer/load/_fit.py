"""Tell whether a bundle's tables fit the target's: same columns, types and keys.

The manifest's schema fingerprint answers in one comparison when nothing changed; when
it differs, :func:`differences` says how, table by table, so the error lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pgwarden.transfer.bundle import TableSchema
from pgwarden.transfer.catalog import CatalogTable

__all__ = ["Difference", "differences"]


@dataclass(frozen=True)
class Difference:
    """One way a bundle table differs from its target.

    ``blocking`` differences (a column the target lacks, a different type) stop any
    import; the others (drift) stop it unless schema drift is allowed.
    """

    table: str
    what: str
    blocking: bool

    def __str__(self) -> str:
        return f"{self.table}: {self.what}"


def differences(
    bundled: TableSchema, described: CatalogTable | None, target: CatalogTable
) -> list[Difference]:
    """Return how ``bundled`` differs from the target table (``described`` by the catalog)."""
    name = bundled.qualified
    found: list[Difference] = []
    for column in bundled.columns:
        here = target.by_name.get(column.name)
        if here is None:
            found.append(Difference(name, f"column {column.name} is not in the target", True))
        elif here.generated:
            found.append(
                Difference(name, f"column {column.name} is generated in the target", False)
            )
        elif here.type != column.type:
            found.append(
                Difference(
                    name,
                    f"column {column.name} is {column.type} in the bundle, {here.type} in the"
                    " target",
                    True,
                )
            )
        elif column.nullable and not here.nullable:
            found.append(Difference(name, f"column {column.name} is NOT NULL in the target", False))
    bundled_names = set(bundled.column_names)
    for here in target.by_name.values():
        if here.name not in bundled_names and not here.generated:
            default = "its default" if here.has_default else "NULL"
            found.append(
                Difference(
                    name, f"column {here.name} is only in the target (gets {default})", False
                )
            )
    if described is not None:
        if described.primary_key != bundled.primary_key:
            found.append(
                Difference(
                    name,
                    f"primary key ({', '.join(bundled.primary_key)}) in the bundle,"
                    f" ({', '.join(described.primary_key)}) in the target",
                    False,
                )
            )
        ours = {(fk.columns, fk.references, fk.ref_columns) for fk in bundled.foreign_keys}
        theirs = {(fk.columns, fk.references, fk.ref_columns) for fk in described.foreign_keys}
        for columns, references, _ in sorted(ours - theirs):
            found.append(
                Difference(
                    name,
                    f"foreign key ({', '.join(columns)}) to {references} not in the target",
                    False,
                )
            )
        for columns, references, _ in sorted(theirs - ours):
            found.append(
                Difference(
                    name,
                    f"foreign key ({', '.join(columns)}) to {references} only in the target",
                    False,
                )
            )
    return found


def summary(found: Sequence[Difference], limit: int = 12) -> str:
    """Return the differences as one line each, at most ``limit`` of them."""
    lines = [f"  {difference}" for difference in found[:limit]]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    return "\n".join(lines)
