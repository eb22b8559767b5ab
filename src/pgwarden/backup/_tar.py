"""Follow a tar stream as it passes, keeping a few small members: no staging on disk."""

from __future__ import annotations

__all__ = ["TarScanner"]


class TarScanner:
    """Follow a tar stream's headers, keeping the content of a few small members."""

    def __init__(self, capture: set[str], limit: int = 256 * 1024 * 1024) -> None:
        self._capture = capture
        self._limit = limit
        self._buffer = bytearray()
        self._skip = 0
        self._member: str | None = None
        self._left = 0
        self.captured: dict[str, bytes] = {}

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream."""
        self._buffer += chunk
        while True:
            if self._skip:
                step = min(self._skip, len(self._buffer))
                if self._member is not None:
                    take = min(step, self._left)
                    self.captured[self._member] = self.captured.get(self._member, b"") + bytes(
                        self._buffer[:take]
                    )
                    self._left -= take
                del self._buffer[:step]
                self._skip -= step
                if self._skip:
                    return
                self._member = None
            if len(self._buffer) < 512:
                return
            header = bytes(self._buffer[:512])
            del self._buffer[:512]
            if header == bytes(512):
                continue
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            size_field = header[124:136].split(b"\0", 1)[0].strip() or b"0"
            size = int(size_field, 8)
            self._skip = (size + 511) // 512 * 512
            if name in self._capture and size <= self._limit:
                self._member, self._left = name, size
