"""A toy task, added the way docs/adding-a-task.md says (tests/tasks/test_registry.py adds it):
numbers in, the model's y = 2x + 1 of each out. Step 1 of the document: this package."""

from app.tasks.base import Task
from tests.tasks.toy_task import client
from tests.tasks.toy_task.pipeline import ToyPipeline

TASK = Task(
    pipeline=ToyPipeline,
    summary="the toy model's value of each number",
    rpc="Toy",
    client=client,
)
