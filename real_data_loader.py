"""Convert real photos with boxes (UnityGroceries-Real or COCO) into TFRecords: see ``--help``."""
import sys

from tfproc.realdata import main

if __name__ == "__main__":
    sys.exit(main())
