"""Where every sampler ends a sample: the end of the line that holds the answer marker ("Final answer:").

The hf sampler stops generating there (`AnswerLineDone` in hf.py); vLLM has no such rule, so its samples
run on and are cut here. Both backends hand back text that ends at the same point.
"""

from __future__ import annotations

import re

# An answer, then the end of its line: what follows the marker holds a non-space character and a newline
# after it ("Final answer:\n40\n" is finished; "Final answer:\n" is not, the answer may come next line).
ANSWER_THEN_NEWLINE = re.compile(r"\S[^\n]*\n")


def answer_line_finished(text: str, marker: str) -> bool:
    """Whether `text` holds `marker` (any case) followed by an answer and the end of the answer's line."""
    at = text.lower().rfind(marker.lower())
    return at != -1 and ANSWER_THEN_NEWLINE.search(text, at + len(marker)) is not None


def end_at_answer_line(text: str, marker: str | None) -> str:
    """`text` up to the first point where its answer line is finished (the newline included), else all of it."""
    if not marker:
        return text
    lowered, key = text.lower(), marker.lower()
    at = lowered.find(key)
    while at != -1:
        following = lowered.find(key, at + 1)
        # The answer after this marker, if its line ends before the next marker starts.
        done = ANSWER_THEN_NEWLINE.search(text, at + len(marker))
        if done is not None and (following == -1 or done.end() <= following + len(key) - 1):
            return text[: done.end()]
        at = following
    return text
