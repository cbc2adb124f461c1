"""`python -m dataset.freihand.eval`: see dataset/freihand/eval/cli.py."""
from dataset.freihand.eval.cli import main

main()
