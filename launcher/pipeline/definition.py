"""The Kubeflow Pipelines (v2) pipeline: transfer, convert, train, fine-tune, evaluate, compare, promote.

Each component is a thin wrapper that calls ``launcher.pipeline.steps`` or ``launcher.decide`` in
the project's image (``--image``), with nothing installed when it starts. Every path of a run lies under ``WORK_DIR/runs/<run>/``,
where <run> is the pipeline job's name (KFP's placeholder; a local run names itself), so scheduled
runs never share a folder. No task is cached: each step is idempotent by itself, and transfer,
compare and promote have side effects. ``build(image)`` returns the pipeline function, which the
compiler turns into a spec and KFP's local runner runs as it is.
"""
from launcher.jobs import jobspec

NAME = "synthdet-train-evaluate-promote"
STEPS = ("transfer", "convert", "train", "finetune", "evaluate", "compare", "promote")
DEFAULT_IMAGE = "synthdet:latest"


def build(image=DEFAULT_IMAGE):
    from kfp import dsl
    from kfp.dsl import Metrics, Output

    component = dsl.component(base_image=image, install_kfp_package=False)

    @component
    def transfer(source: str, run_definition_id: str, run_execution_id: str, bucket: str, token_secret: str,
                 work_dir: str, run_name: str, job_name: str) -> str:
        from launcher.pipeline import runs, steps
        folder = runs.run_dir(work_dir, runs.run_name(run_name, job_name))
        return runs.recorded(folder, "transfer", steps.transfer, source, run_definition_id, run_execution_id,
                             bucket, folder, token_secret)

    @component
    def convert(source: str, eval_pct: float, beam_args: str, work_dir: str, run_name: str, job_name: str) -> str:
        import json

        from launcher.pipeline import runs, steps
        folder = runs.run_dir(work_dir, runs.run_name(run_name, job_name))
        return runs.recorded(folder, "convert", steps.convert, source, folder + "/output", eval_pct,
                             json.loads(beam_args or "[]"))

    @component
    def train(dataset: str, backend: str, project: str, region: str, accelerator: str, image: str,
              max_steps: int, train_batch_size: int, num_eval_images: int, train_steps_per_eval: int,
              warmup_learning_rate: float, warmup_steps: int, initial_learning_rate: float, image_size: str,
              fpn_type: str, aug_scale_min: float, aug_scale_max: float, backbone: str, model_size: str,
              params_override: str, init_checkpoint: str, init_from: str, production_dir: str, capacity: str,
              train_timeout: str, service_account: str, network: str, work_dir: str, run_name: str,
              job_name: str) -> str:
        from launcher.pipeline import runs, steps
        from launcher.pipeline.settings import TrainSettings
        name = runs.run_name(run_name, job_name)
        folder = runs.run_dir(work_dir, name)
        settings = TrainSettings(max_steps, train_batch_size, num_eval_images, train_steps_per_eval,
                                 warmup_learning_rate, warmup_steps, initial_learning_rate, image_size, fpn_type,
                                 aug_scale_min, aug_scale_max, backbone, params_override, init_checkpoint,
                                 model_size)
        return runs.recorded(folder, "train", steps.train_from, folder, dataset, settings.trainer_options(), init_from,
                             production_dir, backend, project, region, image, accelerator, steps.vertex_job_id(name),
                             capacity, train_timeout, service_account, network)

    @component
    def finetune(model_dir: str, finetune_dataset: str, finetune_steps: int, backend: str, project: str,
                 region: str, accelerator: str, image: str, train_batch_size: int, num_eval_images: int,
                 image_size: str, fpn_type: str, backbone: str, model_size: str, params_override: str, capacity: str,
                 train_timeout: str, service_account: str, network: str, work_dir: str, run_name: str,
                 job_name: str, finetune_split: str = "") -> str:
        from launcher.pipeline import runs, steps
        from launcher.pipeline.settings import TrainSettings
        name = runs.run_name(run_name, job_name)
        settings = TrainSettings(train_batch_size=train_batch_size, num_eval_images=num_eval_images,
                                 image_size=image_size, fpn_type=fpn_type, backbone=backbone, model_size=model_size,
                                 params_override=params_override).finetuning(finetune_steps)
        return steps.finetune(runs.run_dir(work_dir, name), name, model_dir, finetune_dataset,
                              settings.trainer_options(), backend, project, region, image, accelerator, capacity,
                              train_timeout, service_account, network, finetune_split)

    @component
    def evaluate(model_dir: str, dataset: str, real_dataset: str, work_dir: str, run_name: str, job_name: str,
                 metrics: Output[Metrics], real_split: str = "") -> str:
        import json

        from launcher.decide import scores
        from launcher.pipeline import runs
        folder = runs.run_dir(work_dir, runs.run_name(run_name, job_name))
        results = runs.recorded(folder, "evaluate", scores.evaluate_all, model_dir, dataset, real_dataset, None,
                                real_split)
        for where, values in sorted(results.items()):
            for key, value in sorted(values.items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics.log_metric("%s_%s" % (where.replace(":", "_"), key), float(value))
        return json.dumps(results)

    @component
    def compare(candidate: str, production_dir: str, dataset: str, real_dataset: str, metric: str,
                min_improvement: float, work_dir: str, run_name: str, job_name: str,
                metrics: Output[Metrics], real_split: str = "") -> str:
        import json

        from launcher.decide import compare as compare_lib
        from launcher.pipeline import runs
        folder = runs.run_dir(work_dir, runs.run_name(run_name, job_name))
        result = runs.recorded(folder, "compare", compare_lib.compare, json.loads(candidate), production_dir,
                               dataset, real_dataset, metric, folder, min_improvement, compare_lib.RESAMPLES,
                               real_split)
        metrics.log_metric("candidate", result["candidate"])
        if result.get("production") is not None:
            metrics.log_metric("production", result["production"])
        return json.dumps(result)

    @component
    def promote(comparison: str, candidate_dir: str, production_dir: str, mode: str, work_dir: str,
                run_name: str, job_name: str) -> str:
        import json

        from launcher.decide import promotion
        from launcher.pipeline import runs
        name = runs.run_name(run_name, job_name)
        folder = runs.run_dir(work_dir, name)
        report = runs.recorded(folder, "promote", promotion.promote, json.loads(comparison), candidate_dir,
                               production_dir, mode, folder, name)
        print(json.dumps(report, indent=2))
        return json.dumps(report)

    hp = jobspec.HYPERPARAMETERS

    @dsl.pipeline(name=NAME, description="Unity Simulation run -> TFRecords -> RetinaNet candidate (optionally "
                                         "fine-tuned on real photos) -> COCO AP/AR (synthetic and real) -> compared "
                                         "with production -> promoted")
    def synthdet(work_dir: str, production_dir: str, source: str = "", run_definition_id: str = "",
                 run_execution_id: str = "", bucket: str = "", usim_token_secret: str = "", eval_pct: float = 20.0,
                 beam_args: str = "[]", real_dataset: str = "", finetune_dataset: str = "", finetune_steps: int = 0,
                 backend: str = "vertex", project: str = "", region: str = "us-central1", accelerator: str = "gpu",
                 max_steps: int = hp["max_steps"], train_batch_size: int = hp["train_batch_size"],
                 num_eval_images: int = 0, train_steps_per_eval: int = hp["train_steps_per_eval"],
                 warmup_learning_rate: float = hp["warmup_learning_rate"], warmup_steps: int = hp["warmup_steps"],
                 initial_learning_rate: float = hp["initial_learning_rate"], image_size: str = "",
                 fpn_type: str = hp["fpn_type"], aug_scale_min: float = hp["aug_scale_min"],
                 aug_scale_max: float = hp["aug_scale_max"], backbone: str = "resnet-50", model_size: str = "full",
                 params_override: str = "",
                 init_checkpoint: str = "", metric: str = "", promote_mode: str = "manual", image: str = image,
                 run_name: str = "", capacity: str = "{}", min_improvement: float = 0.0, init_from: str = "",
                 train_timeout: str = "", service_account: str = "", network: str = "", real_split: str = "",
                 finetune_split: str = ""):
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        run = dict(work_dir=work_dir, run_name=run_name, job_name=job)
        fetched = transfer(source=source, run_definition_id=run_definition_id, run_execution_id=run_execution_id,
                           bucket=bucket, token_secret=usim_token_secret, **run).set_display_name("transfer")
        converted = convert(source=fetched.output, eval_pct=eval_pct, beam_args=beam_args,
                            **run).set_display_name("convert")
        candidate = train(dataset=converted.output, backend=backend, project=project, region=region,
                          accelerator=accelerator, image=image, max_steps=max_steps,
                          train_batch_size=train_batch_size, num_eval_images=num_eval_images,
                          train_steps_per_eval=train_steps_per_eval, warmup_learning_rate=warmup_learning_rate,
                          warmup_steps=warmup_steps, initial_learning_rate=initial_learning_rate,
                          image_size=image_size, fpn_type=fpn_type, aug_scale_min=aug_scale_min,
                          aug_scale_max=aug_scale_max, backbone=backbone, model_size=model_size,
                          params_override=params_override,
                          init_checkpoint=init_checkpoint, init_from=init_from, production_dir=production_dir,
                          capacity=capacity, train_timeout=train_timeout, service_account=service_account,
                          network=network, **run).set_display_name("train")
        tuned = finetune(model_dir=candidate.output, finetune_dataset=finetune_dataset, finetune_steps=finetune_steps,
                         backend=backend, project=project, region=region, accelerator=accelerator, image=image,
                         train_batch_size=train_batch_size, num_eval_images=num_eval_images, image_size=image_size,
                         fpn_type=fpn_type, backbone=backbone, model_size=model_size, params_override=params_override,
                         capacity=capacity, train_timeout=train_timeout, service_account=service_account,
                         network=network, finetune_split=finetune_split, **run).set_display_name("finetune")
        scored = evaluate(model_dir=tuned.output, dataset=converted.output, real_dataset=real_dataset,
                          real_split=real_split, **run).set_display_name("evaluate")
        compared = compare(candidate=scored.outputs["Output"], production_dir=production_dir,
                           dataset=converted.output, real_dataset=real_dataset, metric=metric,
                           min_improvement=min_improvement, real_split=real_split, **run).set_display_name("compare")
        promoted = promote(comparison=compared.outputs["Output"], candidate_dir=tuned.output,
                           production_dir=production_dir, mode=promote_mode, **run).set_display_name("promote")
        for task in (fetched, converted, candidate, tuned, scored, compared, promoted):
            task.set_caching_options(False)

    return synthdet


def compile_to(path, image=DEFAULT_IMAGE):
    from kfp import compiler
    compiler.Compiler().compile(build(image), path)
    return path


LEADERBOARD = "synthdet-leaderboard"


def build_leaderboard(image=DEFAULT_IMAGE):
    """The second pipeline, of one step: ``launcher.decide.leaderboard.build``, to run on a schedule."""
    from kfp import dsl

    @dsl.component(base_image=image, install_kfp_package=False)
    def leaderboard(work_dir: str, production_dir: str, dataset: str, real_dataset: str, since: str,
                    metric: str, real_split: str = "") -> str:
        import json

        from launcher.decide import leaderboard as leaderboard_lib
        board = leaderboard_lib.build(work_dir, production_dir, dataset, real_dataset, since, metric,
                                      real_split=real_split)
        return json.dumps({k: board[k] for k in ("metric", "folder", "images")})

    @dsl.pipeline(name=LEADERBOARD, description="every complete candidate under WORK_DIR/runs/ and the production "
                                                "model, scored on the same data and ranked with intervals")
    def synthdet_leaderboard(work_dir: str, production_dir: str, dataset: str = "", real_dataset: str = "",
                             since: str = "", metric: str = "", real_split: str = ""):
        leaderboard(work_dir=work_dir, production_dir=production_dir, dataset=dataset, real_dataset=real_dataset,
                    since=since, metric=metric, real_split=real_split).set_caching_options(False)

    return synthdet_leaderboard


def compile_leaderboard_to(path, image=DEFAULT_IMAGE):
    from kfp import compiler
    compiler.Compiler().compile(build_leaderboard(image), path)
    return path
