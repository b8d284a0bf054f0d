"""What a run trains for. Each task is one module with one :class:`~longtail.tasks.base.RunTask`
subclass, registered here; the one lifecycle (``longtail.run``) and the one loop
(``longtail.engine.fit``) serve them all.

To add a task: write ``tasks/NAME.py`` and add a line below (pretext tasks to PRETEXT_TASKS as
well, which ``longtail pretrain --task`` offers).
"""

from __future__ import annotations

from longtail.registry import Registry
from longtail.tasks.base import RunTask
from longtail.tasks.classify import ClassifyTask
from longtail.tasks.jigsaw import JigsawTask
from longtail.tasks.rotation import RotationTask
from longtail.tasks.stage import StageTask

PRETEXT_TASKS: Registry[type[RunTask]] = Registry("pretext task", {"jigsaw": JigsawTask, "rotation": RotationTask})
# "classifier-stage": a classifier run with --stage (TrainConfig.task)
TASKS: Registry[type[RunTask]] = Registry("task", {"classify": ClassifyTask, "classifier-stage": StageTask,
                                                   **PRETEXT_TASKS})
