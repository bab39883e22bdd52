"""Which checkpoint is the best, and finding a checkpoint by its step, on small checkpoints TF
writes (one variable each) with the state file in TF's text format."""
import json

import pytest

pytest.importorskip("tensorflow")


def _checkpoints(folder, steps, listed=True):
    import tensorflow as tf
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64), weights=tf.Variable(float(step))).write(
            str(folder / ("ckpt-%d" % step)))
    state = 'model_checkpoint_path: "ckpt-%d"\n' % steps[-1]
    if listed:
        state += "".join('all_model_checkpoint_paths: "ckpt-%d"\n' % step for step in steps)
    (folder / "checkpoint").write_text(state)


def test_a_tie_keeps_the_later_checkpoint_and_only_a_better_one_replaces_it(tmp_path):
    from trainer import engine
    model = tmp_path / "m"
    _checkpoints(model, [2, 4, 6])
    assert engine.keep_best(str(model), 2, "AP", 0.0)
    assert engine.keep_best(str(model), 4, "AP", 0.0)          # every evaluation scored 0: the later one
    assert not engine.keep_best(str(model), 4, "AP", 0.0)      # the same step evaluated again
    assert not engine.keep_best(str(model), 6, "AP", -0.5)     # worse
    assert json.loads((model / "best" / "best.json").read_text())["step"] == 4
    assert engine.step_of(engine.choose_checkpoint(str(model), "best")) == 4
    import tensorflow as tf
    assert tf.train.load_variable(str(model / "best" / "ckpt-4"), "weights/.ATTRIBUTES/VARIABLE_VALUE") == 4.0
    assert engine.keep_best(str(model), 6, "AP", 0.25)
    assert engine.step_of(engine.choose_checkpoint(str(model), "best")) == 6


def test_a_checkpoint_file_naming_one_checkpoint_is_found_by_its_step(tmp_path):
    """A production version's folder lists its one checkpoint as model_checkpoint_path only."""
    from trainer import engine
    version = tmp_path / "production" / "models" / "r1"
    _checkpoints(version, [4], listed=False)
    assert engine.checkpoint_at(str(version), 4) == str(version / "ckpt-4")
    assert engine.checkpoint_at(str(version), 5) is None


def test_a_score_is_reused_for_the_same_weights_only_not_the_same_folder_and_step(tmp_path):
    import tensorflow as tf

    from launcher.decide import leaderboard
    from trainer import engine
    model = tmp_path / "m"
    _checkpoints(model, [4])
    first = engine.checkpoint_digest(str(model / "ckpt-4"))
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "metrics.json").write_text(json.dumps({"dataset": "d", "split": "eval", "step": 4, "AP": 0.5,
                                                     "checkpoint_digest": first}))
    (scores / "matches.json").write_text("{}")
    assert leaderboard.scored_before([str(scores)], "d", "eval", first)["AP"] == 0.5
    # the folder trained again to the same step: other weights, another digest, no reuse
    tf.train.Checkpoint(global_step=tf.Variable(4, dtype=tf.int64), weights=tf.Variable(-1.0)).write(
        str(model / "ckpt-4"))
    again = engine.checkpoint_digest(str(model / "ckpt-4"))
    assert again != first and engine.step_of(str(model / "ckpt-4")) == 4
    assert leaderboard.scored_before([str(scores)], "d", "eval", again) is None
    assert leaderboard.scored_before([str(scores)], "other", "eval", first) is None
