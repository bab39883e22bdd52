"""``python real_data_loader.py``: real photos with boxes (UnityGroceries-Real or COCO) to TFRecords.

The same pipeline and record format as the synthetic runs, so real and synthetic records can be
mixed in training when they share one label map.
"""
import os
import sys

from tfproc import cli, fsutil, layout

DESCRIPTION = """\
Convert real photos with 2D boxes into sharded train/eval TFRecords, like main.py does for
synthetic runs. Two forms of input:
  --source DIR --label-map FILE   every annotations.json under DIR (a list of {file_name,
                                  annotations: [{label_id, bbox: [x, y, w, h]}]}) with its photos
                                  in images/ beside it (UnityGroceries-Real)
  --coco FILE --images DIR        a COCO detection file and the folder of its images
Class names come from --label-map (e.g. the label_map.pbtxt of the synthetic conversion, so that a
class id means the same grocery in both) or from the COCO categories. Boxes are normalized by each
photo's own size, read from its header. A photo with an EXIF orientation is stored untouched and
its boxes, drawn on the upright photo, are moved onto the stored pixel grid that TensorFlow decodes."""


def parse_args(argv):
    parser = cli.new_parser("real_data_loader.py", DESCRIPTION)
    parser.add_argument("--source", help="folder holding annotations.json files with images/ beside them")
    parser.add_argument("--label-map", help="StringIntLabelMap text file naming the label ids (with --source)")
    parser.add_argument("--coco", help="COCO detection JSON (instances.json)")
    parser.add_argument("--images", help="folder of the COCO file's images (with --coco)")
    cli.add_output_arguments(parser)
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
        if not args.label_map:
            raise cli.UsageError("annotations.json gives label ids only: pass --label-map with their names "
                                 "(e.g. the label_map.pbtxt of your synthetic conversion)")
        label_map = _absolute(args.label_map)
        if not fsutil.is_remote(label_map) and not os.path.isfile(label_map):
            raise cli.UsageError("--label-map %s does not exist" % args.label_map)

        def find(source, output):
            return (layout.find_real_datasets(source, label_map, exclude=output),
                    "annotations.json files with their photos in images/ beside them")
    return cli.run(args, beam_args, find)


def _absolute(path):
    return path if fsutil.is_remote(path) else os.path.abspath(path)
