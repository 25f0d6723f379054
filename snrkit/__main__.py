"""``python -m snrkit`` runs the command line."""

from snrkit.cli import app

app(prog_name="snrkit")
