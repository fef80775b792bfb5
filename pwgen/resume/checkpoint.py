"""A run's checkpoint, `<run>/checkpoint.log`: the results of its tasks that ended.

One record per task, appended as tasks end by a writer thread that fsyncs after each
batch, so a record on disk survives the controller (and the machine) dying. A record
is framed: its length and CRC-32, then the memo key and the pickled result. A crash
can only cut the file short (kill -9) or leave garbage after the last good record
(power loss): reading stops at the first record that is short or fails its CRC, and
says so in one line; every record before it is used.

Parsl's own checkpoint (`<runinfo>/NNN/checkpoint/tasks.pkl`) is a bare pickle stream,
neither fsync'd nor readable past a torn record (Parsl then refuses the whole file),
which is why pwgen writes its own; the keys are Parsl's (`make_hash`).
"""

import logging
import os
import pickle
import queue
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

#: The first line of a checkpoint file (its format's version).
HEADER = b"pwgen checkpoint 1\n"
#: Each record: payload length, CRC-32 of the payload, length of the key.
_FRAME = struct.Struct(">IIH")


@dataclass
class CheckpointRead:
    """What a checkpoint file held: key -> pickled result, and what was wrong with it."""

    results: dict[str, bytes] = field(default_factory=dict)
    problem: str | None = None  # one line: a torn or foreign file


def encode_record(key: str, result: bytes) -> bytes:
    payload = key.encode() + result
    return _FRAME.pack(len(payload), zlib.crc32(payload), len(key.encode())) + payload


def read_checkpoint(path: Path) -> CheckpointRead:
    """Every whole record of `path` (none when it does not exist)."""
    read = CheckpointRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return read
    except OSError as err:
        read.problem = f"{path}: unreadable checkpoint: {err.strerror}"
        return read
    if not data.startswith(HEADER):
        if data and not HEADER.startswith(data):  # a header cut short is an empty file
            read.problem = f"{path}: not a pwgen checkpoint: nothing in it is used"
        return read
    offset = len(HEADER)
    while offset < len(data):
        record = _record_at(data, offset)
        if record is None:
            read.problem = (
                f"{path}: torn at byte {offset} of {len(data)} (cut short by a crash): "
                f"the {len(read.results)} result(s) before it are used"
            )
            break
        key, result, offset = record
        read.results[key] = result
    return read


def _record_at(data: bytes, offset: int) -> tuple[str, bytes, int] | None:
    """(key, result, next offset) of the record at `offset`; None when it is not whole."""
    end = offset + _FRAME.size
    if end > len(data):
        return None
    length, crc, key_length = _FRAME.unpack_from(data, offset)
    payload = data[end : end + length]
    if len(payload) != length or zlib.crc32(payload) != crc or key_length > length:
        return None
    try:
        key = payload[:key_length].decode()
    except UnicodeDecodeError:
        return None
    return key, payload[key_length:], end + length


class CheckpointWriter:
    """Appends records to a run's checkpoint from a thread of its own (fsync per batch)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0

    def open(self, carried: dict[str, bytes]) -> None:
        """Create the file with `carried` (an earlier run's results) in it, then start."""
        with open(self.path, "xb") as out:
            out.write(HEADER)
            out.write(b"".join(encode_record(key, value) for key, value in carried.items()))
            out.flush()
            os.fsync(out.fileno())
        self._thread = threading.Thread(target=self._write_all, name="pwgen-checkpoint")
        self._thread.daemon = True
        self._thread.start()

    def append(self, key: str, result: Any) -> None:
        """Record `result` under `key` (a result pickle cannot hold is not recorded)."""
        try:
            pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # any object may refuse pickling, in any way
            logger.info("checkpoint: a result of type %s not recorded: %s", type(result), err)
            return
        self._queue.put(encode_record(key, pickled))

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _write_all(self) -> None:
        """Write batches until told to stop; a failed write (disk full) ends recording
        for the run (logged once), not the run."""
        failed = False
        with open(self.path, "ab") as out:
            while True:
                batch = [self._queue.get()]
                while not self._queue.empty():
                    batch.append(self._queue.get())
                records = [record for record in batch if record is not None]
                if records and not failed:
                    failed = not self._write(out, records)
                if None in batch:
                    return

    def _write(self, out: BinaryIO, records: list[bytes]) -> bool:
        try:
            out.write(b"".join(records))
            out.flush()
            os.fsync(out.fileno())
        except OSError as err:
            logger.warning("checkpoint %s: no more results recorded: %s", self.path, err)
            return False
        self.written += len(records)
        return True
