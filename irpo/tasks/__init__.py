"""Tasks by name: each entry is the task class and its config dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

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


def task_config(task_cfg: DictConfig | dict[str, Any]) -> Any:
    """The task's typed config object; unknown or mistyped fields fail naming the task and field."""
    name = task_cfg.get("name") if task_cfg is not None else None
    if name is None:
        raise ValueError("the config has no task.name; pick one with task=<name>")
    entry = TASKS.get(name)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(entry.config_class), task_cfg)
        return OmegaConf.to_object(merged)
    except Exception as e:  # omegaconf's errors name the key; add which task they belong to
        raise ValueError(f"invalid config for task '{name}': {e}".split("\n    full_key")[0]) from None


def build_task(task_cfg: Any) -> Task:
    typed = task_config(task_cfg)
    return TASKS.get(typed.name).task_class(typed)


__all__ = ["TASKS", "Example", "Splits", "Task", "build_task", "task_config"]
