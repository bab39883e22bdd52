"""The conversion as a Beam pipeline: ``build_pipeline`` holds the whole graph.

Image bytes never pass through a shuffle: frames are assigned to shards as small references, the
references are grouped per shard, and each shard's writer reads its images and streams them into
a temporary file. Everything is written under a staging folder in the output and moved into place
by the last step, so a run that fails leaves no file that looks like a finished shard.
"""
import dataclasses
import json
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfproc import frames as frames_lib
from tfproc import fsutil, labels, layout, report, shards, split, summary

LABEL_MAP = "label_map.pbtxt"
SUMMARY = "summary.json"
MANIFEST = "datasets.jsonl"
PLAN = "plan.json"
STAGING_PREFIX = ".staging-"


@dataclasses.dataclass(frozen=True)
class Settings:
    source: str
    output: str
    staging: str        # a folder under output, removed at the end
    eval_pct: float
    shard_bytes: int
    strict: bool
    started: float      # time.time() at the start, for the elapsed time in the summary
    superseded: tuple = ()


class ConversionFailed(Exception):
    """The run cannot produce outputs; the message says why and what to do."""


def new_staging(output):
    return fsutil.join(output, "%s%s-%s" % (
        STAGING_PREFIX, time.strftime("%Y%m%d-%H%M%S"), uuid.uuid4().hex[:6]))


def staged_shard(settings, split_name, index, count):
    return fsutil.join(settings.staging, split_name, split.shard_name(split_name, index, count))


def build_pipeline(p, settings):
    """The conversion graph; reads the manifest that ``write_manifest`` put in the staging folder."""
    parsed = (
        p
        | "ReadManifest" >> beam.io.ReadFromText(fsutil.join(settings.staging, MANIFEST))
        | "ParseAnnotations" >> beam.ParDo(ParseDataset()).with_outputs("labels", "report", main="frames")
    )
    label_map = beam.pvalue.AsSingleton(
        parsed.labels
        | "MergeLabels" >> beam.CombineGlobally(labels.merge)
        | "BuildLabelMap" >> beam.Map(labels.build_label_map))

    # (split, FrameRef)
    by_split = parsed.frames | "AssignSplit" >> beam.Map(
        lambda ref, pct: (split.split_of(ref.key, pct), ref), settings.eval_pct)
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

    _ = (
        (written, parsed.report)
        | "AllReports" >> beam.Flatten()
        | "MergeReports" >> beam.CombineGlobally(report.merge)
        | "Finish" >> beam.Map(finish, settings, label_map, totals))


class ParseDataset(beam.DoFn):
    """A manifest line -> FrameRefs; tagged 'labels' ({id: {names}}) and 'report' (skipped items)."""

    def process(self, line):
        parsed = frames_lib.parse_dataset(layout.Dataset.from_json(json.loads(line)))
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
        yield written


def _sum_pairs(pairs):
    frames = size = 0
    for f, s in pairs:
        frames += f
        size += s
    return frames, size


def _assign_shard(pair, shard_bytes, totals):
    split_name, ref = pair
    count = split.num_shards(totals[split_name][1], shard_bytes)
    return (split_name, split.shard_of(ref.key, count), count), ref


def _shard_counts(settings, totals):
    return {name: split.num_shards(size, settings.shard_bytes) for name, (_, size) in totals.items()}


def _write_plan(_, settings, totals):
    plan = {"frames": {name: frames for name, (frames, _) in totals.items()},
            "shards": _shard_counts(settings, totals)}
    fsutil.write_atomically(fsutil.join(settings.staging, PLAN), json.dumps(plan).encode())


def write_manifest(settings, datasets):
    lines = "".join(json.dumps(d.to_json(), sort_keys=True) + "\n" for d in datasets)
    fsutil.write_atomically(fsutil.join(settings.staging, MANIFEST), lines.encode("utf-8"))


def finish(merged, settings, label_map, totals):
    """Put a finished run in place: shards, label map, summary; or fail and leave the output as it was."""
    counts = _shard_counts(settings, totals)
    result = summary.build(settings, merged, label_map, counts, time.time() - settings.started)
    fsutil.write_atomically(fsutil.join(settings.staging, SUMMARY), _json(result))
    if settings.strict and result["skipped_total"]:
        first = result["skipped_examples"][0]
        raise ConversionFailed("--strict: %d bad item(s); first: %s: %s %s" % (
            result["skipped_total"], first["item"], first["reason"], first["detail"]))
    if not sum(s["images"] for s in result["splits"].values()):
        raise ConversionFailed("no frame could be converted (%d item(s) skipped)" % result["skipped_total"])

    for split_name in (split.TRAIN, split.EVAL):
        old = fsutil.join(settings.output, split_name)
        stale = [fsutil.join(old, rel) for rel in fsutil.list_tree(old) if rel.endswith(".tfrecord")]
        if stale:
            FileSystems.delete(stale)
    for split_name, count in counts.items():
        fsutil.makedirs(fsutil.join(settings.output, split_name))
        staged = fsutil.list_tree(fsutil.join(settings.staging, split_name))
        for index in range(count):
            name = split.shard_name(split_name, index, count)
            final = fsutil.join(settings.output, split_name, name)
            if name in staged:
                fsutil.move(staged_shard(settings, split_name, index, count), final)
            else:   # no frame hashed to this shard: an empty one keeps the set of N complete
                fsutil.write_atomically(final, b"")
    fsutil.write_atomically(fsutil.join(settings.output, LABEL_MAP), label_map.to_pbtxt().encode("utf-8"))
    fsutil.write_atomically(fsutil.join(settings.output, SUMMARY), _json(result))
    fsutil.delete_tree(settings.staging)


def _json(value):
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
