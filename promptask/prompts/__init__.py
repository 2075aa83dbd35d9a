"""Prompt templates: sandboxed Jinja rendering into chat messages.

Templates render in an immutable sandbox with ``StrictUndefined`` and a size
cap.  ``{% message "role" %}...{% endmessage %}`` blocks produce several chat
messages; without them the output is one user message.  Files are found on a
search path that always ends with the package's built-in prompts, so user
templates can ``{% extends %}`` or ``{% include %}`` them.
"""

from promptask.prompts.environment import BUILTIN_PROMPTS, MAX_RENDERED_CHARS
from promptask.prompts.template import PromptTemplate

__all__ = ["BUILTIN_PROMPTS", "MAX_RENDERED_CHARS", "PromptTemplate"]
