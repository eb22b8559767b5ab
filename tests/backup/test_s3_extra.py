"""S3 storage without the s3 extra: an error naming the extra; local storage still works."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pgwarden import NotEnabled
from pgwarden.backup.storage import open_storage


def test_s3_storage_without_boto3_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "pgwarden.backup.storage.s3", raising=False)
    with pytest.raises(NotEnabled, match="S3 storage needs boto3, which is not installed") as e:
        open_storage("s3://bucket/prefix?endpoint_url=http://127.0.0.1:9&region=us-east-1")
    assert "pip install 'pgwarden[s3]'" in (e.value.hint or "")
    local = open_storage(tmp_path)
    local.write_bytes("probe", b"ok")
    assert local.read_bytes("probe") == b"ok"
