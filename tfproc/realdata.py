"""``python real_data_loader.py``: real photos with boxes (UnityGroceries-Real or COCO) to TFRecords.

The same pipeline and record format as the synthetic runs, so real and synthetic records can be
mixed in training when they share one label map.
"""
import os
import sys

from tfproc import cli, fsutil, labels, layout, published

DESCRIPTION = """\
Convert real photos with 2D boxes into sharded TFRecords, like main.py does for synthetic runs.
Two forms of input:
  --source DIR                    every annotations.json under DIR (a list of {file_name,
                                  annotations: [{label_id, bbox: [x, y, w, h]}]}) with its photos
                                  in images/ beside it (UnityGroceries-Real, e.g. groceries/v3)
  --coco FILE --images DIR        a COCO detection file and the folder of its images
Splits: where groceries_real_<split>.txt files lie beside annotations.json (as in the published
UnityGroceries-Real), each becomes OUTPUT/<split>/ holding exactly the photos it lists (train, val,
test, train_small, test_low_contrast, ...), so that scores compare with the seed's. Otherwise
--eval-pct splits photos into train/ and eval/ by a hash of their name.
Class names come from the annotation_definitions.json beside annotations.json, from --label-map
(e.g. the label_map.pbtxt of the synthetic conversion, so that a class id means the same grocery
in both; checked against annotation_definitions.json where there is one) or from the COCO
categories. Boxes are normalized by each
photo's own size, read from its header. A photo with an EXIF orientation is stored untouched and
its boxes, drawn on the upright photo, are moved onto the stored pixel grid that TensorFlow decodes."""


def parse_args(argv):
    parser = cli.new_parser("real_data_loader.py", DESCRIPTION)
    parser.add_argument("--source", help="folder holding annotations.json files with images/ beside them")
    parser.add_argument("--label-map", help="StringIntLabelMap text file naming the label ids (with --source; "
                                            "needed where no annotation_definitions.json lies beside them)")
    parser.add_argument("--coco", help="COCO detection JSON (instances.json)")
    parser.add_argument("--images", help="folder of the COCO file's images (with --coco)")
    cli.add_output_arguments(parser, eval_pct_help="percent of photos for the eval split, 0-100, where the "
                                                   "source has no published split files (refused where it has)")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    return cli.guarded(lambda: _run(args, beam_args), beam_args)


def _run(args, beam_args):
    if bool(args.coco) == bool(args.source):
        raise cli.UsageError("pass either --source DIR --label-map FILE, or --coco FILE --images DIR")
    if args.coco:
        if not args.images:
            raise cli.UsageError("--coco needs --images, the folder of its images")
        coco = _absolute(args.coco)
        args.source = args.images

        def find(source, output):
            return (layout.coco_dataset(coco, source, exclude=output),
                    "the images that %s describes" % args.coco)
    else:
        label_map = None
        if args.label_map:
            label_map = _absolute(args.label_map)
            if not fsutil.is_remote(label_map) and not os.path.isfile(label_map):
                raise cli.UsageError("--label-map %s does not exist" % args.label_map)

        def find(source, output):
            found = layout.find_real_datasets(source, label_map, exclude=output)
            check_published(found, args, label_map)
            return found, "annotations.json files with their photos in images/ beside them"
    return cli.run(args, beam_args, find)


def check_published(found, args, label_map):
    """Label names and splits of the datasets found: one line for what does not fit together."""
    with_splits = [d for d in found.datasets if d.splits]
    if with_splits and len(with_splits) < len(found.datasets):
        plain = next(d for d in found.datasets if not d.splits)
        raise cli.UsageError("%s has split files (%s) and %s has none; convert them separately" % (
            _where(with_splits[0]), published.FILE_PATTERN, _where(plain)))
    if with_splits and args.eval_pct is not None:
        raise cli.UsageError("--eval-pct: %s holds published split files (%s, %d in all); each split is written "
                             "as published, so that scores compare with the seed's. Leave --eval-pct out, or "
                             "remove the split files to split by hash" % (
                                 with_splits[0].root, sorted(with_splits[0].splits.values())[0],
                                 len(with_splits[0].splits)))
    for dataset in found.datasets:
        definitions_file = fsutil.join(dataset.root, published.DEFINITIONS)
        if not fsutil.is_file(definitions_file):
            if not label_map:
                raise cli.UsageError("%s gives label ids only and no %s lies beside it: pass --label-map with "
                                     "their names (e.g. the label_map.pbtxt of your synthetic conversion)"
                                     % (_where(dataset), published.DEFINITIONS))
            continue
        try:
            names = published.label_names(fsutil.read_bytes(definitions_file).decode("utf-8"))
        except (published.BadDefinitions, UnicodeDecodeError) as error:
            raise cli.UsageError("%s: %s" % (definitions_file, error))
        if label_map:
            try:
                theirs = labels.parse_label_map(fsutil.read_bytes(label_map).decode("utf-8"))
            except (labels.BadLabelMap, UnicodeDecodeError) as error:
                raise cli.UsageError("--label-map %s: %s" % (args.label_map, error))
            differences = published.label_map_differences(names, theirs)
            if differences:
                raise cli.UsageError("--label-map %s does not match %s: %s%s" % (
                    args.label_map, definitions_file, differences[0],
                    " (and %d more)" % (len(differences) - 1) if len(differences) > 1 else ""))
    names = set()
    for dataset in with_splits:
        names.update(dataset.splits)
    found.split_names = tuple(published.ordered(names))


def _where(dataset):
    return fsutil.join(dataset.root, "annotations.json")


def _absolute(path):
    return path if fsutil.is_remote(path) else os.path.abspath(path)
