"""Split, shard and order frames by salted hashes of their stable key.

The key is the frame's image path relative to the source, so a frame lands in the same split on
every re-run, on every runner and with any number of workers. Each decision uses its own salt so
that the split, the shard and the order within a shard are independent of each other. SHA-256 is
used (not Python's ``hash``, which is salted per process). Changing a salt or the hash moves frames
between splits: do it only with a reason, as it changes every output.
"""
import hashlib

_SPLIT_SALT = b"tfproc-split-v1:"
_SHARD_SALT = b"tfproc-shard-v1:"
_ORDER_SALT = b"tfproc-order-v1:"
_ID_SALT = b"tfproc-id-v1:"
SOURCE_ID_BITS = 52     # exact in a float64 too; 100,000 frames collide with odds of about 1 in 10^6

TRAIN = "train"
EVAL = "eval"


def _fraction(salt, key):
    digest = hashlib.sha256(salt + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_of(key, eval_pct):
    """'eval' for about ``eval_pct`` percent of keys, 'train' for the rest."""
    return EVAL if _fraction(_SPLIT_SALT, key) < eval_pct / 100.0 else TRAIN


def source_id(key):
    """The frame's ``image/source_id``: a stable decimal number (evaluators need an integer id)."""
    digest = hashlib.sha256(_ID_SALT + key.encode("utf-8")).digest()
    return str(int.from_bytes(digest[:8], "big") >> (64 - SOURCE_ID_BITS))


def shard_of(key, num_shards):
    return int(_fraction(_SHARD_SALT, key) * num_shards)


def order_of(key):
    """A sort key that spreads consecutive frames of a sequence across the shard."""
    return _fraction(_ORDER_SALT, key), key


MAX_SHARDS = 10000
SHARD_FILL = 0.75   # shards are sized to average this share of the limit (see num_shards)


def num_shards(total_bytes, shard_bytes, frames=None):
    """Shards for a split of ``total_bytes`` in ``frames`` frames.

    Frames are hashed to shards, so shard sizes scatter around their mean (by about
    1/sqrt(frames per shard)); aiming the mean at 3/4 of ``shard_bytes`` keeps nearly every shard
    under the limit. Never more shards than frames, nor than MAX_SHARDS, and at least one.
    """
    count = -(-total_bytes // max(1, int(shard_bytes * SHARD_FILL)))
    if frames is not None:
        count = min(count, frames)
    return max(1, min(count, MAX_SHARDS))


def shard_name(split, index, count):
    return "%s-%05d-of-%05d.tfrecord" % (split, index, count)
