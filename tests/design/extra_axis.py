"""A design axis the platform does not ship, declared as a lab would declare its own: the fine-tuning's
early-stopping margin, whose science (``FinetuneConfig.min_delta``) already exists. Imported through
``SSL_STUDY_AXES=tests.design.extra_axis`` by every process of a study."""

from study.design.axes import DesignAxis, declare

DEFAULT = 1e-3  # FinetuneConfig's own margin: trials at it keep the ids they had before the axis

MIN_DELTA = declare(
    DesignAxis(
        section="finetuning",
        key="min_delta",
        flat="finetune_min_delta",
        type=float,
        default=(DEFAULT,),
        check=lambda v: None if 0 <= v < 1 else f"{v} is not a Dice-loss margin in [0, 1)",
        title="early-stopping margin",
        label=lambda v: "" if v == DEFAULT else f"md{v:g}",
        run_label=lambda v: "" if v == DEFAULT else f"md{v:g}",
        effect=True,
        baseline=DEFAULT,
        id_default=DEFAULT,
        description="fine-tuning early stopping: the improvement of the validation Dice loss that counts",
    )
)
