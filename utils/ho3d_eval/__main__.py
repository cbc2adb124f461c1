"""`python -m utils.ho3d_eval`: see utils/ho3d_eval/cli.py."""
from utils.ho3d_eval.cli import main

main()
