"""TFRecord framing without TensorFlow: ingest writes records without paying TF's ~9 s import, and
a step that reads records back this way does not start TF's runtime (tf.data added ~130 MB to
the label check's process).

Format (tensorflow/core/lib/io/record_writer.cc): uint64 length, masked crc32c(length),
data, masked crc32c(data). Written here by hand because TF's and Beam's writers come with
their whole library; tests read the files back with tf.data.
"""

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def write_record(f, record: bytes) -> None:
    """Append one serialized record to the open binary file `f`."""
    length = struct.pack("<Q", len(record))
    f.write(length + _masked_crc(length) + record + _masked_crc(record))


def write(path, records) -> int:
    """Write serialized records to `path`; return how many were written."""
    count = 0
    with open(path, "wb") as f:
        for record in records:
            write_record(f, record)
            count += 1
    return count


class CorruptRecord(ValueError):
    """A TFRecord file whose framing or checksums do not hold."""


def records(path):
    """The serialized records of `path`, each checked against its length and data checksums;
    CorruptRecord says where one does not hold (what TF would hit mid-pipeline as a DataLossError)."""
    count = 0
    with open(path, "rb") as f:
        while header := f.read(12):
            if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
                raise CorruptRecord(f"{path}: record {count + 1}: bad length header")
            (length,) = struct.unpack("<Q", header[:8])
            data, crc = f.read(length), f.read(4)
            if len(data) < length or _masked_crc(data) != crc:
                raise CorruptRecord(f"{path}: record {count + 1}: data truncated or checksum mismatch")
            count += 1
            yield data


def check(path) -> int:
    """The record count of `path`, every record read through and checked."""
    return sum(1 for _ in records(path))
