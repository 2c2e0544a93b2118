"""Tasks of a sentence-transformers checkpoint: its prompt names, and the well-known names mapped.

``SentenceTransformer.encode(texts, prompt_name=name)`` prepends ``prompts[name]`` to every text;
without a name it uses ``default_prompt_name`` if one is set, else no prompt. Here a request's
task plays the prompt name, so a client asks for ``"query"`` or ``"passage"`` as the checkpoint
names them. The gateway's well-known retrieval tasks map onto them too (clients and integrations
such as Mem0 send ``retrieval.query`` / ``retrieval.passage``): ``retrieval.query`` -> ``query``,
``retrieval.passage`` -> ``passage``, else ``document``. A prompt literally named like a
well-known task wins over the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.contract import Task, UnsupportedTaskError

__all__ = ["WELL_KNOWN", "PromptTable"]

#: well-known task -> the prompt names it stands for, first present wins
WELL_KNOWN: dict[str, tuple[str, ...]] = {
    Task.RETRIEVAL_QUERY.value: ("query",),
    Task.RETRIEVAL_PASSAGE.value: ("passage", "document"),
}


@dataclass(frozen=True)
class PromptTable:
    """The prompts in force (the checkpoint's, the operator's over them) and what each task means."""

    prompts: Mapping[str, str]
    default_prompt_name: str | None = None

    def __post_init__(self) -> None:
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"default prompt name {self.default_prompt_name!r} is not one of the prompts {sorted(self.prompts)}"
            )

    @classmethod
    def merged(
        cls, checkpoint: Mapping[str, str], default: str | None, overrides: Mapping[str, str], default_override: str | None
    ) -> PromptTable:
        """The operator's prompts over the checkpoint's (as ``SentenceTransformer(prompts=...)``)."""
        return cls({**checkpoint, **overrides}, default_override if default_override is not None else default)

    def aliases(self) -> dict[str, str]:
        """well-known task -> the prompt it means, for the names this checkpoint has."""
        out = {}
        for task, names in WELL_KNOWN.items():
            if task in self.prompts:
                continue
            found = next((n for n in names if n in self.prompts), None)
            if found is not None:
                out[task] = found
        return out

    def tasks(self) -> frozenset[str | None]:
        return frozenset([*self.prompts, *self.aliases(), None])

    def prompt(self, task: str | None) -> str:
        """The text prepended for ``task`` ("" = none); an unknown task is the client's error (400)."""
        if task is None:
            return self.prompts[self.default_prompt_name] if self.default_prompt_name is not None else ""
        name = str(task)
        if name in self.prompts:
            return self.prompts[name]
        alias = self.aliases().get(name)
        if alias is None:
            known = ", ".join(sorted(str(t) for t in self.tasks() if t is not None))
            raise UnsupportedTaskError(f"this model has no prompt for task {name!r}; its tasks: {known}", param="task")
        return self.prompts[alias]
