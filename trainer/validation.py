"""What Model Garden's validation step hands to its COCO evaluator, made to score what the model
ships: the detections the SavedModel and ``trainer predict`` give, and every worker's share."""
import tensorflow as tf


def clip_detections_to_the_photo(task):
    """Model Garden clips a validation detection to the model's input (the photo scaled, then
    padded to the input size), while the SavedModel and ``predict`` clip it to the photo: clip it to
    the photo here too, so that evaluate scores the boxes the model ships. Boxes are [ymin, xmin,
    ymax, xmax] in the input's pixels; the photo there is its size times its scale (image_info
    rows 0 and 2)."""
    validation_step = task.validation_step

    def clipped_validation_step(inputs, model, metrics=None):
        logs = validation_step(inputs, model, metrics)
        name = task.coco_metric.name if getattr(task, "coco_metric", None) is not None else None
        if name in logs:
            groundtruths, outputs = logs[name]
            info = outputs["image_info"]
            photo = tf.tile((info[:, 0, :] * info[:, 2, :])[:, tf.newaxis, :], [1, 1, 2])
            boxes = outputs["detection_boxes"]
            boxes = tf.minimum(tf.maximum(boxes, 0.0), tf.cast(photo, boxes.dtype))
            logs[name] = (groundtruths, dict(outputs, detection_boxes=boxes))
        return logs

    task.validation_step = clipped_validation_step


def gather_evaluations_across_workers(task, strategy):
    """Under a multi-worker strategy each worker evaluates its own share of the eval set, and Model
    Garden's evaluator keeps only its own machine's results: gather every replica's ground truth
    and detections to every worker, so that each COCO evaluation scores the whole eval set once."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    validation_step, aggregate_logs = task.validation_step, task.aggregate_logs

    def gathered_validation_step(inputs, model, metrics=None):
        logs = validation_step(inputs, model, metrics)
        name = task.coco_metric.name
        if name in logs:
            context = tf.distribute.get_replica_context()
            with tf.device(inputs[0].device):       # some outputs carry no device, which all_gather needs
                placed = tf.nest.map_structure(tf.identity, logs[name])
            logs[name] = tf.nest.map_structure(lambda value: context.all_gather(value, axis=0), placed)
        return logs

    def first_replica_only(state=None, step_outputs=None):
        name = task.coco_metric.name
        if step_outputs and name in step_outputs:       # every local replica holds all of them now
            step_outputs = dict(step_outputs)
            step_outputs[name] = tuple({key: values[:1] for key, values in part.items()}
                                       for part in step_outputs[name])
        return aggregate_logs(state, step_outputs)

    task.validation_step, task.aggregate_logs = gathered_validation_step, first_replica_only
