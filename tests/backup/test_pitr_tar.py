"""The tar scanner keeps the members asked for from a stream fed in any pieces."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from pgwarden.backup._tar import TarScanner


def tar_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("piece", [1, 511, 512, 513, 4096, 1 << 20])
def test_members_are_captured_whatever_the_pieces(piece: int) -> None:
    label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
    stream = tar_bytes(
        {
            "base/1/1259": os.urandom(20000),
            "backup_label": label,
            "global/x": b"",
            "backup_manifest": b"{}",
        }
    )
    scanner = TarScanner({"backup_label", "backup_manifest", "missing"})
    for start in range(0, len(stream), piece):
        scanner.feed(stream[start : start + piece])
    assert scanner.captured == {"backup_label": label, "backup_manifest": b"{}"}
