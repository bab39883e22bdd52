"""Writing one shard: read each frame's image, build its tf.train.Example, stream it to the file."""
import hashlib
import logging
import queue
import threading

from tfproc import boxes as boxes_lib
from tfproc import bounded, fsutil, imageheader, records, report, split

log = logging.getLogger(__name__)


_PREFETCH = 4   # images read (and hashed) ahead of the writer, in threads: bounded memory


def build_example(key, data, image_format, width, height, kept, label_map, digest=None):
    """The tf.train.Example of one frame (TF Object Detection API keys), as chunks."""
    class_ids = [box.label_id + label_map.shift for box, *_ in kept]
    return records.encode_example({
        "image/encoded": records.bytes_feature([data]),
        "image/format": records.bytes_feature([image_format]),
        "image/height": records.int64_feature([height]),
        "image/width": records.int64_feature([width]),
        "image/filename": records.bytes_feature([key]),
        "image/source_id": records.bytes_feature([split.source_id(key)]),
        "image/key/sha256": records.bytes_feature([digest or hashlib.sha256(data).hexdigest()]),
        "image/object/bbox/xmin": records.float_feature([k[1] for k in kept]),
        "image/object/bbox/ymin": records.float_feature([k[2] for k in kept]),
        "image/object/bbox/xmax": records.float_feature([k[3] for k in kept]),
        "image/object/bbox/ymax": records.float_feature([k[4] for k in kept]),
        "image/object/class/label": records.int64_feature(class_ids),
        "image/object/class/text": records.bytes_feature([label_map.names[c] for c in class_ids]),
        "image/object/area": records.float_feature(     # in pixels, as COCO evaluation reads it
            [(k[3] - k[1]) * width * (k[4] - k[2]) * height for k in kept]),
        "image/object/is_crowd": records.int64_feature([0] * len(kept)),
    })


def write_shard(split_name, refs, label_map, out, read=fsutil.read_bytes):
    """Write the frames ``refs`` to the open binary file ``out``; return the shard's report.

    Frames are written in a fixed pseudo-random order, so a shard's bytes depend only on its
    frames. A key seen twice (two captures naming one image) is written once. A few threads read,
    check and hash the next images while this one writes.
    """
    written = report.new()
    counts = report.split_counts(written, split_name)
    ordered, previous = [], None
    for ref in sorted(refs, key=lambda r: (split.order_of(r.key), r.origin)):
        if ref.key == previous:
            _skip(written, ref.origin, "duplicate frame", ref.key)
            continue
        previous = ref.key
        ordered.append(ref)
    with _BackgroundWriter(out) as background:
        _write_frames(ordered, read, background.write, written, counts, label_map)
    return written


def _write_frames(ordered, read, write, written, counts, label_map):
    for ref, loaded in bounded.ordered_map(lambda r: _load(r, read), ordered, _PREFETCH, _PREFETCH):
        if isinstance(loaded, OSError):
            _skip(written, ref.key, "unreadable image", str(loaded))
            continue
        if isinstance(loaded, imageheader.BadImage):
            _skip(written, ref.key, loaded.reason, loaded.detail)
            continue
        data, digest, (image_format, width, height, orientation) = loaded
        boxes = ref.boxes
        if orientation != 1:
            boxes = boxes_lib.to_stored_grid(boxes, orientation, width, height)
            written["images_reoriented"] += 1
        kept, clipped, dropped = boxes_lib.normalize(boxes, width, height)
        write(records.frame_record(
            build_example(ref.key, data, image_format, width, height, kept, label_map, digest)))
        counts["images"] += 1
        counts["bytes"] += len(data)
        counts["boxes"] += len(kept)
        counts["negatives"] += 0 if kept else 1
        for box, *_ in kept:
            class_id = str(box.label_id + label_map.shift)
            counts["classes"][class_id] = counts["classes"].get(class_id, 0) + 1
        written["boxes_clipped"] += clipped
        written["boxes_dropped"] += dropped


class _BackgroundWriter:
    """Writes chunk lists to ``out`` in a thread of its own, a few records behind the producer, so
    that building the next record overlaps writing the last one (the write releases the GIL).
    Every ``writeback_bytes`` it has the kernel start writing them to disk, so that disk writes
    overlap the work and the fsync before the commit finds little left to write."""

    def __init__(self, out, depth=4, writeback_bytes=32 << 20):
        self.out = out
        self.writeback_bytes = writeback_bytes
        self.queue = queue.Queue(depth)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def write(self, chunks):
        if self.error is not None:
            raise self.error
        self.queue.put(chunks)

    def _run(self):
        written = kicked = 0
        while True:
            chunks = self.queue.get()
            if chunks is None:
                return
            if self.error is None:
                try:
                    for chunk in chunks:
                        self.out.write(chunk)
                        written += len(chunk)
                    if written - kicked >= self.writeback_bytes:
                        fsutil.start_writeback(self.out, kicked, written - kicked)
                        kicked = written
                except BaseException as error:     # raised in the producer's thread
                    self.error = error

    def __exit__(self, *exc):
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
        return False


def _load(ref, read):
    """``(bytes, sha256 hex, header)`` of a frame's image, or the OSError / BadImage it raised."""
    try:
        data = read(ref.image)
        return data, hashlib.sha256(data).hexdigest(), imageheader.read_header(data)
    except (OSError, imageheader.BadImage) as error:
        return error


def _skip(written, name, reason, detail):
    log.warning("skipped %s: %s: %s", name, reason, detail)
    report.add_skipped(written, name, reason, detail)
