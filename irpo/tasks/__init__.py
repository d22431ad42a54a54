"""Tasks by name: each entry is the task class and its config dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irpo.registry import Registry
from irpo.tasks.arc import ARCTask, ARCTaskConfig
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import Example, Splits, Task
from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig
from irpo.tasks.math import MATHTask, MATHTaskConfig


@dataclass(frozen=True)
class TaskEntry:
    task_class: type[Task]
    config_class: type


TASKS: Registry[TaskEntry] = Registry("task")
TASKS.register("arithmetic")(TaskEntry(ArithmeticTask, ArithmeticTaskConfig))
TASKS.register("gsm8k")(TaskEntry(GSM8KTask, GSM8KTaskConfig))
TASKS.register("math")(TaskEntry(MATHTask, MATHTaskConfig))
TASKS.register("arc_challenge")(TaskEntry(ARCTask, ARCTaskConfig))


def build_task(task_cfg: Any) -> Task:
    from irpo.config import task_config

    typed = task_config(task_cfg)
    return TASKS.get(typed.name).task_class(typed)


__all__ = ["TASKS", "Example", "Splits", "Task", "build_task"]
