"""A task's stop rule: a sample ends at the end of the line that holds the task's answer marker ("Final answer:").

The task owns it (`Task.stop_rule`); every sampler applies the rule it is given in its `SamplingRequest`:
the hf sampler stops generating there, vLLM has no such rule, so its samples run on and are cut here.
Both backends hand back text that ends at the same point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An answer, then the end of its line: what follows the marker holds a non-space character and a newline
# after it ("Final answer:\n40\n" is finished; "Final answer:\n" is not, the answer may come next line).
ANSWER_THEN_NEWLINE = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class AnswerLine:
    """Stop once the line after `marker` (any case) holds an answer and has ended."""

    marker: str
    # Characters a token must hold for a sample to end after it: only after a newline can a line end.
    end_chars: tuple[str, ...] = ("\n",)

    def finished(self, text: str) -> bool:
        """Whether `text` holds the marker followed by an answer and the end of the answer's line."""
        at = text.lower().rfind(self.marker.lower())
        return at != -1 and ANSWER_THEN_NEWLINE.search(text, at + len(self.marker)) is not None

    def answered(self, after_marker: str) -> bool:
        """Whether the text after a marker holds an answer and the end of its line."""
        return ANSWER_THEN_NEWLINE.search(after_marker) is not None

    def cut(self, text: str) -> str:
        """`text` up to the first point where its answer line is finished (the newline included), else all of it."""
        lowered, key = text.lower(), self.marker.lower()
        at = lowered.find(key)
        while at != -1:
            following = lowered.find(key, at + 1)
            # The answer after this marker, if its line ends before the next marker starts.
            done = ANSWER_THEN_NEWLINE.search(text, at + len(self.marker))
            if done is not None and (following == -1 or done.end() <= following + len(key) - 1):
                return text[: done.end()]
            at = following
        return text
