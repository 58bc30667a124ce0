from unnas.registry import Registry

TASKS = Registry("task")
