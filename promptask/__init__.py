"""promptask: declarative NLP tasks (a Jinja template plus an output schema), called as typed functions.

>>> from typing import Literal
>>> import promptask
>>> from promptask.backends import ScriptedBackend
>>> @promptask.task
... def sentiment(text: str) -> Literal["positive", "negative", "neutral"]:
...     '''Classify the sentiment of the text.'''
>>> sentiment("What a lovely day", backend=ScriptedBackend(['{"answer": "positive"}']), cache=False)
'positive'
"""

from promptask import config
from promptask._version import __version__
from promptask.backends import Backend, BaseBackend, ScriptedBackend, register_backend, resolve_backend
from promptask.cache import CacheMode, ResultCache
from promptask.config import configure
from promptask.errors import (
    BackendError,
    ConfigurationError,
    ExecutionError,
    InputValidationError,
    OutputValidationError,
    PromptaskError,
    TaskDefinitionError,
    TemplateError,
    UserError,
)
from promptask.evaluate import EvalReport, evaluate
from promptask.tasks import builtin_task, builtin_task_names
from promptask.tasks.decorator import task
from promptask.tasks.loader import load_task, load_tasks
from promptask.tasks.result import Attempt, TaskResult
from promptask.tasks.task import Task
from promptask.types import Generation, GenerationRequest, Message, Sampling, Scores, Usage

__all__ = [
    "Attempt",
    "Backend",
    "BackendError",
    "BaseBackend",
    "CacheMode",
    "ConfigurationError",
    "EvalReport",
    "ExecutionError",
    "Generation",
    "GenerationRequest",
    "InputValidationError",
    "Message",
    "OutputValidationError",
    "PromptaskError",
    "ResultCache",
    "Sampling",
    "Scores",
    "ScriptedBackend",
    "Task",
    "TaskDefinitionError",
    "TaskResult",
    "TemplateError",
    "Usage",
    "UserError",
    "__version__",
    "builtin_task",
    "builtin_task_names",
    "config",
    "configure",
    "evaluate",
    "load_task",
    "load_tasks",
    "register_backend",
    "resolve_backend",
    "task",
]
