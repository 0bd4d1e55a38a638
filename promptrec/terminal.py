"""Printing to people (errors, tables) without letting data act as Rich markup.

Rich reads `[...]` in a printed string as markup: an id like `[/x]` raises MarkupError and `[red]` vanishes.
Error messages and table cells quote user data (ids, field names, titles), so they are escaped or wrapped in
`Text` here, while promptrec's own styling stays markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text


def print_error(console: Console, error: Exception) -> None:
    console.print(f"[bold red]error[/]: {escape(str(error))}", highlight=False, soft_wrap=True)


def cells(*values: str) -> list[Text]:
    """Table cells shown exactly as written."""
    return [Text(value) for value in values]
