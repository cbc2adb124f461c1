"""`python -m utils.freihand_eval`: see utils/freihand_eval/cli.py."""
from utils.freihand_eval.cli import main

main()
