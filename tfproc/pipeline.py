"""The conversion as a Beam pipeline: ``build_pipeline`` holds the whole graph.

The launcher writes only a small manifest (one line per dataset). Each dataset is listed on a
worker and cut into chunks of annotation files, which a ``Reshuffle`` spreads across workers to
parse. Image bytes never pass through a shuffle: frames are assigned to shards as small
references, the references are grouped per shard, and each shard's writer reads its images and
streams them into its file in the run's staging folder. The last step commits the run
(``output.commit``): the output folder holds the old output or the new one, never a mix.
"""
import dataclasses
import json
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from tfproc import frames as frames_lib
from tfproc import fsutil, labels, layout, output, report, shards, split, summary

LABEL_MAP = output.LABEL_MAP
SUMMARY = output.SUMMARY
MANIFEST = "datasets.jsonl"
PLAN = "plan.json"
STAGING_PREFIX = output.STAGING_PREFIX
METRICS = "tfproc"


@dataclasses.dataclass(frozen=True)
class Settings:
    source: str
    output: str
    run_id: str
    eval_pct: object    # percent for the split by hash; None when the source's published splits are used
    shard_bytes: int
    strict: bool
    started: float      # time.time() at the start, for the elapsed time in the summary
    superseded: tuple = ()
    skipped: tuple = ()   # (name, reason, detail) found while listing the source
    split_names: tuple = (split.TRAIN, split.EVAL)  # every split the output holds, even if empty

    @property
    def staging(self):
        return output.staging_folder(self.output, self.run_id)


class ConversionFailed(Exception):
    """The run cannot produce outputs; the message says why and what to do."""


def new_run_id():
    return "%s-%s" % (time.strftime("%Y%m%d-%H%M%S"), uuid.uuid4().hex[:6])


def staged_shard(settings, split_name, index, count):
    return fsutil.join(settings.staging, split_name, split.shard_name(split_name, index, count))


def build_pipeline(p, settings):
    """The conversion graph; reads the manifest that ``write_manifest`` put in the staging folder."""
    parsed = (
        p
        | "Manifest" >> beam.Create([fsutil.join(settings.staging, MANIFEST)])
        | "ReadManifest" >> beam.FlatMap(read_manifest)
        | "SpreadDatasets" >> beam.Reshuffle()
        | "ListDatasets" >> beam.FlatMap(list_chunks)
        | "SpreadChunks" >> beam.Reshuffle()
        | "ParseAnnotations" >> beam.ParDo(ParseChunk()).with_outputs("labels", "report", main="frames")
    )
    label_map = beam.pvalue.AsSingleton(
        parsed.labels
        | "MergeLabels" >> beam.CombineGlobally(labels.merge)
        | "BuildLabelMap" >> beam.Map(labels.build_label_map))

    # (split, FrameRef)
    by_split = parsed.frames | "AssignSplit" >> beam.FlatMap(_splits_of, settings.eval_pct)
    # {split: (frames, bytes)}
    totals = beam.pvalue.AsDict(
        by_split
        | "FrameSizes" >> beam.Map(lambda pair: (pair[0], (1, pair[1].size)))
        | "SumPerSplit" >> beam.CombinePerKey(_sum_pairs))
    _ = p | "Start" >> beam.Create([None]) | "WritePlan" >> beam.Map(_write_plan, settings, totals)

    # ((split, shard index, shard count), [FrameRef]): references only, never image bytes
    grouped = (
        by_split
        | "AssignShard" >> beam.Map(_assign_shard, settings.shard_bytes, totals)
        | "GroupByShard" >> beam.GroupByKey())
    written = grouped | "WriteShards" >> beam.ParDo(WriteShard(settings), label_map)

    collisions = (
        parsed.frames
        | "SourceIds" >> beam.Map(lambda ref: (split.source_id(ref.key), ref.key))
        | "GroupBySourceId" >> beam.GroupByKey()
        | "SourceIdCollisions" >> beam.FlatMap(source_id_collisions))

    _ = (
        (written, parsed.report, collisions)
        | "AllReports" >> beam.Flatten()
        | "MergeReports" >> beam.CombineGlobally(report.merge)
        | "Finish" >> beam.Map(finish, settings, label_map, totals))


def read_manifest(path):
    """The manifest's lines, one per dataset (read as a file: no glob, any path works)."""
    return fsutil.read_bytes(path).decode("utf-8").splitlines()


def list_chunks(line):
    """A manifest line -> the dataset's chunks (its files listed here, on a worker)."""
    dataset = layout.Dataset.from_json(json.loads(line))
    files, images = layout.list_dataset(dataset)
    Metrics.counter(METRICS, "annotation_files").inc(len(files))
    Metrics.counter(METRICS, "image_files").inc(len(images))
    return layout.chunks(dataset, files, images)


class ParseChunk(beam.DoFn):
    """A chunk -> FrameRefs; tagged 'labels' ({id: {names}}) and 'report' (skipped items)."""

    def process(self, chunk):
        parsed = frames_lib.parse_chunk(chunk)
        Metrics.counter(METRICS, "frames_parsed").inc(len(parsed.frames))
        parsed.report["frames"] = len(parsed.frames)
        _count_skipped(parsed.report)
        yield from parsed.frames
        yield beam.pvalue.TaggedOutput("labels", parsed.labels)
        yield beam.pvalue.TaggedOutput("report", parsed.report)


class WriteShard(beam.DoFn):
    """(shard, [FrameRef]) -> the shard's report; the file goes to the staging folder."""

    def __init__(self, settings):
        self.settings = settings

    def process(self, element, label_map):
        (split_name, index, count), refs = element
        path = staged_shard(self.settings, split_name, index, count)
        temp = "%s.tmp-%s" % (path, uuid.uuid4().hex[:8])
        with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            written = shards.write_shard(split_name, refs, label_map, out)
        fsutil.move(temp, path)  # a retried bundle rewrites the same shard, never a second copy
        if split_name not in summary.base_splits(self.settings.split_names):
            _count_once(written)    # its frames are counted (and named) in the split they are a part of
        written["shards_written"].append("%s/%s" % (split_name, split.shard_name(split_name, index, count)))
        counts = written["splits"].get(split_name, {})
        Metrics.counter(METRICS, "frames_written").inc(counts.get("images", 0))
        Metrics.counter(METRICS, "boxes_written").inc(counts.get("boxes", 0))
        Metrics.counter(METRICS, "image_bytes_written").inc(counts.get("bytes", 0))
        Metrics.counter(METRICS, "shards_written").inc()
        _count_skipped(written)
        yield written


ID_COLLISION = "source id collision"


def source_id_collisions(element):
    """(source id, [frame keys]) -> a report naming them if distinct frames share the id."""
    source_id, keys = element
    keys = sorted(set(keys))
    if len(keys) > 1:
        found = report.new()
        report.add_skipped(found, keys[0], ID_COLLISION, "shares image/source_id %s with %s"
                           % (source_id, ", ".join(keys[1:])))
        yield found


def _count_once(written):
    for field in ("boxes_clipped", "boxes_dropped", "images_reoriented"):
        written[field] = 0
    written["skipped"], written["skipped_examples"] = {}, []


def _count_skipped(a_report):
    for reason, count in a_report["skipped"].items():
        Metrics.counter(METRICS, "skipped: " + reason).inc(count)


def _splits_of(ref, eval_pct):
    """(split, ref) for each split of the frame: its published ones, or one chosen by hash."""
    if ref.splits:
        return [(name, ref) for name in ref.splits]
    return [(split.split_of(ref.key, eval_pct or 0.0), ref)]


def _sum_pairs(pairs):
    frames = size = 0
    for f, s in pairs:
        frames += f
        size += s
    return frames, size


def _assign_shard(pair, shard_bytes, totals):
    split_name, ref = pair
    frames, size = totals[split_name]
    count = split.num_shards(size, shard_bytes, frames)
    return (split_name, split.shard_of(ref.key, count), count), ref


def _shard_counts(settings, totals):
    return {name: split.num_shards(size, settings.shard_bytes, frames)
            for name, (frames, size) in totals.items()}


def _write_plan(_, settings, totals):
    plan = {"frames": {name: frames for name, (frames, _) in totals.items()},
            "shards": _shard_counts(settings, totals)}
    fsutil.write_atomically(fsutil.join(settings.staging, PLAN), json.dumps(plan).encode())


def finish(merged, settings, label_map, totals):
    """Commit a finished run: shards, label map, summary; or fail and leave the output as it was.

    Safe to run again (Dataflow retries a failed bundle): the commit is idempotent.
    """
    if not fsutil.is_file(fsutil.join(settings.staging, output.COMMITTED)):
        _commit_point(merged, settings, label_map, totals)
    output.commit(settings.output, settings.staging)
    if fsutil.is_remote(settings.output):
        output.release_remote(settings.output, settings.run_id)   # a Dataflow job left to itself ends here


def _commit_point(merged, settings, label_map, totals):
    """Check the run and write COMMITTED: up to here a failure leaves the old output untouched."""
    for name, reason, detail in settings.skipped:
        report.add_skipped(merged, name, reason, detail)
    counts = _shard_counts(settings, totals)
    result = summary.build(settings, merged, label_map, counts, time.time() - settings.started)
    fsutil.write_atomically(fsutil.join(settings.staging, SUMMARY), _json(result))
    if result["skipped"].get(ID_COLLISION):
        first = next(e for e in result["skipped_examples"] if e["reason"] == ID_COLLISION)
        raise ConversionFailed("two frames share one numeric image/source_id (odds of about one in "
                               "a million per 100,000 frames): %s %s; rename one of the images"
                               % (first["item"], first["detail"]))
    if settings.strict and result["skipped_total"]:
        first = result["skipped_examples"][0]
        raise ConversionFailed("--strict: %d bad item(s); first: %s: %s %s" % (
            result["skipped_total"], first["item"], first["reason"], first["detail"]))
    if not sum(s["images"] for s in result["splits"].values()):
        raise ConversionFailed("no frame could be converted (%d item(s) skipped)" % result["skipped_total"])
    the_plan = output.plan(counts, merged["shards_written"])
    try:
        output.verify(settings.output, settings.run_id)
        output.write_committed(settings.output, settings.staging, the_plan, label_map.to_pbtxt())
    except (output.OutputBusy, output.OutputUnusable) as error:
        raise ConversionFailed(str(error))


def write_manifest(settings, datasets):
    lines = "".join(json.dumps(d.to_json(), sort_keys=True) + "\n" for d in datasets)
    fsutil.write_atomically(fsutil.join(settings.staging, MANIFEST), lines.encode("utf-8"))


def _json(value):
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
