"""Column types, for static checks of expressions and column flow; the columns every pool has."""

from __future__ import annotations

STR, INT, FLOAT, BOOL, LIST, VECTOR, ANY = "str", "int", "float", "bool", "list", "vector", "any"
Columns = dict[str, str]

# Columns every loaded pool has. ``messages`` holds the conversation in OpenAI form.
BASE_COLUMNS: Columns = {
    "id": STR,
    "instruction": STR,
    "input": STR,
    "output": STR,
    "messages": LIST,
    "n_turns": INT,
}
