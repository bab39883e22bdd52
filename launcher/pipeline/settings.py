"""The training settings a pipeline run hands from its parameters to the trainer, as one value.

The pipeline keeps one parameter per setting (as the Vertex AI console shows them); its train and
fine-tune components gather them into a ``TrainSettings``, whose ``trainer_options()`` are
``trainer.commands.train``'s keyword arguments (and, through ``steps.train_on_vertex``, a Vertex
job's). A zero or an empty string is the trainer's own default.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    max_steps: int = 0
    train_batch_size: int = 0
    num_eval_images: int = 0
    train_steps_per_eval: int = 0
    warmup_learning_rate: float = 0.0
    warmup_steps: int = 0
    initial_learning_rate: float = 0.0
    image_size: str = ""
    fpn_type: str = ""
    aug_scale_min: float = 0.0
    aug_scale_max: float = 0.0
    backbone: str = ""
    params_override: str = ""           # YAML or JSON for Model Garden
    init_checkpoint: str = ""           # where the backbone starts
    model_size: str = ""                # full (the trainer's default) or small

    def trainer_options(self):
        """The settings given, as ``trainer.commands.train`` keyword arguments."""
        options = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                   if field.name != "params_override"}
        options = {key: value for key, value in options.items() if value not in (0, 0.0, "", None, "full")}
        if self.params_override:
            options["params_overrides"] = [self.params_override]
        return options

    def finetuning(self, steps):
        """The fine-tuning's settings: ``steps`` steps (evaluated at their end) of the same model on
        the same images, with the trainer's own learning rate, warm-up and augmentation."""
        return TrainSettings(max_steps=steps, train_batch_size=self.train_batch_size,
                             num_eval_images=self.num_eval_images, train_steps_per_eval=steps,
                             image_size=self.image_size, fpn_type=self.fpn_type, backbone=self.backbone,
                             params_override=self.params_override, model_size=self.model_size)
