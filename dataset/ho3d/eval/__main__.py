"""`python -m dataset.ho3d.eval`: see dataset/ho3d/eval/cli.py."""
from dataset.ho3d.eval.cli import main

main()
