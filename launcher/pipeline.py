"""The Kubeflow Pipelines (v2) pipeline: transfer, convert, train, evaluate, compare, promote.

Each component is a thin wrapper that calls ``launcher.steps`` in the project's image (``--image``);
``build(image)`` returns the pipeline function, which the compiler turns into a spec and KFP's
local runner runs as it is.
"""
import re

from launcher import jobspec
from launcher.errors import LauncherError

NAME = "synthdet-train-evaluate-promote"
STEPS = ("transfer", "convert", "train", "evaluate", "compare", "promote")
DEFAULT_IMAGE = "synthdet:latest"


def build(image=DEFAULT_IMAGE):
    from kfp import dsl
    from kfp.dsl import Metrics, Output

    @dsl.component(base_image=image)
    def transfer(source: str, run_definition_id: str, run_execution_id: str, bucket: str) -> str:
        from launcher import steps
        return steps.transfer(source, run_definition_id, run_execution_id, bucket)

    @dsl.component(base_image=image)
    def convert(source: str, work_dir: str, eval_pct: float, beam_args: str) -> str:
        import json

        from launcher import steps
        return steps.convert(source, work_dir.rstrip("/") + "/output", eval_pct, json.loads(beam_args or "[]"))

    @dsl.component(base_image=image)
    def train(dataset: str, work_dir: str, backend: str, project: str, region: str, accelerator: str,
              max_steps: int, train_batch_size: int, num_eval_images: int, train_steps_per_eval: int,
              warmup_learning_rate: float, warmup_steps: int, initial_learning_rate: float, image_size: str,
              fpn_type: str, aug_scale_min: float, aug_scale_max: float, backbone: str,
              params_override: str, image: str) -> str:
        from launcher import steps
        options = {"max_steps": max_steps, "train_batch_size": train_batch_size,
                   "train_steps_per_eval": train_steps_per_eval, "warmup_learning_rate": warmup_learning_rate,
                   "warmup_steps": warmup_steps, "initial_learning_rate": initial_learning_rate,
                   "fpn_type": fpn_type, "aug_scale_min": aug_scale_min, "aug_scale_max": aug_scale_max,
                   "backbone": backbone}
        if num_eval_images:
            options["num_eval_images"] = num_eval_images
        if image_size:
            options["image_size"] = image_size
        if params_override:
            options["params_overrides"] = [params_override]
        model_dir = work_dir.rstrip("/") + "/candidate"
        if backend == "vertex":
            return steps.train_on_vertex(dataset, model_dir, options, project, region, image, accelerator)
        return steps.train(dataset, model_dir, options)

    @dsl.component(base_image=image)
    def evaluate(model_dir: str, dataset: str, real_dataset: str, metrics: Output[Metrics]) -> str:
        import json

        from launcher import steps
        results = steps.evaluate_all(model_dir, dataset, real_dataset)
        for where, values in sorted(results.items()):
            for key, value in sorted(values.items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics.log_metric("%s_%s" % (where, key), float(value))
        return json.dumps(results)

    @dsl.component(base_image=image)
    def compare(candidate: str, production_dir: str, dataset: str, real_dataset: str, metric: str,
                metrics: Output[Metrics]) -> str:
        import json

        from launcher import steps
        result = steps.compare(json.loads(candidate), production_dir, dataset, real_dataset, metric)
        metrics.log_metric("candidate", result["candidate"])
        if result.get("production") is not None:
            metrics.log_metric("production", result["production"])
        return json.dumps(result)

    @dsl.component(base_image=image)
    def promote(comparison: str, candidate_dir: str, production_dir: str, mode: str, work_dir: str) -> str:
        import json

        from launcher import steps
        report = steps.promote(json.loads(comparison), candidate_dir, production_dir, mode, work_dir)
        print(json.dumps(report, indent=2))
        return json.dumps(report)

    hp = jobspec.HYPERPARAMETERS

    @dsl.pipeline(name=NAME, description="Unity Simulation run -> TFRecords -> RetinaNet candidate -> "
                                         "COCO AP/AR (synthetic and real) -> compared with production -> promoted")
    def synthdet(work_dir: str, production_dir: str, source: str = "", run_definition_id: str = "",
                 run_execution_id: str = "", bucket: str = "", eval_pct: float = 20.0, beam_args: str = "[]",
                 real_dataset: str = "", backend: str = "local", project: str = "", region: str = "us-central1",
                 accelerator: str = "gpu", max_steps: int = hp["max_steps"],
                 train_batch_size: int = hp["train_batch_size"], num_eval_images: int = 0,
                 train_steps_per_eval: int = hp["train_steps_per_eval"],
                 warmup_learning_rate: float = hp["warmup_learning_rate"], warmup_steps: int = hp["warmup_steps"],
                 initial_learning_rate: float = hp["initial_learning_rate"], image_size: str = "",
                 fpn_type: str = hp["fpn_type"], aug_scale_min: float = hp["aug_scale_min"],
                 aug_scale_max: float = hp["aug_scale_max"], backbone: str = "resnet-50",
                 params_override: str = "", metric: str = "", promote_mode: str = "manual",
                 image: str = image):
        run = transfer(source=source, run_definition_id=run_definition_id, run_execution_id=run_execution_id,
                       bucket=bucket).set_display_name("transfer")
        converted = convert(source=run.output, work_dir=work_dir, eval_pct=eval_pct,
                            beam_args=beam_args).set_display_name("convert")
        candidate = train(dataset=converted.output, work_dir=work_dir, backend=backend, project=project,
                          region=region, accelerator=accelerator, max_steps=max_steps,
                          train_batch_size=train_batch_size, num_eval_images=num_eval_images,
                          train_steps_per_eval=train_steps_per_eval, warmup_learning_rate=warmup_learning_rate,
                          warmup_steps=warmup_steps, initial_learning_rate=initial_learning_rate,
                          image_size=image_size, fpn_type=fpn_type, aug_scale_min=aug_scale_min,
                          aug_scale_max=aug_scale_max, backbone=backbone,
                          params_override=params_override, image=image).set_display_name("train")
        scored = evaluate(model_dir=candidate.output, dataset=converted.output,
                          real_dataset=real_dataset).set_display_name("evaluate")
        compared = compare(candidate=scored.outputs["Output"], production_dir=production_dir,
                           dataset=converted.output, real_dataset=real_dataset,
                           metric=metric).set_display_name("compare")
        promote(comparison=compared.outputs["Output"], candidate_dir=candidate.output,
                production_dir=production_dir, mode=promote_mode, work_dir=work_dir).set_display_name("promote")

    return synthdet


def compile_to(path, image=DEFAULT_IMAGE):
    from kfp import compiler
    compiler.Compiler().compile(build(image), path)
    return path


def run_locally(pipeline_root, arguments, image=DEFAULT_IMAGE):
    """The same pipeline with KFP's local runner, in this environment (subprocess mode)."""
    from kfp import local
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root,
               raise_on_error=True)
    try:
        return build(image)(**arguments)
    except RuntimeError as error:
        failed = re.search(r"Inner task failed: \W*\[?\d*m?'?(\w+)", str(error))
        raise LauncherError("the pipeline failed at its %s step; that step's log is above"
                            % (failed.group(1) if failed else "first failing"))
